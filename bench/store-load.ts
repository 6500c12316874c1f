// What a fleet of gateways costs the central store: N simulated gateways in one process, each
// the real sync (UpstreamSync: its own LevelDB, catalog, blob folder, admission) and the real
// site reporter, against nginx serving a store written by `modelferry publish`, on the default
// jittered schedule (every 5 minutes, up to 30 s late) run TIME_SCALE times faster. Counts the
// store's requests, bytes and 304s from nginx's access log, and the status objects the
// reporters write, then gives them per real day for N gateways, measured, and for 100,000,
// extrapolated (each gateway's load is independent of the others', so it is linear in N).
//
//   node --import tsx bench/store-load.ts          # BENCH_GATEWAYS=1000 BENCH_SIM_HOURS=3
//
// The row in `npm run bench` runs the same (bench/run.ts).

import { mkdir, writeFile } from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { Admission } from '../daemon/admission/admission.ts';
import { Catalog } from '../daemon/catalog/catalog.ts';
import type { StoredObject, StoreObjects } from '../daemon/central-store/store-objects.ts';
import { systemClock } from '../daemon/clock.ts';
import { createLogger } from '../daemon/log.ts';
import { Metrics } from '../daemon/metrics.ts';
import { publish } from '../daemon/publish/publish.ts';
import { TrustPolicy } from '../daemon/signing/trust.ts';
import { siteReport, REPORTED_FAILURES, REPORTED_MODELS, type SiteReport } from '../daemon/site-reports/site-report.ts';
import { SiteReporter } from '../daemon/site-reports/site-reporter.ts';
import { BlobStore } from '../daemon/store/blob-store.ts';
import { Database } from '../daemon/store/database.ts';
import { DiskSpace } from '../daemon/store/disk-space.ts';
import { NO_S3_SETTINGS } from '../daemon/s3/s3-access.ts';
import { UpstreamSync, type UpstreamSettings } from '../daemon/sync/upstream-sync.ts';
import { Teardowns, until } from '../test/helpers/harness.ts';
import { startNginx, type AccessLine } from '../test/helpers/nginx.ts';
import { makeProgram } from '../test/helpers/programs.ts';

/** The default schedule: every 5 minutes (upstream.schedule), up to 30 s late (upstream.maxRandomDelaySeconds). */
const PERIOD_SECONDS = 300;
const JITTER_SECONDS = 30;
/** Simulated seconds per real second: a 5-minute period becomes 5 s. */
const TIME_SCALE = 60;
const DAY = 86_400;

export interface StoreLoadOptions {
  gateways: number;
  /** Simulated hours measured (after every gateway's first sync). */
  hours: number;
  /** Publishes during the measurement, spread evenly (each a new version of one model). */
  publishes: number;
  /** Publishes a day the per-day figures assume (the run's own are compressed with time). */
  publishesPerDay: number;
  modelBytes: number;
  /** Where the store, the gateways' folders and nginx's files go. */
  dir: string;
}

export interface StoreLoad {
  gateways: number;
  simulatedHours: number;
  publishes: number;
  publishesPerDay: number;
  modelBytes: number;
  /** Syncs each gateway ran per period during the measurement: 1.0 when the machine kept up. */
  syncsPerPeriod: number;
  store: { requests: number; bytes: number; notModified: number; byStatus: Record<string, number> };
  reports: { writes: number; bytes: number; largestBytes: number; boundBytes: number };
  /** What one gateway costs the store: a sync that finds nothing new, and the fetches one publish adds. */
  perGateway: { requestsPerSync: number; bytesPer304: number; requestsPerPublish: number; bytesPerPublish: number };
  perDay: { measured: DayFigures; extrapolated100k: DayFigures };
  /** 304s among the run's requests. */
  share304Measured: number;
}

export interface DayFigures {
  requests: number;
  bytes: number;
  requestsPerSecond: number;
  /** Every scheduled sync of a period falls in the jitter window after it starts. */
  peakRequestsPerSecond: number;
  share304: number;
  reportWrites: number;
  reportBytes: number;
}

/** Counts what the site reporters write, keeping nothing: the status objects' load on a store. */
class CountingObjects implements StoreObjects {
  readonly where = 'count://';
  writes = 0;
  bytes = 0;
  largest = 0;
  nameOf(key: string): string {
    return key;
  }
  async read(): Promise<StoredObject | null> {
    return null;
  }
  async has(): Promise<boolean> {
    return false;
  }
  async writeFile(): Promise<void> {
    throw new Error('not used');
  }
  async writeBytes(_key: string, bytes: Buffer): Promise<void> {
    this.writes++;
    this.bytes += bytes.length;
    this.largest = Math.max(this.largest, bytes.length);
  }
  async list(): Promise<string[]> {
    return [];
  }
  async listPrefixes(): Promise<{ names: string[]; more: boolean }> {
    return { names: [], more: false };
  }
  async lock(): Promise<() => Promise<void>> {
    return async () => {};
  }
  close(): void {}
}

