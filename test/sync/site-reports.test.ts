import { mkdir, readFile, writeFile } from 'node:fs/promises';
import path from 'node:path';
import test from 'ava';
import { FolderObjects } from '../../daemon/central-store/folder-objects.ts';
import { openStore } from '../../daemon/central-store/store-objects.ts';
import { createLogger } from '../../daemon/log.ts';
import { publish } from '../../daemon/publish/publish.ts';
import { fleetTable, readFleet } from '../../daemon/site-reports/fleet-view.ts';
import { siteReportSchema, type SiteReport } from '../../daemon/site-reports/site-report.ts';
import { SiteReporter } from '../../daemon/site-reports/site-reporter.ts';
import { assign, poll, pushed } from '../helpers/api.ts';
import { runCli } from '../helpers/daemon-process.ts';
import { startGateway, type TestGateway } from '../helpers/gateway.ts';
import { tempDir, until } from '../helpers/harness.ts';
import { fixture } from '../helpers/programs.ts';
import { S3_KEY_ID, S3_READER_KEY_ID, S3_READER_SECRET, S3_SECRET, S3Store } from '../helpers/s3-store.ts';
import { report } from '../ops/fleet-scenario.ts';
import { ADMIN_TOKEN } from '../helpers/tokens.ts';
import { NEVER, startRunDone, synced } from './sync-helpers.ts';

// Every gateway reports its site into the store (gateways/<id>.json), and `modelferry
// fleet` reads them all (docs/central-store.md "Every site reports").

async function reportingGateway(t: import('ava').ExecutionContext, s3: S3Store, name: string, interval = 60, prefix = 'fleet'): Promise<TestGateway> {
  const gw = await startGateway(t, {
    ...s3.upstream(prefix),
    'upstream.schedule': NEVER,
    'upstream.report': 'true',
    'upstream.reportIntervalSeconds': String(interval),
    'mdns.name': name,
  });
  await startRunDone(gw);
  return gw;
}

async function reportOf(s3: S3Store, gw: TestGateway, prefix = 'fleet'): Promise<SiteReport | undefined> {
  const id = (await (await gw.fetch('/healthz')).json() as { gateway: string }).gateway;
  const store = await openStore(`s3://models/${prefix}`, { s3: s3.settings(), env: {} });
  try {
    // s3rver (unlike S3) rewrites an object in place: a read during a gateway's write may
    // break off or see part of it. Such a read counts as none yet.
    const found = await store.read(`gateways/${id}.json`).catch(() => null);
    let json: unknown = null;
    try {
      json = JSON.parse(found?.bytes.toString('utf8') ?? 'null');
    } catch {
      return undefined;
    }
    const parsed = siteReportSchema.safeParse(json);
    return parsed.success ? parsed.data : undefined;
  } finally {
    store.close();
  }
}

async function publishModel(t: import('ava').ExecutionContext, s3: S3Store, prefix = 'fleet'): Promise<void> {
  const file = path.join(await tempDir(t), 'kws.pte');
  await writeFile(file, fixture('add.pte'));
  await publish({ store: `s3://models/${prefix}`, file, name: 'kws', version: '1', assign: 'default', access: { s3: s3.settings(), env: {} } });
}

const awsEnv = (s3: S3Store) => ({ ...process.env, AWS_ACCESS_KEY_ID: S3_KEY_ID, AWS_SECRET_ACCESS_KEY: S3_SECRET, AWS_ENDPOINT_URL: s3.endpoint, AWS_REGION: 'us-east-1' });

