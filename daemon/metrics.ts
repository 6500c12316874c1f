import { statfs } from 'node:fs/promises';
import { Counter, Gauge, Registry, collectDefaultMetrics } from 'prom-client';

/** Outcomes of one upstream sync run (the sync part counts them). */
export const SYNC_RESULTS = ['updated', 'unchanged', 'failed', 'skipped'] as const;
export type SyncResult = (typeof SYNC_RESULTS)[number];
/** States of the upstream circuit breaker. */
export const CIRCUIT_STATES = ['closed', 'open', 'half_open'] as const;
export type CircuitState = (typeof CIRCUIT_STATES)[number];

const METHODS = new Set(['GET', 'HEAD', 'PUT', 'POST', 'DELETE', 'OPTIONS', 'PATCH']);

/** What the scrape-time gauges read: the gateway's parts, once started. */
export interface MetricSources {
  /** Fleet counts computed from the device registry and the catalog. */
  fleet(): { known: number; seenLastHour: number; inSync: number; outOfSync: number; failed: number };
  models(): number;
  cache(): { bytes: number; blobs: number };
  /** The deltas kept on disk (cache.deltaBytes bounds their bytes). */
  deltas(): { bytes: number; count: number };
  longPolls(): number;
  /** Folders whose file system is watched for free space, by label. */
  dirs: Record<'state' | 'cache', string>;
  upstreamConfigured(): boolean;
  /** When the last successful sync ended (kept across restarts by the sync part). */
  lastSyncSuccess(): string | null;
  /** Client connections open (the HTTP server's connection caps count the same). */
  connections(): number;
}

/**
 * The gateway's Prometheus metrics, in a registry of their own (several gateways may share
 * a process in tests). Names follow Prometheus conventions: `modelferry_` prefix, base
 * units (bytes, seconds), `_total` for counters. Labels take only bounded values: a route
 * pattern, a method, a status code, an outcome; never a MAC, a model name or a version.
 * Counters are fed by the parts that do the work; gauges are read at scrape time.
 */
export class Metrics {
  readonly registry = new Registry();
  #sources: MetricSources | undefined;

