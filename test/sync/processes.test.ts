import { readdir, rm, stat } from 'node:fs/promises';
import path from 'node:path';
import test from 'ava';
import { poll } from '../helpers/api.ts';
import { startDaemon, type RunningDaemon } from '../helpers/daemon-process.ts';
import { FaultStore } from '../helpers/fault-store.ts';
import { fixture, makeProgram, sha256 } from '../helpers/programs.ts';
import { ADMIN_TOKEN, ALL_TOKEN, SYNC_TOKEN } from '../helpers/tokens.ts';
import { NEVER, publishBytes, storeDir, synced, syncingGateway, startRunDone } from './sync-helpers.ts';
import { until } from '../helpers/harness.ts';

// Gateways as real processes: one gateway as another's upstream (sites chain), and a
// gateway killed with SIGKILL in the middle of a sync.

const MAC = '02:00:00:00:40:01';
const LAB = '02:00:00:00:40:02';

async function json(daemon: RunningDaemon, pathname: string, init: RequestInit & { token?: string } = {}): Promise<{ status: number; body: any }> {
  const response = await daemon.fetch(pathname, { token: ALL_TOKEN, ...init });
  return { status: response.status, body: await response.json() };
}

test('a gateway syncs from another gateway\'s /v1/manifest with a sync token (devices.token set there); local pushes override its assignments until deleted', async (t) => {
  const upstream = await startDaemon(t, { config: { devices: { token: 'upstream-device-token-01' } } });
  const put = async (name: string, version: string, bytes: Buffer) => (await upstream.fetch(`/v1/models/${name}/${version}`, { method: 'PUT', body: bytes, token: ALL_TOKEN })).status;
  t.is(await put('kws', '1', fixture('add.pte')), 201);
  t.is(await put('vision', '1', fixture('mul.pte')), 201);
  const assignUp = (selector: string, body: object) => json(upstream, `/v1/assignments/${selector}`, { method: 'PUT', headers: { 'Content-Type': 'application/json' }, body: JSON.stringify(body) });
  t.is((await json(upstream, '/v1/groups/lab', { method: 'PUT', headers: { 'Content-Type': 'application/json' }, body: JSON.stringify({ members: [LAB] }) })).status, 201);
  t.is((await assignUp('default', { model: 'kws', version: 'latest' })).status, 201);
  t.is((await assignUp('group:lab', { model: 'vision', version: '1' })).status, 201);

  const site = await syncingGateway(t, `${upstream.url}/v1/manifest`, { 'upstream.token': SYNC_TOKEN });
  t.like((await startRunDone(site)).lastOutcome, { result: 'updated', fetched: 2 });
  const device = await poll(site, MAC);
  t.like(device.json.model, { name: 'kws', version: '1', sha256: sha256(fixture('add.pte')), url: `/v1/artifacts/${sha256(fixture('add.pte'))}` });
  t.is((await poll(site, LAB)).json.model.name, 'vision');
  const artifact = await site.fetch(device.json.model.url);
  t.deepEqual(Buffer.from(await artifact.arrayBuffer()), fixture('add.pte'));
  await synced(t, site, 'unchanged');

  // A local assignment wins for its selector until it is deleted.
  const local = makeProgram(4096);
  t.is((await site.fetch('/v1/models/site-kws/1', { method: 'PUT', body: local, token: ALL_TOKEN })).status, 201);
  const assignLocal = await site.fetch('/v1/assignments/default', { method: 'PUT', token: ADMIN_TOKEN, headers: { 'Content-Type': 'application/json' }, body: JSON.stringify({ model: 'site-kws', version: '1' }) });
  t.is(assignLocal.status, 201);
  t.is((await poll(site, MAC)).json.model.sha256, sha256(local));
  t.is((await poll(site, LAB)).json.model.name, 'vision', 'other selectors keep the upstream assignment');
  t.is((await site.fetch('/v1/assignments/default', { method: 'DELETE', token: ADMIN_TOKEN })).status, 204);
  t.is((await poll(site, MAC)).json.model.name, 'kws');

  // A newer upstream version reaches the site on its next sync.
  const v2 = makeProgram(8192);
  t.is(await put('kws', '2', v2), 201);
  t.like(await synced(t, site), { fetched: 1 });
  t.is((await poll(site, MAC)).json.model.sha256, sha256(v2));

  // A token without the sync scope is refused by the upstream: the sync fails, nothing changes.
  const wrong = await syncingGateway(t, `${upstream.url}/v1/manifest`, { 'upstream.token': ADMIN_TOKEN });
  t.like((await startRunDone(wrong)).lastOutcome, { result: 'failed', error: { code: 'upstream_error' } });
  t.regex((await startRunDone(wrong)).lastOutcome.error.message, /403/);
  t.is((await poll(wrong, MAC)).status, 404);
});

