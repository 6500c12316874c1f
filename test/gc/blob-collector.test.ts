import { readdir } from 'node:fs/promises';
import http from 'node:http';
import path from 'node:path';
import { Readable } from 'node:stream';
import test, { type ExecutionContext } from 'ava';
import { Catalog } from '../../daemon/catalog/catalog.ts';
import { systemClock } from '../../daemon/clock.ts';
import type { ModelRecord } from '../../daemon/catalog/types.ts';
import { DeviceRegistry } from '../../daemon/devices/device-registry.ts';
import { createLogger } from '../../daemon/log.ts';
import { Metrics } from '../../daemon/metrics.ts';
import { BlobCollector } from '../../daemon/gc/blob-collector.ts';
import { BlobStore } from '../../daemon/store/blob-store.ts';
import { Database } from '../../daemon/store/database.ts';
import { assign, blobFiles, pushed, sendJson } from '../helpers/api.ts';
import { startGateway, type TestGateway } from '../helpers/gateway.ts';
import { tempDir } from '../helpers/harness.ts';
import { makeProgram, sha256 } from '../helpers/programs.ts';
import { ADMIN_TOKEN } from '../helpers/tokens.ts';

// Blob garbage collection (docs/central-store.md "Garbage collection"): only referenced blobs
// are served; unreferenced ones go after cache.gcGraceHours, unless a device runs them, a
// download or a sync holds them. A pipeline that pushes every build must not fill the SD card.

const log = createLogger('silent');
const HOUR = 3_600_000;

async function collect(gw: TestGateway): Promise<{ removed: Array<{ sha256: string }>; bytes: number; kept: number }> {
  const response = await gw.fetch('/v1/cache/gc', { method: 'POST', token: ADMIN_TOKEN });
  return response.json() as never;
}

async function deleteModel(t: ExecutionContext, gw: TestGateway, name: string, version: string): Promise<void> {
  const response = await gw.fetch(`/v1/models/${name}/${version}`, { method: 'DELETE', token: ADMIN_TOKEN });
  t.is(response.status, 204, await response.text());
}

test('a pipeline that pushes, assigns and deletes build after build ends with only the referenced blobs on disk', async (t) => {
  const gw = await startGateway(t, { 'cache.gcGraceHours': '0' });
  const builds = Array.from({ length: 40 }, () => makeProgram(16 * 1024));
  let previous: string | undefined;
  for (const [i, bytes] of builds.entries()) {
    const version = `build-${i}`;
    await pushed(t, gw, 'kws', version, bytes);
    await assign(t, gw, 'default', { model: 'kws', version });
    if (previous !== undefined && i % 4 !== 0) await deleteModel(t, gw, 'kws', previous);
    previous = version;
    if (i % 10 === 9) await collect(gw);
  }
  await collect(gw);
  const models = (await (await gw.fetch('/v1/models', { token: ADMIN_TOKEN })).json() as { models: ModelRecord[] }).models;
  const referenced = [...new Set(models.map((m) => m.sha256))].sort();
  t.true(models.length < builds.length / 2, 'most versions were deleted');
  t.deepEqual(await blobFiles(gw), referenced, 'exactly the blobs of the models still in the catalog');
  t.true(referenced.includes(sha256(builds.at(-1)!)));
  for (const sha of referenced) t.is((await gw.fetch(`/v1/artifacts/${sha}`, { method: 'HEAD' })).status, 200);
});

test('an artifact whose model was deleted stops being served at once; its file waits for the grace period', async (t) => {
  const gw = await startGateway(t);
  const bytes = makeProgram(4096);
  await pushed(t, gw, 'kws', '1', bytes);
  t.is((await gw.fetch(`/v1/artifacts/${sha256(bytes)}`, { method: 'HEAD' })).status, 200);
  await deleteModel(t, gw, 'kws', '1');
  for (const method of ['HEAD', 'GET']) t.is((await gw.fetch(`/v1/artifacts/${sha256(bytes)}`, { method })).status, 404, method);
  t.like(await collect(gw), { removed: [], kept: 1 });
  t.deepEqual(await blobFiles(gw), [sha256(bytes)], 'still on disk: the default grace is 24 h');
  // Pushed again within the grace period: served again without anything re-sent twice.
  await pushed(t, gw, 'kws', '2', bytes);
  t.is((await gw.fetch(`/v1/artifacts/${sha256(bytes)}`, { method: 'HEAD' })).status, 200);
});

test('a blob a device is downloading is not deleted until the download is over, and the device gets every byte', async (t) => {
  const gw = await startGateway(t, { 'cache.gcGraceHours': '0' });
  const bytes = makeProgram(8 * 1024 * 1024);
  await pushed(t, gw, 'big', '1', bytes);
  const { hostname, port } = new URL(gw.url);
  const response = await new Promise<http.IncomingMessage>((resolve, reject) => {
    http.get({ host: hostname, port, path: `/v1/artifacts/${sha256(bytes)}` }, resolve).on('error', reject);
  });
  response.pause();
  await deleteModel(t, gw, 'big', '1');
  t.like(await collect(gw), { removed: [], kept: 1 });
  t.deepEqual(await blobFiles(gw), [sha256(bytes)]);
  const chunks: Buffer[] = [];
  for await (const chunk of response) chunks.push(chunk as Buffer);
  t.is(sha256(Buffer.concat(chunks)), sha256(bytes));
  let removed: Array<{ sha256: string }> = [];
  // The reader is released when the file stream closes, a moment after the last byte.
  for (let i = 0; i < 100 && removed.length === 0; i++) {
    removed = (await collect(gw)).removed;
    if (removed.length === 0) await new Promise((resolve) => setTimeout(resolve, 20));
  }
  t.deepEqual(removed.map((r) => r.sha256), [sha256(bytes)]);
  t.deepEqual(await blobFiles(gw), []);
});

