import { Counter, Gauge, Registry, collectDefaultMetrics } from 'prom-client';

/** The gateway's Prometheus metrics, in a registry of its own (several gateways may share a process in tests). */
export class Metrics {
  readonly registry = new Registry();
  readonly polls = new Counter({
    name: 'modelferry_device_polls_total',
    help: 'Device model polls, by answer (200, 304, 404)',
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
    help: 'Artifact responses, by status (200, 206, 304, 404, 416)',
    labelNames: ['status'] as const,
    registers: [this.registry],
  });
  readonly artifactBytes = new Counter({
    name: 'modelferry_artifact_bytes_sent_total',
    help: 'Artifact bytes sent to devices (as announced by Content-Length)',
    registers: [this.registry],
  });
  readonly pushes = new Counter({
    name: 'modelferry_pushes_total',
    help: 'Model pushes, by outcome (created, unchanged, or an error code)',
    labelNames: ['outcome'] as const,
    registers: [this.registry],
  });
  readonly longPolls = new Gauge({
    name: 'modelferry_long_polls_waiting',
    help: 'Device polls held open waiting for a change (read at scrape time)',
    registers: [this.registry],
  });
  readonly devices = new Gauge({ name: 'modelferry_devices', help: 'Devices known to this gateway', registers: [this.registry] });
  readonly models = new Gauge({ name: 'modelferry_models', help: 'Models in the effective catalog', registers: [this.registry] });
  readonly cacheBytes = new Gauge({ name: 'modelferry_cache_bytes', help: 'Bytes of blobs in the cache', registers: [this.registry] });

  readonly syncRuns = new Counter({
    name: 'modelferry_sync_runs_total',
    help: 'Upstream sync runs, by result (updated, unchanged, failed, skipped)',
    labelNames: ['result'] as const,
    registers: [this.registry],
  });
  readonly syncBytes = new Counter({
    name: 'modelferry_sync_bytes_fetched_total',
    help: 'Body bytes received from the upstream store (manifests and artifacts)',
    registers: [this.registry],
  });
  readonly syncLastSuccess = new Gauge({
    name: 'modelferry_sync_last_success_timestamp_seconds',
    help: 'When the last upstream sync succeeded (Unix time); 0 when none has this run',
    registers: [this.registry],
  });
  readonly syncBreakerOpen = new Gauge({
    name: 'modelferry_sync_breaker_open',
    help: '1 while the circuit breaker stops scheduled syncs of a failing upstream, else 0',
    registers: [this.registry],
  });
  readonly syncFailures = new Gauge({
    name: 'modelferry_sync_consecutive_failures',
    help: 'Upstream syncs failed in a row (read at scrape time)',
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
    collectDefaultMetrics({ register: this.registry, prefix: 'modelferry_' });
  }
}
