import path from 'node:path';
import { Readable } from 'node:stream';
import test, { type ExecutionContext } from 'ava';
import { Catalog } from '../../daemon/catalog/catalog.ts';
import { pollAnswerSchema } from '../../daemon/contract/model-wire.ts';
import { DeviceRegistry } from '../../daemon/devices/device-registry.ts';
import { PollAnswers } from '../../daemon/devices/poll-answers.ts';
import { createLogger } from '../../daemon/log.ts';
import { BlobStore } from '../../daemon/store/blob-store.ts';
import { Database } from '../../daemon/store/database.ts';
import { tempDir } from '../helpers/harness.ts';
import { makeProgram } from '../helpers/programs.ts';

// Prepared poll answers (docs/design.md "Device poll"): one serialized answer per device per catalog
// state, a strong ETag over its bytes, and long polls that wake only when their device's
// answer changes.

const log = createLogger('silent');
const DEV_A = 'aa:bb:cc:dd:ee:01';
const DEV_B = 'aa:bb:cc:dd:ee:02';
const TIMING = { intervalSeconds: 300, jitterSeconds: 30 };
const never = new AbortController().signal;
/** Deltas have tests of their own (test/deltas): here no device is offered one. */
const NO_DELTAS = { store: { offer: () => null, onChange: () => () => {} }, waitSeconds: () => 0 };

async function open(t: ExecutionContext, limits = { maxLongPolls: 1000, maxLongPollsPerAddress: 1000 }) {
  const dir = await tempDir(t);
  const db = new Database(path.join(dir, 'state'), log);
  const blobs = new BlobStore({ local: path.join(dir, 'state', 'blobs'), cache: path.join(dir, 'cache') }, log);
  const catalog = new Catalog(db, blobs, log);
  const devices = new DeviceRegistry(db, log, { seenFlushSeconds: 30, maxKnown: 1000, newPerAddressPerMinute: 1000 }, () => true);
  const answers = new PollAnswers(catalog, blobs, devices, NO_DELTAS, TIMING, limits);
  for (const part of [db, blobs, catalog, devices, answers]) await part.start();
  t.teardown(async () => {
    for (const part of [answers, devices, catalog, blobs, db]) await part.stop();
  });
  let minute = 0;
  const push = async (name: string, version: string, bytes = makeProgram(256)) => {
    const pending = await blobs.receive(Readable.from([bytes]), 1 << 20);
    minute++;
    await catalog.addModel({
      name, version, sha256: pending.sha256, size: pending.size, format: 'executorch', signature: null, keyId: null,
      createdAt: new Date(Date.UTC(2026, 10, 24, 12, minute)).toISOString(),
    }, () => pending.commit());
    return pending.sha256;
  };
  const assign = (selector: string, model: string, version: string) =>
    catalog.setAssignment({ selector, model, version, rollout: null, updatedAt: '2026-11-24T12:00:00Z' });
  return { blobs, catalog, answers, push, assign };
}

test('a device with an assignment gets the contract body, with a strong ETag over its bytes', async (t) => {
  const { answers, push, assign } = await open(t);
  const sha256 = await push('kws', '1.0.0');
  await assign('default', 'kws', 'latest');
  const answer = answers.answerFor(DEV_A);
  if (answer.kind !== 'model') return t.fail('expected a model');
  const body = pollAnswerSchema.parse(JSON.parse(answer.body.toString()));
  t.deepEqual(body, {
    device: DEV_A,
    model: { name: 'kws', version: '1.0.0', sha256, size: 256, url: `/v1/artifacts/${sha256}`, signature: null, keyId: null, signatureSeq: null },
    poll: TIMING,
  });
  t.regex(answer.etag, /^"[A-Za-z0-9_-]{43}"$/);
});

test('the answer is the same object until the catalog changes', async (t) => {
  const { answers, push, assign } = await open(t);
  await push('kws', '1.0.0');
  await assign('default', 'kws', 'latest');
  const first = answers.answerFor(DEV_A);
  t.is(answers.answerFor(DEV_A), first);
  await push('kws', '1.0.1');
  const second = answers.answerFor(DEV_A);
  t.not(second, first);
  t.not(second.kind === 'model' && second.etag, first.kind === 'model' && first.etag);
});

test('different devices with the same model get different bodies and ETags (the body names the device)', async (t) => {
  const { answers, push, assign } = await open(t);
  await push('kws', '1.0.0');
  await assign('default', 'kws', 'latest');
  const a = answers.answerFor(DEV_A);
  const b = answers.answerFor(DEV_B);
  t.true(a.kind === 'model' && b.kind === 'model' && a.etag !== b.etag);
});

test('no assignment for the device, its group or default: an answer of kind none with the reason', async (t) => {
  const { answers } = await open(t);
  const answer = answers.answerFor(DEV_A);
  t.is(answer.kind, 'none');
  t.regex(answer.kind === 'none' ? answer.reason : '', /no assignment resolves for aa:bb:cc:dd:ee:01/);
});

