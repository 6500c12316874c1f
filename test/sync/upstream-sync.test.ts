import test, { type ExecutionContext } from 'ava';
import { getTasks } from 'node-cron';
import { Admission } from '../../daemon/admission/admission.ts';
import { Catalog } from '../../daemon/catalog/catalog.ts';
import { systemClock } from '../../daemon/clock.ts';
import { createLogger } from '../../daemon/log.ts';
import { Metrics } from '../../daemon/metrics.ts';
import { TrustPolicy } from '../../daemon/signing/trust.ts';
import { BlobStore, blobDirsOf } from '../../daemon/store/blob-store.ts';
import { DiskSpace } from '../../daemon/store/disk-space.ts';
import { Database } from '../../daemon/store/database.ts';
import { UpstreamSync } from '../../daemon/sync/upstream-sync.ts';
import { FaultStore } from '../helpers/fault-store.ts';
import { testConfig, type ConfigOverrides } from '../helpers/gateway.ts';
import { tempDir } from '../helpers/harness.ts';
import { fixture } from '../helpers/programs.ts';
import { NEVER, publishBytes, storeDir } from './sync-helpers.ts';

// The sync part on its own, with a clock of the test's: the circuit breaker stops scheduled
// runs (not requested ones), lets one through after the cool-down, and stop() ends a sync
// that hangs instead of waiting for it.

const log = createLogger('silent');

async function syncPart(t: ExecutionContext, url: string, clock: { now: number }, overrides: ConfigOverrides = {}) {
  const dir = await tempDir(t, 'modelferry-sync-');
  const config = testConfig(dir, {
    'upstream.url': url,
    'upstream.schedule': NEVER,
    'upstream.breakerFailures': '2',
    'upstream.breakerCooldownSeconds': '300',
    ...overrides,
  });
  const database = new Database(config.paths.state, log);
  const blobs = new BlobStore(blobDirsOf(config.paths), log);
  const catalog = new Catalog(database, blobs, log);
  const metrics = new Metrics();
  const clockOf = { ...systemClock, now: () => new Date(clock.now) };
  const admission = new Admission({ maxBytes: () => config.artifacts.maxBytes, formats: () => config.artifacts.formats, maxModels: () => config.artifacts.maxModels }, {
    catalog, blobs, trust: new TrustPolicy(config.trust), disk: new DiskSpace({ reserveBytes: () => config.artifacts.diskReserveBytes }), clock: clockOf, log,
  });
  const sync = new UpstreamSync({ upstream: () => config.upstream, cacheDir: config.paths.cache }, { admission, catalog, blobs, database, metrics, clock: clockOf, log });
  for (const part of [database, blobs, catalog]) await part.start();
  t.teardown(async () => {
    for (const part of [sync, catalog, blobs, database]) await part.stop();
  });
  return { sync, metrics, catalog };
}

test('with the breaker open, scheduled runs are skipped without a request; a requested run still goes; after the cool-down one scheduled run is let through', async (t) => {
  const store = await storeDir(t);
  await publishBytes(store, 'kws', '1', fixture('add.pte'), { assign: 'default' });
  const server = await FaultStore.start(t, store);
  server.fault('/manifest.json', { kind: 'status', status: 500 });
  const clock = { now: Date.parse('2026-11-01T00:00:00Z') };
  const { sync, metrics } = await syncPart(t, `${server.url}/manifest.json`, clock);
  // start() runs one sync by itself; the breaker needs two failures.
  await sync.start();
  await sync.run('request');
  t.like(sync.status(), { state: 'open', breaker: { state: 'open', failures: 2, openUntil: new Date(clock.now + 300_000).toISOString() } });
  const asked = server.requests.length;
  t.like(await sync.run('schedule'), { result: 'skipped', error: null });
  t.is(server.requests.length, asked, 'no request to a store the breaker gave up on');
  t.like(await sync.run('request'), { result: 'failed' }, 'an operator may still try');
  t.is(server.requests.length, asked + 1);

  clock.now += 301_000;
  t.is(sync.status().breaker.state, 'half_open');
  server.clearFaults();
  t.like(await sync.run('schedule'), { result: 'updated' });
  t.like(sync.status(), { state: 'ok', breaker: { state: 'closed', failures: 0 } });
  const text = await metrics.text();
  t.regex(text, /^modelferry_sync_runs_total\{result="skipped"\} 1$/m);
  t.regex(text, /^modelferry_upstream_circuit_state\{state="closed"\} 1$/m);
});

test.serial('start() schedules the sync with node-cron and stop() removes the task', async (t) => {
  const store = await storeDir(t);
  await publishBytes(store, 'kws', '1', fixture('add.pte'));
  const server = await FaultStore.start(t, store);
  const { sync } = await syncPart(t, `${server.url}/manifest.json`, { now: Date.now() }, { 'upstream.schedule': '*/5 * * * *' });
  // node-cron's registry is per process, and other tests of this file start syncs too (on
  // another schedule; this test runs before them, being serial).
  const before = new Set(getTasks().keys());
  await sync.start();
  const added = [...getTasks().values()].filter((task) => !before.has(task.id) && task.getPattern() === '*/5 * * * *');
  t.is(added.length, 1);
  t.like({ name: added[0]!.name, pattern: added[0]!.getPattern() }, { name: 'upstream-sync', pattern: '*/5 * * * *' });
  await sync.stop();
  t.false(getTasks().has(added[0]!.id), 'stop() destroys the task');
});

test('stop() ends a sync that hangs on the store at once, as sync_aborted, and changes nothing', async (t) => {
  const store = await storeDir(t);
  await publishBytes(store, 'kws', '1', fixture('add.pte'), { assign: 'default' });
  const server = await FaultStore.start(t, store);
  server.fault('/manifest.json', { kind: 'hang' });
  const { sync, catalog } = await syncPart(t, `${server.url}/manifest.json`, { now: Date.now() }, { 'upstream.headersTimeoutSeconds': '3600' });
  await sync.start();
  const running = sync.run('request');
  while (server.requests.length === 0) await new Promise((resolve) => setTimeout(resolve, 10));
  await sync.stop();
  t.like(await running, { result: 'failed', error: { code: 'sync_aborted' } });
  t.is(catalog.layer('upstream').models.length, 0);
  t.is(sync.status().breaker.failures, 0, 'a shutdown is not the store failing');
});