test('after a sync a gateway writes its site into the store (name, version, last sync, models, device counts); syncs within its interval do not write again at once', async (t) => {
  const s3 = await S3Store.start(t);
  await publishModel(t, s3);
  const gw = await reportingGateway(t, s3, 'site-a');
  const first = await until('the first report', () => reportOf(s3, gw));
  t.like(first, {
    name: 'site-a',
    lastSync: { result: 'updated', error: null },
    models: { count: 1, bytes: 1072, listed: [{ name: 'kws', version: '1', size: 1072, layer: 'upstream' }] },
    devices: { total: 0 },
  });
  const puts = () => s3.requests.filter((r) => r.method === 'PUT' && r.url.startsWith('/models/fleet/gateways/')).length;
  t.is(puts(), 1);
  for (let i = 0; i < 3; i++) await synced(t, gw, 'unchanged');
  t.is(puts(), 1, 'syncs within the minute do not write again at once');
  const health = await (await gw.fetch('/healthz')).json() as { upstream: { report: { lastWrittenAt: string; lastError: null; writes: number } } };
  t.like(health.upstream.report, { lastWrittenAt: first!.reportedAt, lastError: null, writes: 1 });
});

test('a gateway whose key may only read syncs as usual; its report is refused, and /healthz says which permission it lacks', async (t) => {
  const s3 = await S3Store.start(t);
  await publishModel(t, s3);
  const gw = await startGateway(t, {
    'upstream.url': 's3://models/fleet/manifest.json',
    'upstream.s3': JSON.stringify(s3.readerSettings()),
    'upstream.schedule': NEVER,
    'upstream.report': 'true',
  });
  t.like(await startRunDone(gw), { state: 'ok', lastOutcome: { result: 'updated' } });
  const health = await until('the refused report', async () => {
    const body = await (await gw.fetch('/healthz')).json() as { status: string; upstream: { state: string; report: { lastError: { message: string } | null; writes: number } } };
    return body.upstream.report.lastError ? body : undefined;
  });
  t.like(health, { upstream: { state: 'ok', report: { writes: 0 } } });
  t.regex(health.upstream.report.lastError!.message, new RegExp(`denied s3:PutObject on s3://models/fleet/gateways/[^ ]+\\.json to access key id ${S3_READER_KEY_ID} \\(403 AccessDenied\\)`));
  t.deepEqual(s3.requests.filter((r) => r.url.startsWith('/models/fleet/gateways/') && r.status < 300), [], 'nothing written');
});

test('the reporter writes after each sync and when the fleet changes, never more often than its interval; a folder store works too', async (t) => {
  const dir = await tempDir(t);
  const facts = { failed: 0 };
  const syncListeners = new Set<() => void>();
  const store = new FolderObjects(dir);
  const reporter = new SiteReporter({
    enabled: () => true,
    openStore: async () => store,
    report: () => ({ ...sample, devices: { ...sample.devices, failed: facts.failed }, reportedAt: new Date().toISOString() }),
    onSync: (listener) => {
      syncListeners.add(listener);
      return () => syncListeners.delete(listener);
    },
    minIntervalMs: 300,
  }, createLogger('silent'));
  const written = async () => {
    const text = await readFile(path.join(dir, 'gateways', 'gw1.json'), 'utf8').catch(() => '');
    return text === '' ? undefined : siteReportSchema.parse(JSON.parse(text));
  };
  await reporter.start();
  t.teardown(() => reporter.stop());
  const writtenTimes = (n: number) => async () => (reporter.status().writes === n ? true : undefined);
  for (const listener of syncListeners) listener();
  await until('the report of a sync', writtenTimes(1));
  t.like(await written(), { gateway: 'gw1', devices: { failed: 0 } });
  facts.failed = 2;
  await until('the report of a changed fleet', writtenTimes(2));
  t.like(await written(), { devices: { failed: 2 } });
  // Nothing changed and no sync: the next checks write nothing. A sync soon after a write is written once the interval passed.
  for (const listener of syncListeners) listener();
  await until('the deferred report of the sync', writtenTimes(3));
  const at = reporter.status().lastWrittenAt;
  await until('two more intervals', async () => (Date.now() - Date.parse(at!) > 700 ? true : undefined));
  t.is(reporter.status().writes, 3, 'an unchanged fleet is not written again');
});