test('a blob a device reports running is kept though no model names it any more', async (t) => {
  const gw = await startGateway(t, { 'cache.gcGraceHours': '0' });
  const running = makeProgram(2048);
  const other = makeProgram(2048);
  await pushed(t, gw, 'kws', '1', running);
  await pushed(t, gw, 'kws', '2', other);
  // Reports are kept only for devices the catalog names: this one through a group.
  t.is((await sendJson(gw, 'PUT', '/v1/groups/lab', { members: ['02:00:00:00:30:01'] })).status, 201);
  const report = await sendJson(gw, 'POST', '/v1/devices/02:00:00:00:30:01/report', { state: 'installed', sha256: sha256(running) });
  t.is(report.status, 204);
  await deleteModel(t, gw, 'kws', '1');
  await deleteModel(t, gw, 'kws', '2');
  t.deepEqual((await collect(gw)).removed.map((r) => r.sha256), [sha256(other)]);
  t.deepEqual(await blobFiles(gw), [sha256(running)]);
  t.is((await gw.fetch(`/v1/artifacts/${sha256(running)}`, { method: 'HEAD' })).status, 404, 'kept, not served');
});

// ---------------------------------------------------------------- the grace period, by the clock

async function parts(t: ExecutionContext, clock: { now: number }, dir?: string) {
  const root = dir ?? await tempDir(t, 'modelferry-gc-');
  const db = new Database(path.join(root, 'state'), log);
  const blobs = new BlobStore({ local: path.join(root, 'state', 'blobs'), cache: path.join(root, 'cache') }, log);
  const catalog = new Catalog(db, blobs, log);
  const devices = new DeviceRegistry(db, log, { seenFlushSeconds: 30, maxKnown: 1000, newPerAddressPerMinute: 1000 }, () => true);
  const collector = new BlobCollector({ graceHours: 24, intervalMinutes: 60 }, { blobs, catalog, devices, metrics: new Metrics(), clock: { ...systemClock, now: () => new Date(clock.now) }, log });
  const started = [db, blobs, catalog, devices, collector];
  for (const part of started) await part.start();
  let stopped = false;
  const stop = async () => {
    if (stopped) return;
    stopped = true;
    for (const part of [...started].reverse()) await part.stop();
  };
  t.teardown(stop);
  const push = async (name: string, version: string, bytes: Buffer) => {
    const pending = await blobs.receive(Readable.from([bytes]), 1 << 24);
    await catalog.addModel({ name, version, sha256: pending.sha256, size: pending.size, format: 'executorch', signature: null, keyId: null, createdAt: new Date(clock.now).toISOString() }, () => pending.commit());
  };
  return { root, blobs, catalog, collector, push, stop };
}

test('an unreferenced blob is kept for gcGraceHours from the moment it lost its last model, across a restart', async (t) => {
  const clock = { now: Date.parse('2026-11-01T00:00:00Z') };
  const first = await parts(t, clock);
  const bytes = makeProgram(1024);
  await first.push('kws', '1', bytes);
  clock.now += 100 * HOUR; // an old blob: its age does not count, its time unreferenced does
  await first.catalog.deleteModel('kws', '1');
  clock.now += 23 * HOUR;
  t.like(await first.collector.collect(), { removed: [], kept: 1 });
  await first.stop();

  const second = await parts(t, clock, first.root);
  t.like(await second.collector.collect(), { removed: [], kept: 1 }, 'the grace period survives a restart');
  clock.now += 2 * HOUR;
  t.deepEqual((await second.collector.collect()).removed.map((r) => r.sha256), [sha256(bytes)]);
  t.deepEqual((await readdir(path.join(first.root, 'state', 'blobs'))).filter((n) => n !== 'tmp'), []);
});

test('a blob held by a sync in progress is not collected, however old', async (t) => {
  const clock = { now: Date.parse('2026-11-01T00:00:00Z') };
  const { blobs, collector, push, catalog } = await parts(t, clock);
  const bytes = makeProgram(1024);
  await push('kws', '1', bytes);
  await catalog.deleteModel('kws', '1');
  clock.now += 1000 * HOUR;
  const release = blobs.hold([sha256(bytes)]);
  t.like(await collector.collect(), { removed: [], kept: 1 });
  release();
  t.is((await collector.collect()).removed.length, 1);
});

test('at start, a locally pushed blob left in the cache folder by an older layout moves to the state folder', async (t) => {
  const clock = { now: Date.now() };
  const first = await parts(t, clock);
  const bytes = makeProgram(1024);
  await first.push('kws', '1', bytes);
  await first.stop();
  const { rename, mkdir } = await import('node:fs/promises');
  await mkdir(path.join(first.root, 'cache'), { recursive: true });
  await rename(path.join(first.root, 'state', 'blobs', sha256(bytes)), path.join(first.root, 'cache', sha256(bytes)));

  const second = await parts(t, clock, first.root);
  t.is(second.blobs.tierOf(sha256(bytes)), 'local');
  t.deepEqual(await readdir(path.join(first.root, 'cache')), []);
  t.is(second.blobs.size(sha256(bytes)), 1024);
});