test('SIGKILL in the middle of a sync: the restarted gateway serves the old catalog, keeps the partial download and resumes it with Range', async (t) => {
  const store = await storeDir(t);
  await publishBytes(store, 'kws', '1', fixture('add.pte'), { assign: 'default' });
  const server = await FaultStore.start(t, store);
  const config = {
    upstream: { url: `${server.url}/manifest.json`, schedule: NEVER, maxRandomDelaySeconds: 0, headersTimeoutSeconds: 2, bodyIdleTimeoutSeconds: 60 },
  };
  const daemon = await startDaemon(t, { config });
  await until('the first sync', async () => (await json(daemon, '/v1/sync')).body.lastOutcome?.result === 'updated' || undefined);
  const v1 = await json(daemon, `/v1/devices/${MAC}/model`);
  t.is(v1.body.model.version, '1');

  const v2 = makeProgram(8 * 1024 * 1024);
  await publishBytes(store, 'kws', '2', v2, { assign: 'default' });
  const v2Path = `/artifacts/${sha256(v2)}`;
  server.fault(v2Path, { kind: 'stall', after: 3 * 1024 * 1024 });
  void daemon.fetch('/v1/sync', { method: 'POST', token: ADMIN_TOKEN }).catch(() => {});
  const partial = path.join(daemon.cache, 'partial', `${sha256(v2)}.part`);
  await until('part of the artifact on disk', async () => ((await stat(partial).catch(() => undefined))?.size ?? 0) > 1024 * 1024 || undefined);
  t.deepEqual(await daemon.kill(), { code: null, signal: 'SIGKILL' });
  const kept = (await stat(partial)).size;

  // After the restart the artifact still hangs: devices get the old model, whole.
  server.fault(v2Path, { kind: 'hang' });
  const next = await startDaemon(t, { dir: daemon.dir, config });
  t.deepEqual((await json(next, `/v1/devices/${MAC}/model`)).body, v1.body);
  t.is((await next.fetch(`/v1/artifacts/${sha256(v2)}`)).status, 404);
  t.is((await stat(partial)).size, kept, 'the partial download survived the restart');
  // The sync at start asks for the rest of the artifact, which hangs: devices still get v1.
  await until('the resumed request', async () => server.requests.filter((r) => r.path === v2Path).length >= 2 || undefined);
  t.deepEqual((await json(next, `/v1/devices/${MAC}/model`)).body, v1.body);

  server.clearFaults();
  const outcome = await json(next, '/v1/sync', { method: 'POST', token: ADMIN_TOKEN });
  t.is(outcome.status, 200, JSON.stringify(outcome.body));
  t.like(outcome.body, { result: 'updated', fetched: 1 });
  t.true(outcome.body.bytes < v2.length - kept + 64 * 1024, `fetched ${outcome.body.bytes} bytes, ${kept} were kept`);
  const resumes = server.requests.filter((r) => r.path === v2Path).slice(1);
  t.true(resumes.length >= 1);
  for (const request of resumes) t.is(request.range, `bytes=${kept}-`);
  const answer = await json(next, `/v1/devices/${MAC}/model`);
  t.is(answer.body.model.sha256, sha256(v2));
  const served = await next.fetch(answer.body.model.url);
  t.is(sha256(Buffer.from(await served.arrayBuffer())), sha256(v2));
  t.deepEqual(await readdir(path.join(next.cache, 'partial')), []);
});

test('systemctl clean --what=cache loses nothing that cannot be fetched again: pushed blobs live under the state folder, synced ones come back', async (t) => {
  const store = await storeDir(t);
  const upstreamModel = makeProgram(4096);
  await publishBytes(store, 'synced', '1', upstreamModel, { assign: 'group:lab' });
  const server = await FaultStore.start(t, store);
  const config = { upstream: { url: `${server.url}/manifest.json`, schedule: NEVER, maxRandomDelaySeconds: 0 } };
  const daemon = await startDaemon(t, { config });
  await until('the first sync', async () => (await json(daemon, '/v1/sync')).body.lastOutcome?.result === 'updated' || undefined);
  const pushedModel = makeProgram(4096);
  t.is((await daemon.fetch('/v1/models/pushed/1', { method: 'PUT', body: pushedModel, token: ALL_TOKEN })).status, 201);
  t.true((await readdir(path.join(daemon.state, 'blobs'))).includes(sha256(pushedModel)));
  t.true((await readdir(daemon.cache)).includes(sha256(upstreamModel)));
  t.deepEqual(await daemon.stop(), { code: 0, signal: null });

  // What `systemctl clean --what=cache` does: the cache directory is emptied.
  await rm(daemon.cache, { recursive: true, force: true });
  const next = await startDaemon(t, { dir: daemon.dir, config });
  t.is((await next.fetch(`/v1/artifacts/${sha256(pushedModel)}`, { method: 'HEAD' })).status, 200, 'the only copy survived');
  // The catalog still remembers the upstream layer, and the sync at start (its manifest is
  // unchanged, but the blob is missing) fetches the bytes again.
  await until('the synced blob back', async () => (await next.fetch(`/v1/artifacts/${sha256(upstreamModel)}`, { method: 'HEAD' })).status === 200 || undefined);
});