test('a model whose blob is not cached is not offered', async (t) => {
  const { answers, blobs, push, assign } = await open(t);
  const sha256 = await push('kws', '1.0.0');
  await assign('default', 'kws', 'latest');
  t.is(answers.answerFor(DEV_A).kind, 'model');
  const { rm } = await import('node:fs/promises');
  await rm(blobs.pathOf(sha256));
  await blobs.check(sha256);
  const answer = answers.answerFor(DEV_A);
  t.is(answer.kind, 'none');
  t.regex(answer.kind === 'none' ? answer.reason : '', /not in this gateway's cache/);
});

test('a long poll wakes with the new answer when its device\'s answer changes', async (t) => {
  const { answers, push, assign } = await open(t);
  await push('kws', '1.0.0');
  await assign('default', 'kws', 'latest');
  const before = answers.answerFor(DEV_A);
  const waiting = answers.waitForChange(DEV_A, before.kind === 'model' ? before.etag : '', '10.0.0.1', 60_000, never);
  t.is(answers.waiting, 1);
  await push('kws', '1.0.1');
  const after = await waiting;
  t.is(after, answers.answerFor(DEV_A));
  t.is(answers.waiting, 0);
});

test('a long poll is not woken by a change that leaves its device\'s answer as it was, and ends when the device hangs up', async (t) => {
  const { answers, push, assign } = await open(t);
  await push('kws', '1.0.0');
  await push('vad', '1.0.0');
  await assign('default', 'kws', '1.0.0');
  const before = answers.answerFor(DEV_A);
  const etag = before.kind === 'model' ? before.etag : '';
  const controller = new AbortController();
  const held = answers.waitForChange(DEV_A, etag, '10.0.0.1', 60_000, controller.signal);
  await assign(DEV_B, 'vad', '1.0.0');
  t.is(answers.waiting, 1);
  controller.abort();
  t.is(await held, undefined);
  t.is(answers.waiting, 0);
});

test('a long poll ends with undefined when its time is up', async (t) => {
  const { answers, push, assign } = await open(t);
  await push('kws', '1.0.0');
  await assign('default', 'kws', 'latest');
  const before = answers.answerFor(DEV_A);
  t.is(await answers.waitForChange(DEV_A, before.kind === 'model' ? before.etag : '', '10.0.0.1', 1, never), undefined);
  t.is(answers.waiting, 0);
});

test('stop releases every long poll with undefined, and later waits end at once', async (t) => {
  const { answers, push, assign } = await open(t);
  await push('kws', '1.0.0');
  await assign('default', 'kws', 'latest');
  const before = answers.answerFor(DEV_A);
  const etag = before.kind === 'model' ? before.etag : '';
  const held = [answers.waitForChange(DEV_A, etag, '10.0.0.1', 60_000, never), answers.waitForChange(DEV_B, 'x', '10.0.0.1', 60_000, never)];
  t.false(answers.stopped);
  await answers.stop();
  t.true(answers.stopped);
  t.deepEqual(await Promise.all(held), [undefined, undefined]);
  t.is(await answers.waitForChange(DEV_A, etag, '10.0.0.1', 60_000, never), undefined);
});

test('long polls are held up to maxLongPollsPerAddress per address and maxLongPolls in total; beyond, waitForChange ends at once with undefined', async (t) => {
  const { answers, push, assign } = await open(t, { maxLongPolls: 3, maxLongPollsPerAddress: 2 });
  await push('kws', '1.0.0');
  await assign('default', 'kws', 'latest');
  const before = answers.answerFor(DEV_A);
  const etag = before.kind === 'model' ? before.etag : '';
  const held = [answers.waitForChange(DEV_A, etag, '10.0.0.1', 60_000, never), answers.waitForChange(DEV_A, etag, '10.0.0.1', 60_000, never)];
  t.false(answers.mayHold('10.0.0.1'));
  t.is(await answers.waitForChange(DEV_A, etag, '10.0.0.1', 60_000, never), undefined);
  held.push(answers.waitForChange(DEV_A, etag, '10.0.0.2', 60_000, never));
  t.false(answers.mayHold('10.0.0.3'));
  t.is(await answers.waitForChange(DEV_A, etag, '10.0.0.3', 60_000, never), undefined);
  t.is(answers.waiting, 3);
  await push('kws', '1.0.1');
  for (const answer of await Promise.all(held)) t.is(answer?.kind, 'model');
  t.true(answers.mayHold('10.0.0.1'), 'released long polls free their places');
});

test('a change wakes thousands of waiters in slices that yield to the event loop, and a change during a pass reaches every waiter', async (t) => {
  const { answers, push, assign } = await open(t, { maxLongPolls: 10_000, maxLongPollsPerAddress: 10_000 });
  await push('kws', '1.0.0');
  await assign('default', 'kws', 'latest');
  const count = 5000;
  const macs = Array.from({ length: count }, (_, i) => `02:00:00:00:${(i >> 8).toString(16).padStart(2, '0')}:${(i & 0xff).toString(16).padStart(2, '0')}`);
  const held = macs.map((mac) => {
    const answer = answers.answerFor(mac);
    return answers.waitForChange(mac, answer.kind === 'model' ? answer.etag : '', '10.0.0.1', 60_000, never);
  });
  let releasedWhenOtherWorkRan = -1;
  const change = push('kws', '1.0.1');
  // Queued behind the first slice: it runs while later slices are still to come.
  const other = change.then(() => new Promise<void>((resolve) => setImmediate(() => {
    releasedWhenOtherWorkRan = count - answers.waiting;
    resolve();
  })));
  await other;
  t.true(releasedWhenOtherWorkRan > 0 && releasedWhenOtherWorkRan < count, `other work ran after ${releasedWhenOtherWorkRan} of ${count} were released`);
  const woken = await Promise.all(held);
  t.true(woken.every((answer) => answer?.kind === 'model' && JSON.parse(answer.body.toString()).model.version === '1.0.1'));
});
