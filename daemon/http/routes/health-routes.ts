import type Router from '@koa/router';
import type { DiscoveryStatus } from '../../discovery/advertiser.ts';
import type { Services } from '../services.ts';

/** Routes outside /v1 for people and monitoring: /healthz, /metrics and a status page. */
export function healthRoutes(router: Router, services: Services): void {
  const { catalog, blobs, devices, metrics, answers, gatewayId, startedAt, discovery } = services;

  const health = () => ({
    status: 'ok' as const,
    gateway: gatewayId,
    uptimeSeconds: Math.round((Date.now() - startedAt.getTime()) / 1000),
    revision: catalog.current.revision,
    models: catalog.current.models.size,
    devices: devices.size,
    longPolls: answers.waiting,
    upstream: { configured: false, state: 'none' as const },
    lastSync: null,
    cache: { blobs: blobs.count, bytes: blobs.totalBytes },
    mdns: discovery(),
  });

  router.get('/healthz', (ctx) => {
    ctx.set('Cache-Control', 'no-store');
    ctx.body = health();
  });

  router.get('/metrics', async (ctx) => {
    metrics.devices.set(devices.size);
    metrics.models.set(catalog.current.models.size);
    metrics.cacheBytes.set(blobs.totalBytes);
    metrics.longPolls.set(answers.waiting);
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
${discoveryBlock(h.mdns)}
<h2>Assignments</h2><table><tr><th>selector</th><th>assigned</th><th>resolves to</th></tr>${rows}</table>
<p><a href="/healthz">/healthz</a> · <a href="/metrics">/metrics</a></p></body></html>`;
  });

}

/** What devices on the LAN are told about this gateway (DESIGN.md section 6). */
function discoveryBlock(mdns: DiscoveryStatus): string {
  if (!mdns.enabled) return '<h2>Discovery</h2><p>mDNS advertisement is off (<code>mdns.enabled</code>): devices need the gateway URL configured.</p>';
  const txt = Object.entries(mdns.txt).map(([key, value]) => `${escape(key)}=${escape(value)}`).join(' ');
  const state = mdns.state === 'announced' ? 'advertised' : mdns.state;
  return `<h2>Discovery</h2><p>${escape(state)} as <code>${escape(mdns.name)}</code> (${escape(mdns.service)}) on ${escape(mdns.host)}:${mdns.port}, addresses ${escape(mdns.addresses.join(', ') || 'none')}.
${mdns.renames > 0 ? `Renamed ${mdns.renames} time(s) because the name <code>${escape(mdns.configuredName)}</code> was taken on the LAN.` : ''}
${mdns.error ? `Error: ${escape(mdns.error)}.` : ''} TXT: <code>${txt}</code></p>`;
}

function escape(text: string): string {
  return text.replace(/[&<>"']/g, (c) => `&#${c.charCodeAt(0)};`);
}
