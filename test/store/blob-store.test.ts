import { mkdir, readdir, readFile, stat, writeFile } from 'node:fs/promises';
import path from 'node:path';
import { Readable } from 'node:stream';
import test, { type ExecutionContext } from 'ava';
import { ModelferryError } from '../../daemon/errors.ts';
import { createLogger } from '../../daemon/log.ts';
import { BlobStore } from '../../daemon/store/blob-store.ts';
import { tempDir } from '../helpers/harness.ts';
import { makeProgram, sha256 } from '../helpers/programs.ts';

// The blob store (docs/design.md "Storage and crash safety"): content-addressed files,
// complete or absent; only indexed blobs count as cached; the full check removes what does not
// match its name.

const log = createLogger('silent');

/** A store on `<root>/blobs` (local: pushed blobs) and `<root>/cache`; `dir` is the local folder. */
async function started(t: ExecutionContext, root?: string): Promise<{ dir: string; cache: string; blobs: BlobStore }> {
  const folder = root ?? await tempDir(t, 'modelferry-blobs-');
  const dirs = { local: path.join(folder, 'blobs'), cache: path.join(folder, 'cache') };
  const blobs = new BlobStore(dirs, log);
  await blobs.start();
  t.teardown(() => blobs.stop());
  return { dir: dirs.local, cache: dirs.cache, blobs };
}

async function store(blobs: BlobStore, bytes: Buffer): Promise<string> {
  const pending = await blobs.receive(Readable.from([bytes]), 1 << 20);
  await pending.commit();
  return pending.sha256;
}

test('a received body is hashed, sized and kept out of the cache until committed', async (t) => {
  const { dir, blobs } = await started(t);
  const bytes = makeProgram(3000);
  const pending = await blobs.receive(Readable.from([bytes.subarray(0, 1000), bytes.subarray(1000)]), 1 << 20);
  t.is(pending.sha256, sha256(bytes));
  t.is(pending.size, 3000);
  t.deepEqual(pending.head, bytes.subarray(0, pending.head.length));
  t.true(pending.head.length > 0);
  t.is(blobs.size(pending.sha256), undefined);
  t.false((await readdir(dir)).includes(pending.sha256));

  await pending.commit();
  t.is(blobs.size(pending.sha256), 3000);
  t.deepEqual(await readFile(blobs.pathOf(pending.sha256)), bytes);
  t.deepEqual(await readdir(path.join(dir, 'tmp')), []);
});

test('a discarded body leaves nothing behind and is not cached', async (t) => {
  const { dir, blobs } = await started(t);
  const pending = await blobs.receive(Readable.from([makeProgram(100)]), 1 << 20);
  await pending.discard();
  await pending.commit();
  t.is(blobs.size(pending.sha256), undefined);
  t.deepEqual(await readdir(path.join(dir, 'tmp')), []);
  t.deepEqual((await readdir(dir)).filter((name) => name !== 'tmp'), []);
});

test('a body over the limit is refused as body_too_large and leaves nothing behind', async (t) => {
  const { dir, blobs } = await started(t);
  const error = await t.throwsAsync(blobs.receive(Readable.from([Buffer.alloc(600), Buffer.alloc(600)]), 1000), { instanceOf: ModelferryError });
  t.is(error?.code, 'body_too_large');
  t.deepEqual(await readdir(path.join(dir, 'tmp')), []);
  t.is(blobs.count, 0);
});

test('holds() is true only for a cached blob of exactly the recorded size', async (t) => {
  const { blobs } = await started(t);
  const bytes = makeProgram(500);
  const digest = await store(blobs, bytes);
  t.true(blobs.holds({ sha256: digest, size: 500 }));
  t.false(blobs.holds({ sha256: digest, size: 499 }));
  t.false(blobs.holds({ sha256: sha256(Buffer.from('other')), size: 5 }));
});

test('start indexes the blobs on disk by name, ignores other files and empties tmp/', async (t) => {
  const root = await tempDir(t, 'modelferry-blobs-');
  const dir = path.join(root, 'blobs');
  const bytes = makeProgram(700);
  await mkdir(path.join(dir, 'tmp'), { recursive: true });
  await writeFile(path.join(dir, sha256(bytes)), bytes);
  await writeFile(path.join(dir, 'notes.txt'), 'not a blob');
  await writeFile(path.join(dir, 'tmp', 'half.part'), 'unfinished');
  const { blobs } = await started(t, root);
  t.is(blobs.size(sha256(bytes)), 700);
  t.is(blobs.count, 1);
  t.is(blobs.totalBytes, 700);
  t.deepEqual(await readdir(path.join(dir, 'tmp')), []);
});

test('check() of a blob that matches its name reports ok and keeps it', async (t) => {
  const { blobs } = await started(t);
  const digest = await store(blobs, makeProgram(900));
  t.deepEqual(await blobs.check(digest), { sha256: digest, ok: true, size: 900, actualSha256: digest });
  t.is(blobs.size(digest), 900);
});

test('check() of a corrupt blob removes it from disk and from the cache, and says so', async (t) => {
  const { blobs } = await started(t);
  const digest = await store(blobs, makeProgram(900));
  let changes = 0;
  blobs.onChange(() => changes++);
  const corrupt = Buffer.from('flipped bits');
  await writeFile(blobs.pathOf(digest), corrupt);
  const result = await blobs.check(digest);
  t.false(result.ok);
  t.is(result.actualSha256, sha256(corrupt));
  t.is(blobs.size(digest), undefined);
  await t.throwsAsync(stat(blobs.pathOf(digest)), { code: 'ENOENT' });
  t.is(changes, 1);
});

