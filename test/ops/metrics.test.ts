import net from 'node:net';
import test from 'ava';
import { Metrics } from '../../daemon/metrics.ts';
import { poll } from '../helpers/api.ts';
import { startGateway } from '../helpers/gateway.ts';
import { ADMIN_TOKEN } from '../helpers/tokens.ts';
import { FAILED, IN_SYNC, PENDING, scriptedFleet } from './fleet-scenario.ts';

// GET /metrics after a scripted sequence: names by Prometheus conventions, values that
// match what happened, labels that stay bounded.

interface Sample { name: string; labels: Record<string, string>; value: number }

function parse(text: string): { samples: Sample[]; types: Map<string, string> } {
  const samples: Sample[] = [];
  const types = new Map<string, string>();
  for (const line of text.split('\n')) {
    const type = /^# TYPE (\S+) (\S+)$/.exec(line);
    if (type) types.set(type[1]!, type[2]!);
    if (line === '' || line.startsWith('#')) continue;
    const match = /^([a-zA-Z_:][a-zA-Z0-9_:]*)(?:\{(.*)\})? (\S+)$/.exec(line);
    if (!match) throw new Error(`not a sample line: ${line}`);
    const labels: Record<string, string> = {};
    for (const [, key, value] of (match[2] ?? '').matchAll(/(\w+)="((?:[^"\\]|\\.)*)"/g)) labels[key!] = value!;
    samples.push({ name: match[1]!, labels, value: Number(match[3]) });
  }
  return { samples, types };
}

function value(samples: Sample[], name: string, labels: Record<string, string> = {}): number | undefined {
  return samples.find((s) => s.name === name && Object.entries(labels).every(([k, v]) => s.labels[k] === v))?.value;
}