test('modelferry fleet reads three gateways from the bucket: one table, failed devices and halted rollouts counted, a stale gateway marked; --json; --write-page', async (t) => {
  const s3 = await S3Store.start(t);
  await publishModel(t, s3);
  const a = await reportingGateway(t, s3, 'site-a', 1);
  const b = await reportingGateway(t, s3, 'site-b', 1);
  const c = await reportingGateway(t, s3, 'site-c', 1);
  // site-b: one device in sync, one failed with a reason; site-c: a local rollout, halted.
  const kws = '1';
  const inSync = await poll(b, 'aa:bb:cc:00:00:01');
  await report(t, b, 'aa:bb:cc:00:00:01', { state: 'installed', sha256: inSync.json.model.sha256, model: 'kws', version: kws });
  await poll(b, 'aa:bb:cc:00:00:02');
  await report(t, b, 'aa:bb:cc:00:00:02', { state: 'failed', model: 'kws', version: kws, error: 'arena too small: <needs 96 KiB>' });
  await pushed(t, c, 'vad', '2', fixture('mul.pte'));
  await assign(t, c, 'default', { model: 'vad', version: '2', rollout: { percent: 10, previous: { model: 'kws', version: '1' } } });
  const halt = await c.fetch('/v1/assignments/default/rollout/halt', { method: 'POST', token: ADMIN_TOKEN });
  t.true(halt.ok, await halt.text());
  // Each writes at its next sync, once its interval (1 s here) has passed since its last write.
  for (const gw of [a, b, c]) await synced(t, gw, 'unchanged');
  await until('the reports of the changed sites', async () => {
    const [siteB, siteC] = await Promise.all([reportOf(s3, b), reportOf(s3, c)]);
    return siteB?.devices.failed === 1 && siteC?.rollouts[0]?.halted ? true : undefined;
  });

  // A fourth gateway that went quiet an hour ago.
  const quiet = { ...(await reportOf(s3, a))!, gateway: 'quiet0000000001', name: 'site-d', reportedAt: new Date(Date.now() - 3_600_000).toISOString(), syncPeriodSeconds: 300 };
  const store = await openStore('s3://models/fleet', { s3: s3.settings(), env: {} });
  await store.writeBytes('gateways/quiet0000000001.json', Buffer.from(JSON.stringify(quiet)), { contentType: 'application/json' });
  store.close();

  const table = await runCli(['fleet', '--store', 's3://models/fleet'], { env: awsEnv(s3) });
  t.is(table.code, 0, table.stderr);
  const lines = table.stdout.split('\n');
  t.regex(lines[0]!, /^gateway\s+last seen\s+in sync\s+failed\s+pending\s+halted rollouts\s+last sync$/);
  t.regex(lines[1]!, /^site-d \(quiet0000000001\)\s+60 min ago STALE\s+0\/0\s+0\s+/, 'stale first');
  t.regex(table.stdout, /site-b \([0-9a-f]{16}\)\s+\d+ s ago\s+1\/2\s+1\s+0\s+-\s+unchanged/);
  t.regex(table.stdout, /site-c \([0-9a-f]{16}\)\s+\d+ s ago\s+0\/0\s+0\s+0\s+default vad@2\s/, 'the halted rollout');
  t.regex(table.stdout, /4 gateways, 1 stale \(no report for 3 sync periods\)/);

  const json = await runCli(['fleet', '--store', 's3://models/fleet', '--json'], { env: awsEnv(s3) });
  t.is(json.code, 0, json.stderr);
  const fleet = JSON.parse(json.stdout) as { sites: Array<{ name: string; stale: boolean; devices: { failed: number; total: number }; failures: Array<{ reason: string }> }> };
  t.deepEqual(fleet.sites.map((s) => s.name).sort(), ['site-a', 'site-b', 'site-c', 'site-d']);
  const siteB = fleet.sites.find((s) => s.name === 'site-b')!;
  t.like(siteB, { stale: false, devices: { failed: 1, total: 2 } });
  t.is(siteB.failures[0]!.reason, 'arena too small: <needs 96 KiB>');

  const page = await runCli(['fleet', '--store', 's3://models/fleet', '--write-page'], { env: awsEnv(s3) });
  t.is(page.code, 0, page.stderr);
  t.regex(page.stdout, /wrote s3:\/\/models\/fleet\/fleet\.html/);
  const html = await (await fetch(`${s3.endpoint}/models/fleet/fleet.html`)).text();
  t.regex(html, /<tr class="site stale" data-gateway="quiet0000000001">/);
  t.true(html.includes('arena too small: &#60;needs 96 KiB&#62;'), 'device text is escaped');
});

