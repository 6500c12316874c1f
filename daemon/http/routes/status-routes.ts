import os from 'node:os';
import type Router from '@koa/router';
import { VERSION } from '../../version.ts';
import type { DiscoveryStatus } from '../../discovery/advertiser.ts';
import type { SyncStatus } from '../../sync/upstream-sync.ts';
import type { Services } from '../services.ts';
import { STATUS_PAGE_CSP, parseStatusQuery, renderLive, renderPending, renderStatusPage, type StatusUpstream } from '../status-page.ts';

/** GET /: the status page for people (read-only, no token, no secret on it). */
export function statusRoutes(router: Router, services: Services): void {
  const { catalog, devices, deviceAdmission, sync, gatewayId, startedAt, discovery } = services;

  router.get('/', (ctx) => {
    const query = parseStatusQuery(ctx.query);
    const live = renderPending(deviceAdmission.records('pending')) + renderLive(catalog.current, devices.records(), upstreamOf(sync.status()), query);
    ctx.set('Cache-Control', 'no-store');
    ctx.set('Content-Security-Policy', STATUS_PAGE_CSP);
    ctx.set('X-Content-Type-Options', 'nosniff');
    ctx.set('Referrer-Policy', 'no-referrer');
    ctx.type = 'html';
    if (ctx.query.fragment === '1') {
      ctx.body = live;
      return;
    }
    const hostname = os.hostname();
    ctx.body = renderStatusPage({
      gatewayId,
      hostname,
      version: VERSION,
      startedAt,
      listening: `${ctx.socket.localAddress ?? '?'}:${ctx.socket.localPort ?? '?'}`,
      advertised: advertisedText(discovery()),
    }, live, query);
  });
}

/** What devices on the LAN see of this gateway (docs/design.md "LAN discovery"), in one line. */
function advertisedText(mdns: DiscoveryStatus): string {
  if (!mdns.enabled) return 'not advertised (mdns.enabled is false): devices need the gateway URL';
  if (mdns.state === 'failed') return `not advertised: mDNS failed (${mdns.error ?? 'unknown error'}); devices need the gateway URL`;
  const renamed = mdns.renames > 0 ? `, renamed because “${mdns.configuredName}” was taken on the LAN` : '';
  return `${mdns.state === 'announced' ? '' : `${mdns.state}: `}“${mdns.name}” (${mdns.service}, priority ${mdns.txt.prio}${renamed})`
    + ` at ${mdns.host}:${mdns.port}, addresses ${mdns.addresses.join(', ') || 'none'}, rev ${mdns.txt.rev}`;
}

/** The upstream as a person may see it: no credentials, no query (tokens hide there). */
function upstreamOf(status: SyncStatus): StatusUpstream {
  if (!status.configured || !status.url) return { url: null, state: 'none', lastSync: null, lastError: null };
  let shown: string;
  try {
    const parsed = new URL(status.url);
    shown = `${parsed.protocol}//${parsed.host}${parsed.pathname}`;
  } catch {
    shown = '(not a valid URL)';
  }
  const state = status.state === 'open'
    ? `failing, retries paused until ${status.breaker.openUntil ?? '?'}`
    : status.running ? `${status.state}, syncing now` : status.state;
  return {
    url: shown,
    state,
    lastSync: status.lastSuccessAt,
    lastError: status.lastError ? `${status.lastError.at}: ${status.lastError.code}: ${status.lastError.message}` : null,
  };
}