export async function measureStoreLoad(options: StoreLoadOptions): Promise<StoreLoad> {
  const teardowns = new Teardowns();
  const log = createLogger('silent');
  const parts: Array<{ stop(): Promise<void> }> = [];
  try {
    const store = path.join(options.dir, 'store');
    await mkdir(store, { recursive: true });
    const file = path.join(options.dir, 'model.pte');
    await writeFile(file, makeProgram(options.modelBytes));
    await publish({ store, file, name: 'kws', version: '1', assign: 'default' });
    const nginx = await startNginx(teardowns, store, { connections: Math.max(1024, options.gateways * 2) });
    const upstream: UpstreamSettings = {
      url: `${nginx.url}/manifest.json`,
      token: null,
      schedule: `*/${PERIOD_SECONDS / TIME_SCALE} * * * * *`,
      maxRandomDelaySeconds: JITTER_SECONDS / TIME_SCALE,
      concurrency: 2,
      connectTimeoutSeconds: 30,
      headersTimeoutSeconds: 30,
      bodyIdleTimeoutSeconds: 30,
      maxManifestBytes: 8 * 1024 * 1024,
      breakerFailures: 5,
      breakerCooldownSeconds: 300,
      syncTimeoutSeconds: 300,
      s3: NO_S3_SETTINGS,
    };
    const counting = new CountingObjects();
    let syncs = 0;
    const syncsAtStart: number[] = [];
    const gateways: UpstreamSync[] = [];
    for (let i = 0; i < options.gateways; i++) {
      const dir = path.join(options.dir, 'gateways', String(i));
      const database = new Database(path.join(dir, 'state'), log);
      const blobs = new BlobStore({ local: path.join(dir, 'state', 'blobs'), cache: path.join(dir, 'cache') }, log);
      const catalog = new Catalog(database, blobs, log);
      const admission = new Admission({ maxBytes: () => 16 * 1024 * 1024, formats: () => ['executorch'], maxModels: () => 2000 }, {
        catalog, blobs, trust: new TrustPolicy({ keys: [], requireSignatures: false }), disk: new DiskSpace({ reserveBytes: () => 0 }), clock: systemClock, log,
      });
      const sync = new UpstreamSync({ upstream: () => upstream, cacheDir: path.join(dir, 'cache') }, { admission, catalog, blobs, database, metrics: new Metrics(), clock: systemClock, log });
      sync.onOutcome(() => { syncs++; });
      const reporter = new SiteReporter({
        enabled: () => true,
        openStore: async () => counting,
        report: () => siteReport({
          gateway: `sim${String(i).padStart(13, '0')}`, name: `site-${i}`, version: '0.1.0', catalog: catalog.current, devices: [], pendingAdmission: 0,
          lastOutcome: sync.status().lastOutcome, lastSuccessAt: sync.status().lastSuccessAt, syncPeriodSeconds: PERIOD_SECONDS, reportIntervalSeconds: 60,
        }, new Date()),
        onSync: (listener) => sync.onOutcome(listener),
        minIntervalMs: 60_000 / TIME_SCALE,
      }, log);
      for (const part of [database, blobs, catalog, reporter, sync]) {
        await part.start();
        parts.unshift(part);
      }
      gateways.push(sync);
    }
    await until('every gateway synced once', async () => (gateways.every((g) => g.status().lastSuccessAt !== null) ? true : undefined), 600_000);

    // The measurement: counters from here on.
    const logBefore = (await nginx.accessLog()).length;
    const syncsBefore = syncs;
    const reportsBefore = { writes: counting.writes, bytes: counting.bytes };
    syncsAtStart.push(syncsBefore);
    const realMs = (options.hours * 3600 * 1000) / TIME_SCALE;
    const startedAt = Date.now();
    for (let p = 1; p <= options.publishes; p++) {
      const at = startedAt + (realMs * p) / (options.publishes + 1);
      await new Promise((resolve) => setTimeout(resolve, Math.max(0, at - Date.now())));
      await writeFile(file, makeProgram(options.modelBytes));
      await publish({ store, file, name: 'kws', version: String(p + 1), assign: 'default' });
    }
    await new Promise((resolve) => setTimeout(resolve, Math.max(0, startedAt + realMs - Date.now())));
    const lines: AccessLine[] = (await nginx.accessLog()).slice(logBefore);
    const elapsedSimSeconds = ((Date.now() - startedAt) / 1000) * TIME_SCALE;
    const measuredSyncs = syncs - syncsBefore;
    const reports = { writes: counting.writes - reportsBefore.writes, bytes: counting.bytes - reportsBefore.bytes };

    const byStatus: Record<string, number> = {};
    for (const line of lines) byStatus[line.status] = (byStatus[line.status] ?? 0) + 1;
    const notModified = lines.filter((line) => line.status === 304);
    const changed = lines.filter((line) => line.status !== 304);
    const sum = (of: AccessLine[]) => of.reduce((total, line) => total + line.bytesSent, 0);
    const perGateway = {
      requestsPerSync: notModified.length / Math.max(1, measuredSyncs),
      bytesPer304: sum(notModified) / Math.max(1, notModified.length),
      requestsPerPublish: changed.length / options.gateways / Math.max(1, options.publishes),
      bytesPerPublish: sum(changed) / options.gateways / Math.max(1, options.publishes),
    };
    const syncsPerDay = DAY / PERIOD_SECONDS;
    const day = (gateways: number): DayFigures => {
      const quiet = gateways * syncsPerDay * perGateway.requestsPerSync;
      const requests = quiet + gateways * options.publishesPerDay * perGateway.requestsPerPublish;
      return {
        requests,
        bytes: quiet * perGateway.bytesPer304 + gateways * options.publishesPerDay * perGateway.bytesPerPublish,
        requestsPerSecond: requests / DAY,
        peakRequestsPerSecond: gateways / JITTER_SECONDS,
        share304: quiet / requests,
        // Per sync, like the store's figures: a loaded machine runs fewer syncs than scheduled.
        reportWrites: (reports.writes / Math.max(1, measuredSyncs)) * gateways * syncsPerDay,
        reportBytes: (reports.bytes / Math.max(1, measuredSyncs)) * gateways * syncsPerDay,
      };
    };
    return {
      gateways: options.gateways,
      simulatedHours: elapsedSimSeconds / 3600,
      publishes: options.publishes,
      publishesPerDay: options.publishesPerDay,
      modelBytes: options.modelBytes,
      syncsPerPeriod: measuredSyncs / options.gateways / (elapsedSimSeconds / PERIOD_SECONDS),
      store: { requests: lines.length, bytes: sum(lines), notModified: notModified.length, byStatus },
      reports: { ...reports, largestBytes: counting.largest, boundBytes: largestPossibleReport() },
      perGateway,
      perDay: { measured: day(options.gateways), extrapolated100k: day(100_000) },
      share304Measured: lines.length === 0 ? 0 : notModified.length / lines.length,
    };
  } finally {
    for (const part of parts) await part.stop().catch(() => undefined);
    await teardowns.run();
  }
}