test('modelferry fleet at the top of a bucket reads the reports of every site prefix: one table of three gateways under site-a and site-b, each with its prefix, and no listing of the artifacts', async (t) => {
  const s3 = await S3Store.start(t);
  // site-c has a store (an artifact, a manifest) and no gateway that reports.
  for (const site of ['site-a', 'site-b', 'site-c']) await publishModel(t, s3, site);
  const gateways = [
    { prefix: 'site-a', gw: await reportingGateway(t, s3, 'hall-1', 60, 'site-a') },
    { prefix: 'site-a', gw: await reportingGateway(t, s3, 'hall-2', 60, 'site-a') },
    { prefix: 'site-b', gw: await reportingGateway(t, s3, 'yard', 60, 'site-b') },
  ];
  for (const { prefix, gw } of gateways) await until(`the report of a gateway of ${prefix}`, () => reportOf(s3, gw, prefix));
  const listingsBefore = s3.requests.length;

  const table = await runCli(['fleet', '--store', 's3://models'], { env: awsEnv(s3) });
  t.is(table.code, 0, table.stderr);
  const lines = table.stdout.split('\n');
  t.regex(lines[0]!, /^prefix\s+gateway\s+last seen\s+in sync\s+failed\s+pending\s+halted rollouts\s+last sync$/);
  t.regex(lines[1]!, /^site-a\s+hall-1 \([0-9a-f]{16}\)\s+\d+ s ago\s+0\/0\s/, 'by prefix, then name');
  t.regex(lines[2]!, /^site-a\s+hall-2 \([0-9a-f]{16}\)\s/);
  t.regex(lines[3]!, /^site-b\s+yard \([0-9a-f]{16}\)\s/);
  t.is(lines[4], '');
  t.is(lines[5], '3 gateways, 0 stale (no report for 3 sync periods)');

  // The top is listed once with a delimiter (site-a/, site-b/, site-c/), then each prefix's
  // gateways/: never a listing that would name every artifact.
  const listings = s3.requests.slice(listingsBefore).filter((r) => r.url.includes('list-type=2')).map((r) => new URL(r.url, s3.endpoint).searchParams);
  t.deepEqual(listings.filter((q) => q.get('delimiter') === '/').map((q) => q.get('prefix')), ['']);
  t.deepEqual(listings.filter((q) => q.get('delimiter') === null).map((q) => q.get('prefix')).sort(), ['gateways/', 'site-a/gateways/', 'site-b/gateways/', 'site-c/gateways/']);

  const json = await runCli(['fleet', '--store', 's3://models', '--json'], { env: awsEnv(s3) });
  t.is(json.code, 0, json.stderr);
  const fleet = JSON.parse(json.stdout) as { store: string; sites: Array<{ prefix: string; name: string }>; prefixes: unknown };
  t.is(fleet.store, 's3://models');
  t.deepEqual(fleet.sites.map((s) => [s.prefix, s.name]), [['site-a', 'hall-1'], ['site-a', 'hall-2'], ['site-b', 'yard']]);
  t.deepEqual(fleet.prefixes, { read: 3, limit: 10_000, more: false });

  const page = await runCli(['fleet', '--store', 's3://models', '--write-page'], { env: awsEnv(s3) });
  t.is(page.code, 0, page.stderr);
  t.regex(page.stdout, /wrote s3:\/\/models\/fleet\.html/);
  const html = await (await fetch(`${s3.endpoint}/models/fleet.html`)).text();
  t.is([...html.matchAll(/<tr class="site" data-gateway="[0-9a-f]{16}" data-prefix="(site-[ab])"><td class="prefix">site-[ab]<\/td>/g)].map((m) => m[1]).join(' '), 'site-a site-a site-b');
  t.regex(html, /<th>prefix<\/th><th>gateway<\/th>/);

  // A gateway's key (s3:GetObject only) may not list: fleet says which listing, and for whom.
  const denied = await runCli(['fleet', '--store', 's3://models'], { env: { ...awsEnv(s3), AWS_ACCESS_KEY_ID: S3_READER_KEY_ID, AWS_SECRET_ACCESS_KEY: S3_READER_SECRET } });
  t.is(denied.code, 1);
  t.regex(denied.stderr, new RegExp(`denied s3:ListBucket on the listing of s3://models/ to access key id ${S3_READER_KEY_ID} \\(403 AccessDenied\\)`));
});

