import type Router from '@koa/router';
import type { Services } from '../services.ts';

/** Routes outside /v1 for monitoring: /healthz and /metrics (the status page is status-routes.ts). */
export function healthRoutes(router: Router, services: Services): void {
  const { catalog, blobs, deltas, devices, metrics, answers, sync, gatewayId, startedAt, discovery, tls } = services;

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
    deltas: deltas.status(),
    mdns: discovery(),
    tls: tls(),
  });

  const upstreamHealth = () => {
    const { configured, url, state, breaker, lastSuccessAt, lastError, revision, bytesFetched } = sync.status();
    return { configured, url, state, breaker, lastSuccessAt, lastError, revision, bytesFetched, report: services.siteReport() };
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
    ctx.type = metrics.contentType();
    ctx.set('Cache-Control', 'no-store');
    ctx.body = await metrics.text();
  });
}
