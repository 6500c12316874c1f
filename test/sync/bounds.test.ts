import { readFile, writeFile } from 'node:fs/promises';
import path from 'node:path';
import test from 'ava';
import { MANIFEST_FORMAT, parseManifest, revisionOf, type Manifest } from '../../daemon/sync/manifest.ts';
import { expectError, leavesStateUnchanged, poll, push, pushed } from '../helpers/api.ts';
import { FaultStore } from '../helpers/fault-store.ts';
import { startGateway } from '../helpers/gateway.ts';
import { fixture, sha256 } from '../helpers/programs.ts';
import { deviceView, NEVER, publishBytes, startRunDone, storeDir, synced, syncNow, syncStatus, syncingGateway } from './sync-helpers.ts';

// A slow or hostile store cannot hold a sync, rewrite a version or grow the catalog without
// bound (docs/configuration.md "upstream", "trust and artifacts"; docs/limits.md).

async function manifestOf(store: string): Promise<Manifest> {
  return parseManifest(JSON.parse(await readFile(path.join(store, 'manifest.json'), 'utf8')));
}

/** Writes a manifest by hand, as a store that does not use `modelferry publish` may. */
async function writeManifest(store: string, content: Pick<Manifest, 'models' | 'assignments' | 'groups'>): Promise<void> {
  const manifest: Manifest = { format: MANIFEST_FORMAT, revision: revisionOf(content), generatedAt: new Date().toISOString(), ...content };
  await writeFile(path.join(store, 'manifest.json'), JSON.stringify(manifest));
}

test('a store that drips one byte every half second fails the sync at upstream.syncTimeoutSeconds, in GET /v1/sync and /healthz', async (t) => {
  const store = await storeDir(t);
  await publishBytes(store, 'kws', '1', fixture('add.pte'), { assign: 'default' });
  const server = await FaultStore.start(t, store);
  server.fault('/manifest.json', { kind: 'drip', intervalMs: 500 });
  const gw = await syncingGateway(t, `${server.url}/manifest.json`, { 'upstream.syncTimeoutSeconds': '2', 'upstream.bodyIdleTimeoutSeconds': '10' });
  const status = await startRunDone(gw);
  t.like(status, { state: 'failing', lastOutcome: { result: 'failed', error: { code: 'upstream_timeout' } } });
  t.regex(status.lastError.message, /did not finish within its deadline of 2 s \(upstream\.syncTimeoutSeconds 2 s\)/);
  const took = Date.parse(status.lastOutcome.finishedAt) - Date.parse(status.lastOutcome.startedAt);
  t.true(took >= 1900 && took < 9000, `the sync ended at its deadline, not at the idle timeout (${took} ms)`);
  const health = await (await gw.fetch('/healthz')).json() as { upstream: { lastError: { code: string; message: string } } };
  t.like(health.upstream.lastError, { code: 'upstream_timeout' });
  t.is((await poll(gw, 'aa:bb:cc:dd:ee:01')).status, 404, 'nothing was applied');

  // The same drip on an artifact: the deadline grows with the bytes to fetch (1 s per 32 KiB), no more.
  server.clearFaults();
  server.fault('/artifacts/*', { kind: 'drip', intervalMs: 500 });
  const answer = await syncNow(gw);
  t.is(answer.status, 504);
  t.is(answer.body.error, 'upstream_timeout');
  t.regex(answer.body.message, /deadline of 2 s \(upstream\.syncTimeoutSeconds 2 s, plus 1 s per 32 KiB of the 1072 bytes to download\)/);
  server.clearFaults();
  await synced(t, gw);
  t.is((await poll(gw, 'aa:bb:cc:dd:ee:01')).status, 200, 'a store that answers again is synced');
});

