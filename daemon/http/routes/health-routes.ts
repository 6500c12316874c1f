import type Router from '@koa/router';
import type { Services } from '../services.ts';

/** Routes outside /v1 for people and monitoring: /healthz, /metrics and a status page. */
export function healthRoutes(router: Router, services: Services): void {
  const { catalog, blobs, devices, metrics, answers, sync, gatewayId, startedAt } = services;

  const health = () => ({
    status: 'ok' as const,
    gateway: gatewayId,
    uptimeSeconds: Math.round((Date.now() - startedAt.getTime()) / 1000),
    revision: catalog.current.revision,
    models: catalog.current.models.size,
    devices: devices.size,
    longPolls: answers.waiting,
    upstream: upstreamHealth(),
    lastSync: sync.status().lastOutcome,
    cache: { blobs: blobs.count, bytes: blobs.totalBytes, ...blobBytes() },
  });

  const upstreamHealth = () => {
    const { configured, url, state, breaker, lastSuccessAt, lastError, revision, bytesFetched } = sync.status();
    return { configured, url, state, breaker, lastSuccessAt, lastError, revision, bytesFetched };
  };

  const blobBytes = () => {
    const { local, cache } = blobs.bytesByTier();
    return { localBytes: local, cacheBytes: cache };
  };

  router.get('/healthz', (ctx) => {
    ctx.set('Cache-Control', 'no-store');
    ctx.body = health();
  });

  router.get('/metrics', async (ctx) => {
    metrics.devices.set(devices.size);
    metrics.models.set(catalog.current.models.size);
    metrics.cacheBytes.set(blobs.totalBytes);
    metrics.longPolls.set(answers.waiting);
    const status = sync.status();
    metrics.syncBreakerOpen.set(status.breaker.state === 'open' ? 1 : 0);
    metrics.syncFailures.set(status.breaker.failures);
    ctx.type = metrics.registry.contentType;
    ctx.body = await metrics.registry.metrics();
  });

  router.get('/', (ctx) => {
    const h = health();
    const rows = [...catalog.current.assignments.values()].map((a) => {
      const model = catalog.current.resolveRef(a);
      const rollout = a.rollout ? ` (rollout ${a.rollout.percent}%, others on ${a.rollout.previous.model}@${a.rollout.previous.version})` : '';
      return `<tr><td>${escape(a.selector)}</td><td>${escape(a.model)}@${escape(a.version)}${escape(rollout)}</td><td>${escape(model?.version ?? 'missing')}</td></tr>`;
    }).join('');
    ctx.type = 'html';
    ctx.set('Cache-Control', 'no-store');
    ctx.body = `<!doctype html><html><head><meta charset="utf-8"><title>modelferry gateway</title>
<style>body{font:15px system-ui,sans-serif;margin:2em;max-width:60em}td,th{padding:.2em 1em;text-align:left}</style></head>
<body><h1>modelferry gateway</h1>
<p>Gateway <code>${escape(h.gateway)}</code>, up ${h.uptimeSeconds} s, catalog revision <code>${escape(h.revision)}</code>.</p>
<p>${h.models} models, ${h.devices} devices, ${h.cache.blobs} cached artifacts (${h.cache.bytes} bytes), ${h.longPolls} devices waiting for a change.</p>
<h2>Assignments</h2><table><tr><th>selector</th><th>assigned</th><th>resolves to</th></tr>${rows}</table>
<p><a href="/healthz">/healthz</a> · <a href="/metrics">/metrics</a></p></body></html>`;
  });

}

function escape(text: string): string {
  return text.replace(/[&<>"']/g, (c) => `&#${c.charCodeAt(0)};`);
}
