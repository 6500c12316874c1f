import test from 'ava';
import { levelLogBytes, poll } from '../helpers/api.ts';
import { startNginx } from '../helpers/nginx.ts';
import { fixture, makeProgram, sha256 } from '../helpers/programs.ts';
import { publishBytes, startRunDone, storeDir, synced, syncingGateway } from './sync-helpers.ts';

const MAC = '02:00:00:00:10:01';

test('a gateway syncs a store written by publish and served by nginx; devices get its assignment from the local cache', async (t) => {
  const store = await storeDir(t);
  await publishBytes(store, 'kws', '1', fixture('add.pte'), { assign: 'default' });
  const nginx = await startNginx(t, store);
  const gw = await syncingGateway(t, `${nginx.url}/manifest.json`);
  const first = await startRunDone(gw);
  t.is(first.lastOutcome.result, 'updated', JSON.stringify(first));
  const answer = await poll(gw, MAC);
  t.is(answer.status, 200);
  t.is(answer.json.model.sha256, sha256(fixture('add.pte')));
  void makeProgram;
  const before = await levelLogBytes(gw);
  const requests = (await nginx.accessLog()).length;
  const again = await synced(t, gw, 'unchanged');
  t.is(again.bytes, 0);
  const log = await nginx.accessLog();
  t.deepEqual(log.slice(requests).map((l) => [l.uri, l.status]), [['/manifest.json', 304]]);
  t.is(await levelLogBytes(gw), before, 'an unchanged store writes nothing');
});