  readonly httpRequests = new Counter({
    name: 'modelferry_http_requests_total',
    help: 'HTTP requests answered, by route pattern (or "unmatched"), method and status',
    labelNames: ['route', 'method', 'status'] as const,
    registers: [this.registry],
  });
  readonly polls = new Counter({
    name: 'modelferry_device_polls_total',
    help: 'Device model polls, by answer (200 a model, 304 unchanged, 404 no assignment)',
    labelNames: ['status'] as const,
    registers: [this.registry],
  });
  readonly reports = new Counter({
    name: 'modelferry_device_reports_total',
    help: 'Device state reports, by reported state',
    labelNames: ['state'] as const,
    registers: [this.registry],
  });
  readonly artifactResponses = new Counter({
    name: 'modelferry_artifact_responses_total',
    help: 'Artifact (model download) responses, by status (200, 206, 304, 404, 416)',
    labelNames: ['status'] as const,
    registers: [this.registry],
  });
  readonly artifactBytes = new Counter({
    name: 'modelferry_artifact_sent_bytes_total',
    help: 'Artifact bytes sent to devices (as announced by Content-Length)',
    registers: [this.registry],
  });
  readonly deltaResponses = new Counter({
    name: 'modelferry_delta_responses_total',
    help: 'Delta (GET /v1/deltas) responses, by status (200, 206, 304, 404, 416)',
    labelNames: ['status'] as const,
    registers: [this.registry],
  });
  readonly deltaBytes = new Counter({
    name: 'modelferry_delta_sent_bytes_total',
    help: 'Delta bytes sent to devices (as announced by Content-Length)',
    registers: [this.registry],
  });
  readonly deltasMade = new Counter({
    name: 'modelferry_deltas_made_total',
    help: 'Deltas computed, by outcome (offered; too_large: not smaller than deltas.maxShare of the full size, or than cache.deltaBytes; failed)',
    labelNames: ['outcome'] as const,
    registers: [this.registry],
  });
  readonly deviceAuthRefusals = new Counter({
    name: 'modelferry_device_auth_refusals_total',
    help: 'Device authentications refused, by reason (challenge: unknown, reused or expired; signature; key_mismatch: another key than the one known for the MAC; rejected)',
    labelNames: ['reason'] as const,
    registers: [this.registry],
  });
  readonly rollbacks = new Counter({
    name: 'modelferry_device_rollbacks_total',
    help: 'Devices that installed a model, could not confirm it (rejected by the application, a crash loop, a timeout) and went back to their previous one, by the model rolled back from',
    labelNames: ['model'] as const,
    registers: [this.registry],
  });
  readonly rolloutHalts = new Counter({
    name: 'modelferry_rollout_halts_total',
    help: 'Staged rollouts halted, by selector and by whom (failures: the haltOnFailures threshold; operator: by hand)',
    labelNames: ['selector', 'by'] as const,
    registers: [this.registry],
  });
  readonly pushes = new Counter({
    name: 'modelferry_pushes_total',
    help: 'Model pushes, by outcome (created, unchanged, or the error code)',
    labelNames: ['outcome'] as const,
    registers: [this.registry],
  });
  readonly syncRuns = new Counter({
    name: 'modelferry_sync_runs_total',
    help: 'Upstream sync runs, by result (updated, unchanged, failed, skipped: the circuit breaker was open)',
    labelNames: ['result'] as const,
    registers: [this.registry],
  });
  readonly syncLastSuccess = new Gauge({
    name: 'modelferry_sync_last_success_timestamp_seconds',
    help: 'When the last successful upstream sync ended (Unix time; 0: never)',
    registers: [this.registry],
    // From the sync part's record, which outlives a restart: a gateway that just restarted
    // must not look as if it never synced.
    collect: () => {
      const at = this.#sources?.lastSyncSuccess();
      if (at) this.syncLastSuccess.set(Date.parse(at) / 1000);
    },
  });
  readonly upstreamCircuit = new Gauge({
    name: 'modelferry_upstream_circuit_state',
    help: 'Upstream circuit breaker: 1 for the current state (closed, open, half_open), 0 for the others',
    labelNames: ['state'] as const,
    registers: [this.registry],
  });
  readonly longPollsRefused = new Counter({
    name: 'modelferry_device_long_polls_refused_total',
    help: 'Long polls answered at once because devices.maxLongPolls or maxLongPollsPerAddress was reached',
    registers: [this.registry],
  });

  readonly syncBytes = new Counter({
    name: 'modelferry_sync_bytes_fetched_total',
    help: 'Body bytes received from the upstream store (manifests and artifacts)',
    registers: [this.registry],
  });
  readonly gcDeleted = new Counter({
    name: 'modelferry_gc_deleted_blobs_total',
    help: 'Blobs deleted by garbage collection',
    registers: [this.registry],
  });
  readonly gcDeletedBytes = new Counter({
    name: 'modelferry_gc_deleted_bytes_total',
    help: 'Bytes freed by garbage collection',
    registers: [this.registry],
  });