test('after pushes, polls, downloads, reports and a failed sync, /metrics counts each of them', async (t) => {
  // An upstream that refuses connections: every sync fails.
  const closed = await new Promise<number>((resolve) => {
    const server = net.createServer().listen(0, '127.0.0.1', () => {
      const { port } = server.address() as net.AddressInfo;
      server.close(() => resolve(port));
    });
  });
  const gw = await startGateway(t, { 'upstream.url': `http://127.0.0.1:${closed}/manifest.json` });
  // The sync at start, then one asked for.
  for (let i = 0; i < 200 && (await (await gw.fetch('/healthz')).json() as { lastSync: unknown }).lastSync === null; i++) {
    await new Promise((resolve) => setTimeout(resolve, 25));
  }
  const sync = await gw.fetch('/v1/sync', { method: 'POST', token: ADMIN_TOKEN });
  t.true(sync.status >= 500, `a failed sync is an error answer: ${sync.status}`);
  const fleet = await scriptedFleet(t, gw);
  t.is((await gw.fetch('/no/such/page')).status, 404);
  // A long poll held open while scraping.
  const held = await poll(gw, IN_SYNC);
  const controller = new AbortController();
  const waiting = poll(gw, IN_SYNC, { etag: held.etag!, wait: 30, signal: controller.signal }).catch(() => undefined);
  for (let i = 0; i < 100 && !/^modelferry_device_long_polls_held 1$/m.test(await (await gw.fetch('/metrics')).text()); i++) {
    await new Promise((resolve) => setTimeout(resolve, 20));
  }

  const response = await gw.fetch('/metrics');
  t.regex(response.headers.get('content-type') ?? '', /^text\/plain; version=0\.0\.4/);
  const text = await response.text();
  controller.abort();
  await waiting;
  const { samples, types } = parse(text);
  const v = (name: string, labels?: Record<string, string>) => value(samples, name, labels);

  t.is(v('modelferry_device_long_polls_held'), 1);
  t.is(v('modelferry_pushes_total', { outcome: 'created' }), 2);
  t.is(v('modelferry_pushes_total', { outcome: 'unchanged' }), 1);
  t.is(v('modelferry_pushes_total', { outcome: 'version_conflict' }), 1);
  // 4 polls answered 200 (IN_SYNC twice, FAILED, PENDING), one 304.
  t.is(v('modelferry_device_polls_total', { status: '200' }), 4);
  t.is(v('modelferry_device_polls_total', { status: '304' }), 1);
  t.is(v('modelferry_device_reports_total', { state: 'installed' }), 1);
  t.is(v('modelferry_device_reports_total', { state: 'failed' }), 1);
  t.is(v('modelferry_artifact_responses_total', { status: '200' }), 1);
  t.is(v('modelferry_artifact_responses_total', { status: '206' }), 1);
  t.is(v('modelferry_artifact_sent_bytes_total'), fleet.downloadedBytes);

  // Requests by route pattern: the poll fast path and the Koa route count as one route.
  t.is(v('modelferry_http_requests_total', { route: '/v1/devices/:mac/model', method: 'GET', status: '200' }), 4);
  t.is(v('modelferry_http_requests_total', { route: '/v1/devices/:mac/model', method: 'GET', status: '304' }), 1);
  t.is(v('modelferry_http_requests_total', { route: '/v1/models/:name/:version', method: 'PUT', status: '201' }), 2);
  t.is(v('modelferry_http_requests_total', { route: '/v1/models/:name/:version', method: 'PUT', status: '409' }), 1);
  t.is(v('modelferry_http_requests_total', { route: '/v1/devices/:mac/report', method: 'POST', status: '204' }), 2);
  t.is(v('modelferry_http_requests_total', { route: 'unmatched', method: 'GET', status: '404' }), 1);

  t.is(v('modelferry_devices_known'), 3);
  t.is(v('modelferry_devices_seen_last_hour'), 3);
  t.is(v('modelferry_devices_in_sync'), 1);
  t.is(v('modelferry_devices_out_of_sync'), 2);
  t.is(v('modelferry_devices_failed'), 1);
  t.is(v('modelferry_models'), 2);
  t.is(v('modelferry_cache_blobs'), 2);
  t.is(v('modelferry_cache_bytes'), fleet.v1.size + fleet.v2.size);
  for (const dir of ['state', 'cache']) {
    t.true(v('modelferry_filesystem_free_bytes', { dir })! > 0);
    t.true(v('modelferry_filesystem_size_bytes', { dir })! >= v('modelferry_filesystem_free_bytes', { dir })!);
  }
  t.is(v('modelferry_upstream_configured'), 1);
  t.is(v('modelferry_sync_runs_total', { result: 'failed' }), 2);
  t.is(v('modelferry_sync_runs_total', { result: 'updated' }), 0);
  t.is(v('modelferry_sync_last_success_timestamp_seconds'), 0, 'never synced: what the SyncFailing alert reads');
  t.is(v('modelferry_upstream_circuit_state', { state: 'closed' }), 1, 'two failures do not open the breaker yet');
  t.is(v('modelferry_http_requests_total', { route: '/v1/sync', method: 'POST', status: String(sync.status) }), 1);
  t.true(v('modelferry_process_resident_memory_bytes')! > 0);
  t.true(v('modelferry_nodejs_heap_size_used_bytes')! > 0);

  // Conventions: one prefix, snake case, counters end in _total, no unbounded labels.
  for (const [name, type] of types) {
    t.regex(name, /^modelferry_[a-z0-9_]+$/);
    if (type === 'counter') t.regex(name, /_total$/, name);
  }
  for (const sample of samples) {
    for (const label of Object.values(sample.labels)) {
      t.false([IN_SYNC, FAILED, PENDING, 'kws', '1.0', '2.0', fleet.v2.sha256].includes(label), `${sample.name} has label value ${label}`);
    }
  }
  t.false(text.includes(ADMIN_TOKEN));
});

test('the sync part feeds runs, the last success time and the circuit state', async (t) => {
  const metrics = new Metrics();
  metrics.syncRan('failed', new Date(1_000_000));
  metrics.syncRan('updated', new Date(2_000_000));
  metrics.syncRan('failed', new Date(3_000_000));
  metrics.circuitIs('open');
  const { samples } = parse(await metrics.text());
  t.is(value(samples, 'modelferry_sync_runs_total', { result: 'failed' }), 2);
  t.is(value(samples, 'modelferry_sync_runs_total', { result: 'updated' }), 1);
  t.is(value(samples, 'modelferry_sync_runs_total', { result: 'unchanged' }), 0);
  t.is(value(samples, 'modelferry_sync_last_success_timestamp_seconds'), 2000);
  t.is(value(samples, 'modelferry_upstream_circuit_state', { state: 'open' }), 1);
  t.is(value(samples, 'modelferry_upstream_circuit_state', { state: 'closed' }), 0);
  t.is(value(samples, 'modelferry_upstream_circuit_state', { state: 'half_open' }), 0);
});
