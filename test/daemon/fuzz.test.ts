import test from 'ava';
import { startDaemon } from '../helpers/daemon-process.ts';
import { fixture } from '../helpers/programs.ts';
import { ALL_TOKEN } from '../helpers/tokens.ts';
import { fuzz } from '../scripts/fuzz.ts';

// The short version of test/scripts/fuzz.ts (docs/development.md "Long runs"): random requests
// over every route against a real daemon; never a 5xx, the daemon stays up, and a refused
// request changes nothing stored. The long run (100,000 requests) is the script's.

test('1,000 random requests over every route: no 5xx, the daemon stays up, refused requests change nothing', async (t) => {
  const daemon = await startDaemon(t);
  // Something to find: two models, an assignment, a group.
  for (const [version, bytes] of [['1', fixture('add.pte')], ['2', fixture('mul.pte')]] as const) {
    t.is((await daemon.fetch(`/v1/models/kws/${version}`, { method: 'PUT', body: bytes, token: ALL_TOKEN })).status, 201);
  }
  const { requests, byStatus } = await fuzz(daemon.url, 1000);
  t.log(JSON.stringify(byStatus));
  t.is(requests, 1000);
  t.true(daemon.running);
  t.is((await daemon.fetch('/healthz')).status, 200);
});