/** The size of a report at its bounds: 50 models listed, 20 failed devices with 200-character reasons. */
function largestPossibleReport(): number {
  const report: SiteReport = {
    format: 'modelferry-site-report/1', gateway: 'f'.repeat(16), name: 'n'.repeat(63), version: '0.1.0', reportedAt: new Date().toISOString(),
    syncPeriodSeconds: 300, reportIntervalSeconds: 60, lastSync: { at: new Date().toISOString(), result: 'failed', revision: 'r'.repeat(16), error: { code: 'upstream_denied', message: 'm'.repeat(300) } },
    lastSuccessAt: new Date().toISOString(), revision: 'r'.repeat(16),
    models: { count: 2000, bytes: 2000 * 16 * 1024 * 1024, listed: Array.from({ length: REPORTED_MODELS }, (_, i) => ({ name: `model-name-${i}`, version: `2026.11.24-${i}`, size: 16 * 1024 * 1024, layer: 'upstream' })) },
    devices: { total: 50_000, inSync: 49_000, failed: 500, pending: 400, incompatible: 50, rolledBack: 20, unassigned: 30, pendingAdmission: 10 },
    rollouts: Array.from({ length: 5 }, (_, i) => ({ selector: `group:g${i}`, model: 'kws', version: '2026.11.24-3', percent: 10, halted: true, haltedBy: 'failures' })),
    failures: { count: 500, listed: Array.from({ length: REPORTED_FAILURES }, () => ({ mac: 'aa:bb:cc:dd:ee:ff', model: 'kws', version: '2026.11.24-3', reason: 'x'.repeat(200), rolledBack: true, at: new Date().toISOString() })) },
  };
  return Buffer.byteLength(`${JSON.stringify(report)}\n`);
}

