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
  readonly longPollsRefused = new Counter({
    name: 'modelferry_long_polls_refused_total',
    help: 'Long polls answered at once because devices.maxLongPolls or maxLongPollsPerAddress was reached',
    registers: [this.registry],
  });
  /** Set by the gateway once its HTTP server exists. */
  openConnections: () => number = () => 0;
  readonly connections: Gauge = new Gauge({
    name: 'modelferry_http_connections_open',
    help: 'Client connections open (read at scrape time); capped by http.maxConnections',
    registers: [this.registry],
    collect: (): void => this.connections.set(this.openConnections()),
  });
  readonly devices = new Gauge({ name: 'modelferry_devices', help: 'Devices known to this gateway', registers: [this.registry] });
  readonly models = new Gauge({ name: 'modelferry_models', help: 'Models in the effective catalog', registers: [this.registry] });
  readonly cacheBytes = new Gauge({ name: 'modelferry_cache_bytes', help: 'Bytes of blobs in the cache', registers: [this.registry] });

  constructor() {
    collectDefaultMetrics({ register: this.registry, prefix: 'modelferry_' });
  }
}