test('a folder store\'s sub-folders are its prefixes: fleet on the folder shows their reports and its own, and says when it read only the first of too many prefixes', async (t) => {
  const dir = await tempDir(t);
  const write = async (folder: string, gateway: string, name: string) => {
    await mkdir(path.join(dir, folder, 'gateways'), { recursive: true });
    await writeFile(path.join(dir, folder, 'gateways', `${gateway}.json`), JSON.stringify({ ...sample, gateway, name, reportedAt: new Date().toISOString() }));
  };
  await write('.', 'top0000000000001', 'shared');
  await write('plant-1', 'p100000000000001', 'press');
  await write('plant-2', 'p200000000000001', 'paint');
  await write('plant-2', 'p200000000000002', 'weld');
  // Not a site: the store's own artifacts and a dot-folder (a sync tool's temporary).
  await mkdir(path.join(dir, 'artifacts'));
  await write('.partial', 'hidden0000000001', 'hidden');

  const table = await runCli(['fleet', '--store', dir]);
  t.is(table.code, 0, table.stderr);
  const rows = table.stdout.split('\n').slice(1, 5).map((line) => line.split(/\s{2,}/).slice(0, 2).join(' | '));
  t.deepEqual(rows, ['- | shared (top0000000000001)', 'plant-1 | press (p100000000000001)', 'plant-2 | paint (p200000000000001)', 'plant-2 | weld (p200000000000002)']);
  t.regex(table.stdout, /4 gateways, 0 stale/);
  t.notRegex(table.stdout, /hidden|more than/);

  const fleet = await readFleet(new FolderObjects(dir), new Date(), 2);
  t.deepEqual(fleet.prefixes, { read: 2, limit: 2, more: true });
  t.true(fleetTable(fleet).split('\n').includes(`${dir} has more than 2 prefixes: the reports under 2 of them are shown, the others were not read`));
});

const sample: SiteReport = {
  format: 'modelferry-site-report/1',
  gateway: 'gw1',
  name: 'site',
  version: '0.1.0',
  reportedAt: new Date().toISOString(),
  syncPeriodSeconds: 300,
  reportIntervalSeconds: 60,
  lastSync: null,
  lastSuccessAt: null,
  revision: 'r1',
  models: { count: 0, bytes: 0, listed: [] },
  devices: { total: 0, inSync: 0, failed: 0, pending: 0, incompatible: 0, rolledBack: 0, unassigned: 0, pendingAdmission: 0 },
  rollouts: [],
  failures: { count: 0, listed: [] },
};