export function describe(load: StoreLoad): string {
  const size = (bytes: number) => (bytes >= 1e9 ? `${(bytes / 1e9).toFixed(1)} GB` : `${(bytes / 1e6).toFixed(1)} MB`);
  const line = (who: string, d: DayFigures) => `per day, ${who}: ${Math.round(d.requests).toLocaleString('en')} requests to the store `
    + `(${d.requestsPerSecond.toFixed(d.requestsPerSecond < 10 ? 2 : 0)}/s average, ~${Math.round(d.peakRequestsPerSecond)}/s in the ${JITTER_SECONDS} s jitter window), `
    + `${size(d.bytes)}, ${(d.share304 * 100).toFixed(1)} % 304; status objects ${Math.round(d.reportWrites).toLocaleString('en')} writes, ${size(d.reportBytes)}`;
  const g = load.perGateway;
  return [
    `${load.gateways} gateways, ${load.simulatedHours.toFixed(1)} simulated hours (x${TIME_SCALE}), ${load.publishes} publish(es) of a ${load.modelBytes / 1024} KiB model; `
      + `${load.syncsPerPeriod.toFixed(2)} syncs per gateway per period (below 1: the machine could not keep up; per-day figures are per sync, times ${DAY / PERIOD_SECONDS} syncs a day)`,
    `measured: ${load.store.requests} requests (${JSON.stringify(load.store.byStatus)}), ${load.store.bytes} bytes, ${(load.share304Measured * 100).toFixed(1)} % 304; `
      + `a quiet sync ${g.requestsPerSync.toFixed(2)} request of ${Math.round(g.bytesPer304)} bytes; a publish adds ${g.requestsPerPublish.toFixed(2)} requests and ${Math.round(g.bytesPerPublish)} bytes per gateway`,
    line(`${load.gateways.toLocaleString('en')} gateways (measured, ${load.publishesPerDay} publishes a day)`, load.perDay.measured),
    line('100,000 gateways (extrapolated)', load.perDay.extrapolated100k),
    `a report: ${load.reports.largestBytes} bytes here (no devices), ${load.reports.boundBytes} bytes at its bounds`,
  ].join('\n');
}

/** The row of `npm run bench` (bench/run.ts). */
export async function storeLoadRow(_root: string, _entry: string[], dir: string): Promise<{ name: string; target: string; value: string; met: boolean; raw: Record<string, unknown> }> {
  const gateways = Number(process.env.BENCH_GATEWAYS ?? 1000);
  const load = await measureStoreLoad({ gateways, hours: 3, publishes: 1, publishesPerDay: 4, modelBytes: 64 * 1024, dir: path.join(dir, 'store-load') });
  const m = load.perDay.measured;
  const x = load.perDay.extrapolated100k;
  return {
    name: `store load: ${gateways.toLocaleString('en')} simulated gateways on the default schedule, 4 publishes a day (100,000 extrapolated)`,
    target: '1 request per quiet sync; ≥ 95 % 304',
    value: `${Math.round(m.requests).toLocaleString('en')} requests/day (${m.requestsPerSecond.toFixed(2)}/s), ${(m.bytes / 1e6).toFixed(0)} MB/day, ${(m.share304 * 100).toFixed(1)} % 304; `
      + `100,000: ${x.requestsPerSecond.toFixed(0)}/s (~${Math.round(x.peakRequestsPerSecond)}/s peak), ${(x.bytes / 1e9).toFixed(1)} GB/day; `
      + `status objects ${Math.round(m.reportWrites).toLocaleString('en')} writes/day (100,000: ${(x.reportWrites / 1e6).toFixed(1)} M, ${(x.reportBytes / 1e9).toFixed(1)} GB)`,
    met: load.perGateway.requestsPerSync <= 1.05 && m.share304 >= 0.95,
    raw: load as unknown as Record<string, unknown>,
  };
}

if (process.argv[1] && fileURLToPath(import.meta.url) === path.resolve(process.argv[1])) {
  const dir = await import('node:fs/promises').then((fs) => fs.mkdtemp(path.join(os.tmpdir(), 'modelferry-store-load-')));
  try {
    const load = await measureStoreLoad({
      gateways: Number(process.env.BENCH_GATEWAYS ?? 1000),
      hours: Number(process.env.BENCH_SIM_HOURS ?? 3),
      publishes: Number(process.env.BENCH_PUBLISHES ?? 1),
      publishesPerDay: Number(process.env.BENCH_PUBLISHES_PER_DAY ?? 4),
      modelBytes: Number(process.env.BENCH_MODEL_BYTES ?? 64 * 1024),
      dir,
    });
    console.log(describe(load));
    console.log(JSON.stringify(load, null, 2));
  } finally {
    await import('node:fs/promises').then((fs) => fs.rm(dir, { recursive: true, force: true }));
  }
}
