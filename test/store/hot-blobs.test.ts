import { writeFile } from 'node:fs/promises';
import path from 'node:path';
import { Readable } from 'node:stream';
import test, { type ExecutionContext } from 'ava';
import { createLogger } from '../../daemon/log.ts';
import { BlobStore } from '../../daemon/store/blob-store.ts';
import { HotBlobs } from '../../daemon/store/hot-blobs.ts';
import { tempDir } from '../helpers/harness.ts';
import { makeProgram } from '../helpers/programs.ts';

// Recently served blobs in memory (artifacts.memoryCacheBytes): never more bytes than the
// limit, least recently served out first, nothing the store no longer holds.

const log = createLogger('silent');

async function started(t: ExecutionContext, limit: number) {
  const folder = await tempDir(t, 'modelferry-hot-');
  const blobs = new BlobStore({ local: path.join(folder, 'blobs'), cache: path.join(folder, 'cache') }, log);
  const hot = new HotBlobs(blobs, limit);
  await blobs.start();
  await hot.start();
  t.teardown(async () => {
    await hot.stop();
    await blobs.stop();
  });
  const store = async (bytes: Buffer) => {
    const pending = await blobs.receive(Readable.from([bytes]), 1 << 20);
    await pending.commit();
    return { sha256: pending.sha256, size: pending.size, bytes };
  };
  return { blobs, hot, store };
}

test('a blob is read into memory on first use and then served from there', async (t) => {
  const { hot, store } = await started(t, 10_000);
  const blob = await store(makeProgram(3000));
  t.is(hot.peek(blob.sha256), undefined);
  const first = await hot.get(blob.sha256, blob.size);
  t.true(first?.equals(blob.bytes));
  t.is(hot.peek(blob.sha256), first);
  t.is(hot.bytes, 3000);
});

test('concurrent first uses share one read', async (t) => {
  const { hot, store } = await started(t, 10_000);
  const blob = await store(makeProgram(3000));
  const [a, b] = await Promise.all([hot.get(blob.sha256, blob.size), hot.get(blob.sha256, blob.size)]);
  t.is(a, b);
  t.is(hot.bytes, 3000);
});

test('a blob larger than the limit is never held: it streams from disk', async (t) => {
  const { hot, store } = await started(t, 1000);
  const blob = await store(makeProgram(3000));
  t.is(await hot.get(blob.sha256, blob.size), undefined);
  t.is(hot.bytes, 0);
});

test('a limit of 0 holds nothing', async (t) => {
  const { hot, store } = await started(t, 0);
  const blob = await store(makeProgram(100));
  t.is(await hot.get(blob.sha256, blob.size), undefined);
});

test('past the limit, the least recently served blob makes room', async (t) => {
  const { hot, store } = await started(t, 5000);
  const [a, b, c] = [await store(makeProgram(2000)), await store(makeProgram(2000)), await store(makeProgram(2000))];
  await hot.get(a.sha256, a.size);
  await hot.get(b.sha256, b.size);
  hot.peek(a.sha256); // a served again: b is now the least recent
  await hot.get(c.sha256, c.size);
  t.truthy(hot.peek(a.sha256));
  t.is(hot.peek(b.sha256), undefined);
  t.truthy(hot.peek(c.sha256));
  t.is(hot.bytes, 4000);
});

test('a blob the store loses (found corrupt) is dropped from memory', async (t) => {
  const { blobs, hot, store } = await started(t, 10_000);
  const blob = await store(makeProgram(2000));
  await hot.get(blob.sha256, blob.size);
  await writeFile(blobs.pathOf(blob.sha256), 'flipped');
  await blobs.check(blob.sha256);
  t.is(hot.peek(blob.sha256), undefined);
  t.is(hot.bytes, 0);
});

test('a file that is not the size the catalog records is not held', async (t) => {
  const { hot, store } = await started(t, 10_000);
  const blob = await store(makeProgram(2000));
  t.is(await hot.get(blob.sha256, blob.size + 1), undefined);
});