  constructor() {
    const sources = () => this.#sources;
    const gauge = (name: string, help: string, read: (s: MetricSources) => number) => new Gauge({
      name, help, registers: [this.registry],
      collect() {
        const s = sources();
        if (s) this.set(read(s));
      },
    });
    // Fleet counts walk every device; one walk serves all the fleet gauges of a scrape.
    let fleet: { at: number; counts: ReturnType<MetricSources['fleet']> } | undefined;
    const fleetOf = (s: MetricSources) => {
      if (!fleet || Date.now() - fleet.at > 1000) fleet = { at: Date.now(), counts: s.fleet() };
      return fleet.counts;
    };
    gauge('modelferry_devices_known', 'Devices this gateway has heard from', (s) => fleetOf(s).known);
    gauge('modelferry_devices_seen_last_hour', 'Devices that polled or reported in the last hour', (s) => fleetOf(s).seenLastHour);
    gauge('modelferry_devices_in_sync', 'Devices reporting that they run the model they are assigned', (s) => fleetOf(s).inSync);
    gauge('modelferry_devices_out_of_sync', 'Devices with an assignment that do not report running it (failed ones included)', (s) => fleetOf(s).outOfSync);
    gauge('modelferry_devices_failed', 'Out-of-sync devices whose last report is "failed"', (s) => fleetOf(s).failed);
    gauge('modelferry_device_long_polls_held', 'Device polls held open waiting for a change', (s) => s.longPolls());
    gauge('modelferry_http_connections_open', 'Client connections open; capped by http.maxConnections', (s) => s.connections());
    gauge('modelferry_models', 'Models in the effective catalog', (s) => s.models());
    gauge('modelferry_cache_bytes', 'Bytes of blobs in the cache', (s) => s.cache().bytes);
    gauge('modelferry_cache_blobs', 'Blobs in the cache', (s) => s.cache().blobs);
    gauge('modelferry_delta_cache_bytes', 'Bytes of deltas kept on disk (bounded by cache.deltaBytes)', (s) => s.deltas().bytes);
    gauge('modelferry_delta_cache_deltas', 'Deltas kept on disk', (s) => s.deltas().count);
    gauge('modelferry_upstream_configured', '1 when an upstream store is configured', (s) => Number(s.upstreamConfigured()));
    for (const [name, help, field] of [
      ['modelferry_filesystem_free_bytes', 'Bytes available to the gateway on the file system of its state and cache folders', 'free'],
      ['modelferry_filesystem_size_bytes', 'Size of the file system of the state and cache folders', 'size'],
    ] as const) {
      new Gauge({
        name, help, labelNames: ['dir'] as const, registers: [this.registry],
        async collect() {
          const s = sources();
          if (!s) return;
          for (const [dir, where] of Object.entries(s.dirs)) {
            const space = await diskSpace(where).catch(() => undefined);
            if (space) this.set({ dir }, space[field]);
          }
        },
      });
    }
    for (const result of SYNC_RESULTS) this.syncRuns.inc({ result }, 0);
    this.syncLastSuccess.set(0);
    for (const state of CIRCUIT_STATES) this.upstreamCircuit.set({ state }, 0);
    collectDefaultMetrics({ register: this.registry, prefix: 'modelferry_' });
  }

  /** Where the scrape-time gauges read from; set once the parts are started. */
  observe(sources: MetricSources): void {
    this.#sources = sources;
  }

  /** For the sync part: one run ended with `result`. */
  syncRan(result: SyncResult, at = new Date()): void {
    this.syncRuns.inc({ result });
    if (result === 'updated' || result === 'unchanged') this.syncLastSuccess.set(at.getTime() / 1000);
  }

  /** For the sync part: the circuit breaker moved to `state`. */
  circuitIs(state: CircuitState): void {
    for (const other of CIRCUIT_STATES) this.upstreamCircuit.set({ state: other }, other === state ? 1 : 0);
  }

  readonly #requestCounters = new Map<string, { inc(): void }>();

  /**
   * One answered HTTP request; `route` is the pattern that matched, never the raw path.
   * Every answer is counted here, by the fast paths and by Koa alike; the counter for each
   * (route, method, status) is looked up once, since the fast paths call this per poll.
   */
  request(route: string | undefined, method: string, status: number): void {
    const key = `${route} ${method} ${status}`;
    let counter = this.#requestCounters.get(key);
    if (!counter) {
      counter = this.httpRequests.labels(route ?? 'unmatched', METHODS.has(method) ? method : 'other', String(status));
      // Bounded: routes and statuses are few, and an unknown method is counted as "other".
      if (METHODS.has(method)) this.#requestCounters.set(key, counter);
    }
    counter.inc();
  }

  contentType(): string {
    return this.registry.contentType;
  }

  text(): Promise<string> {
    return this.registry.metrics();
  }
}

/** Free (for an unprivileged user) and total bytes of the file system holding `dir`. */
export async function diskSpace(dir: string): Promise<{ free: number; size: number }> {
  const stats = await statfs(dir);
  return { free: stats.bavail * stats.bsize, size: stats.blocks * stats.bsize };
}