test('check() of a blob missing from disk reports it missing and drops it from the cache', async (t) => {
  const { blobs } = await started(t);
  const digest = await store(blobs, makeProgram(100));
  const { rm } = await import('node:fs/promises');
  await rm(blobs.pathOf(digest));
  t.deepEqual(await blobs.check(digest), { sha256: digest, ok: false, size: 0, actualSha256: null });
  t.is(blobs.size(digest), undefined);
});

test('listeners hear of each blob committed, until they unsubscribe', async (t) => {
  const { blobs } = await started(t);
  let changes = 0;
  const unsubscribe = blobs.onChange(() => changes++);
  await store(blobs, makeProgram(100));
  t.is(changes, 1);
  unsubscribe();
  await store(blobs, makeProgram(100));
  t.is(changes, 1);
});

// ------------------------------------ two folders (docs/central-store.md "Where blobs live")

test('a pushed blob lives in the local folder; a synced one, adopted, in the cache folder; both are served', async (t) => {
  const { dir, cache, blobs } = await started(t);
  const pushed = await store(blobs, makeProgram(400));
  t.is(blobs.tierOf(pushed), 'local');
  t.true((await readdir(dir)).includes(pushed));
  const synced = makeProgram(300);
  const file = path.join(cache, 'incoming');
  await writeFile(file, synced);
  await blobs.adopt(file, sha256(synced), 300);
  t.is(blobs.tierOf(sha256(synced)), 'cache');
  t.deepEqual(await readdir(cache), [sha256(synced)]);
  t.is(blobs.size(sha256(synced)), 300);
  t.deepEqual(blobs.bytesByTier(), { local: 400, cache: 300 });
});

test('adopting a blob already held locally keeps the local copy and drops the incoming file', async (t) => {
  const { cache, blobs } = await started(t);
  const bytes = makeProgram(400);
  const digest = await store(blobs, bytes);
  const file = path.join(cache, 'incoming');
  await writeFile(file, bytes);
  await blobs.adopt(file, digest, 400);
  t.is(blobs.tierOf(digest), 'local');
  t.deepEqual(await readdir(cache), []);
});

test('pushing bytes the cache folder already holds moves them to the local folder: the push may become the only copy', async (t) => {
  const { dir, cache, blobs } = await started(t);
  const bytes = makeProgram(400);
  await writeFile(path.join(cache, 'incoming'), bytes);
  await blobs.adopt(path.join(cache, 'incoming'), sha256(bytes), 400);
  await store(blobs, bytes);
  t.is(blobs.tierOf(sha256(bytes)), 'local');
  t.deepEqual(await readdir(cache), []);
  t.true((await readdir(dir)).includes(sha256(bytes)));
});

test('keepLocally copies a blob from the cache folder to the local folder and removes the cache copy', async (t) => {
  const { dir, cache, blobs } = await started(t);
  const bytes = makeProgram(400);
  await writeFile(path.join(cache, 'incoming'), bytes);
  await blobs.adopt(path.join(cache, 'incoming'), sha256(bytes), 400);
  await blobs.keepLocally(sha256(bytes));
  t.is(blobs.tierOf(sha256(bytes)), 'local');
  t.deepEqual(await readFile(path.join(dir, sha256(bytes))), bytes);
  t.deepEqual(await readdir(cache), []);
  t.deepEqual(await readdir(path.join(dir, 'tmp')), []);
});

test('a blob in both folders at start (a move cut short) is kept once, in the local folder', async (t) => {
  const root = await tempDir(t, 'modelferry-blobs-');
  const bytes = makeProgram(200);
  for (const folder of ['blobs', 'cache']) {
    await mkdir(path.join(root, folder), { recursive: true });
    await writeFile(path.join(root, folder, sha256(bytes)), bytes);
  }
  const { cache, blobs } = await started(t, root);
  t.is(blobs.tierOf(sha256(bytes)), 'local');
  t.deepEqual(await readdir(cache), []);
});

test('start empties the push folder of an older layout (<cache>/tmp) and removes it', async (t) => {
  const root = await tempDir(t, 'modelferry-blobs-');
  await mkdir(path.join(root, 'cache', 'tmp'), { recursive: true });
  await writeFile(path.join(root, 'cache', 'tmp', 'half.part'), 'unfinished');
  const { cache } = await started(t, root);
  t.deepEqual(await readdir(cache), []);
});

test('serveOnly hides blobs from size() and holds() while their files stay; remove() deletes the file', async (t) => {
  const { blobs } = await started(t);
  const digest = await store(blobs, makeProgram(100));
  blobs.serveOnly((sha) => sha !== digest);
  t.is(blobs.size(digest), undefined);
  t.false(blobs.holds({ sha256: digest, size: 100 }));
  t.is(blobs.storedSize(digest), 100);
  t.is(await blobs.openForRead(digest), undefined);
  await blobs.remove(digest);
  t.is(blobs.storedSize(digest), undefined);
  await t.throwsAsync(stat(path.join(blobs.pathOf(digest))), { code: 'ENOENT' });
});

test('an open reader and a hold keep a blob marked held until released', async (t) => {
  const { blobs } = await started(t);
  const digest = await store(blobs, makeProgram(100));
  const reader = await blobs.openForRead(digest);
  t.truthy(reader);
  const release = blobs.hold([digest, digest]);
  t.true(blobs.isHeld(digest));
  await reader!.file.close();
  reader!.release();
  t.true(blobs.isHeld(digest));
  release();
  release();
  t.false(blobs.isHeld(digest));
});