test('a manifest that changes the bytes of a stored version is refused whole and logged; the catalog and devices keep what they had', async (t) => {
  const store = await storeDir(t);
  await publishBytes(store, 'kws', '1', fixture('add.pte'), { assign: 'default' });
  const server = await FaultStore.start(t, store);
  const watched = await startGateway(t, { 'upstream.url': `${server.url}/manifest.json`, 'upstream.schedule': NEVER }, { logs: true });
  await startRunDone(watched);
  const before = await deviceView(watched, 'aa:bb:cc:dd:ee:01');
  t.is(before.poll.status, 200);

  // The store rewrites kws@1 with other bytes, and adds kws@2 in the same manifest.
  const manifest = await manifestOf(store);
  const mul = fixture('mul.pte');
  await writeFile(path.join(store, 'artifacts', sha256(mul)), mul);
  const rewritten = { ...manifest.models[0]!, sha256: sha256(mul), size: mul.length, url: `artifacts/${sha256(mul)}` };
  await writeManifest(store, { models: [rewritten, { ...rewritten, version: '2' }], assignments: manifest.assignments, groups: manifest.groups });

  await leavesStateUnchanged(t, watched, async () => {
    const answer = await syncNow(watched);
    t.is(answer.status, 502);
    t.is(answer.body.error, 'manifest_invalid');
    t.regex(answer.body.message, /changes the bytes of kws@1 \(sha256 c9608ddefe47… here, fa143f48550c… now\); versions are immutable, so nothing of it was applied/);
  });
  t.deepEqual(await deviceView(watched, 'aa:bb:cc:dd:ee:01'), before);
  t.true(watched.logs().some((line) => line.msg?.startsWith('upstream sync failed') && String(line.reason).includes('changes the bytes of kws@1')), 'logged');
  t.like(await syncStatus(watched), { state: 'failing', lastError: { code: 'manifest_invalid' } });
});

test('artifacts.maxModels: a push beyond it is 507 catalog_full before its body is read; a sync beyond it is refused whole', async (t) => {
  const store = await storeDir(t);
  for (const version of ['1', '2', '3']) await publishBytes(store, 'kws', version, fixture('add.pte'));
  const server = await FaultStore.start(t, store);
  const gw = await syncingGateway(t, `${server.url}/manifest.json`, { 'artifacts.maxModels': '4' });
  t.like(await startRunDone(gw), { lastOutcome: { result: 'updated', models: 3 } });
  await pushed(t, gw, 'vad', '1', fixture('mul.pte'));
  await leavesStateUnchanged(t, gw, async () => {
    await expectError(t, await push(gw, 'vad', '2', fixture('mul.pte')), 507, 'catalog_full', 'as many as artifacts.maxModels (4)');
  });
  t.is((await push(gw, 'vad', '1', fixture('mul.pte'))).status, 200, 'the same model again is no new model');

  await publishBytes(store, 'kws', '4', fixture('add.pte'));
  await leavesStateUnchanged(t, gw, async () => {
    const answer = await syncNow(gw);
    t.is(answer.status, 507);
    t.is(answer.body.error, 'catalog_full');
    t.regex(answer.body.message, /manifest lists 4 models; with the 1 pushed here that is more than artifacts\.maxModels \(4\): nothing of it was applied/);
  });
});

test('the status page shows a large catalog one page of versions at a time', async (t) => {
  const store = await storeDir(t);
  await publishBytes(store, 'kws', '0', fixture('add.pte'));
  const manifest = await manifestOf(store);
  const model = manifest.models[0]!;
  // 240 versions sharing one artifact: what a store that never deletes old builds becomes.
  const models = Array.from({ length: 240 }, (_, i) => ({ ...model, version: `2026.1.${String(i).padStart(3, '0')}` }));
  await writeManifest(store, { models, assignments: [{ selector: 'default', model: 'kws', version: 'latest' }], groups: {} });
  const server = await FaultStore.start(t, store);
  const gw = await syncingGateway(t, `${server.url}/manifest.json`);
  t.like(await startRunDone(gw), { lastOutcome: { result: 'updated', models: 240 } });

  const page = async (query: string) => (await gw.fetch(`/${query}`)).text();
  const versions = (html: string) => [...html.matchAll(/<li><b>(2026\.1\.\d+)<\/b>/g)].map((m) => m[1]);
  const first = await page('');
  t.is(versions(first).length, 50);
  t.regex(first, /versions 1–50 of 240/);
  t.true(first.includes('href="/?models=2"'));
  t.true(first.length < 64 * 1024, `one page stays small (${first.length} bytes)`);
  const last = await page('?models=5&page=1');
  t.is(versions(last).length, 40);
  t.regex(last, /versions 201–240 of 240/);
  const all = new Set<string>();
  for (let i = 1; i <= 5; i++) for (const version of versions(await page(`?models=${i}`))) all.add(version!);
  t.is(all.size, 240, 'every version is on exactly one page');
  t.deepEqual(versions(await page('?models=99')), versions(last), 'a page past the end shows the last one');
  const fragment = await page('?fragment=1&models=2');
  t.regex(fragment, /versions 51–100 of 240/);
});
