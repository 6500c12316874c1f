import { createHash } from 'node:crypto';
import type { EffectiveCatalog, EffectiveModel } from '../catalog/effective-catalog.ts';
import type { DeviceRecord } from '../devices/device-registry.ts';
import type { ProgramSummary } from '../program/program-summary.ts';

// The status page a site technician opens on a phone (GET /): server-rendered HTML, no
// external assets, every value escaped. The live part (summary, models, devices) is also
// served alone (`?fragment=1`) so a small inline script can refresh it in place.

export const PAGE_SIZE = 50;
/** Model versions shown per page: a catalog of thousands must not make a page of megabytes. */
export const MODELS_PAGE_SIZE = 50;
const ERROR_CHARS = 300;
const HOUR_MS = 3_600_000;

export type DeviceStanding = 'failed' | 'out-of-sync' | 'unassigned' | 'in-sync';
const STANDING_ORDER: Record<DeviceStanding, number> = { failed: 0, 'out-of-sync': 1, unassigned: 2, 'in-sync': 3 };
const STANDING_TEXT: Record<DeviceStanding, string> = {
  failed: 'failed', 'out-of-sync': 'out of sync', unassigned: 'no assignment', 'in-sync': 'in sync',
};

export interface StatusIdentity {
  gatewayId: string;
  hostname: string;
  version: string;
  startedAt: Date;
  listening: string;
  /** Where devices find it: an mDNS name, or why there is none. */
  advertised: string;
}

export interface StatusUpstream {
  /** Shown without credentials or query. */
  url: string | null;
  state: string;
  /** When the last successful sync ended. */
  lastSync: string | null;
  /** The last failure, as a sentence (shown escaped). */
  lastError: string | null;
}

export interface StatusQuery {
  /** Part of a MAC, any separators or case. */
  q: string;
  problemsOnly: boolean;
  page: number;
  /** The page of the model list. */
  modelsPage: number;
}

interface DeviceRow {
  device: DeviceRecord;
  standing: DeviceStanding;
  assigned: { model: string; version: string; held: boolean } | null;
}

export function parseStatusQuery(query: Record<string, string | string[] | undefined>): StatusQuery {
  const one = (key: string) => {
    const value = query[key];
    return (Array.isArray(value) ? value[0] : value) ?? '';
  };
  const pageOf = (key: string) => {
    const page = Number.parseInt(one(key), 10);
    return Number.isSafeInteger(page) && page > 0 ? page : 1;
  };
  return {
    q: one('q').slice(0, 64),
    problemsOnly: one('show') === 'problems',
    page: pageOf('page'),
    modelsPage: pageOf('models'),
  };
}

/** The whole page: identity (static) around the live part. */
export function renderStatusPage(identity: StatusIdentity, live: string, query: StatusQuery): string {
  return `<!doctype html>
<html lang="en"><head><meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<title>modelferry · ${escapeHtml(identity.hostname)}</title>
<style>${STYLE}</style></head>
<body>
<header>
<h1>modelferry <span class="muted">on</span> ${escapeHtml(identity.hostname)}</h1>
<dl class="identity">
<dt>gateway id</dt><dd><code>${escapeHtml(identity.gatewayId)}</code></dd>
<dt>version</dt><dd>${escapeHtml(identity.version)}</dd>
<dt>listening</dt><dd><code>${escapeHtml(identity.listening)}</code></dd>
<dt>advertised</dt><dd>${escapeHtml(identity.advertised)}</dd>
<dt>up since</dt><dd><time datetime="${escapeHtml(identity.startedAt.toISOString())}">${escapeHtml(identity.startedAt.toISOString().replace('T', ' ').slice(0, 19))} UTC</time></dd>
</dl>
<form method="get" action="/" role="search">
<input type="search" name="q" value="${escapeHtml(query.q)}" placeholder="search MAC, e.g. 3f:a2" autocomplete="off" autocapitalize="none" spellcheck="false" aria-label="MAC address">
<label><input type="checkbox" name="show" value="problems"${query.problemsOnly ? ' checked' : ''}> problems only</label>
<button type="submit">search</button>
</form>
<p class="muted"><button type="button" id="refresh">refresh</button> <span id="updated">updated ${escapeHtml(new Date().toISOString().slice(11, 19))} UTC</span></p>
</header>
<main id="live">${live}</main>
<footer class="muted"><a href="/healthz">/healthz</a> · <a href="/metrics">/metrics</a></footer>
<script>${SCRIPT}</script>
</body></html>`;
}

/** The part that changes: upstream, counts, models and one page of devices. */
export function renderLive(
  catalog: EffectiveCatalog,
  devices: Iterable<DeviceRecord>,
  upstream: StatusUpstream,
  query: StatusQuery,
  now = Date.now(),
): string {
  const needle = query.q.toLowerCase().replace(/[^0-9a-f]/g, '');
  const counts = { known: 0, seenLastHour: 0, 'in-sync': 0, 'out-of-sync': 0, failed: 0, unassigned: 0 };
  const byModel = new Map<string, { devices: number; inSync: number }>();
  const rows: DeviceRow[] = [];
  for (const device of devices) {
    const resolution = catalog.resolveDevice(device.mac);
    const running = device.report?.sha256;
    // A failed report wins over running the model: it failed on the device, or was rolled back.
    const standing: DeviceStanding = !resolution ? 'unassigned'
      : device.report?.state === 'failed' ? 'failed'
        : running === resolution.model.sha256 ? 'in-sync' : 'out-of-sync';
    counts.known++;
    counts[standing]++;
    if (Date.parse(device.lastSeen) >= now - HOUR_MS) counts.seenLastHour++;
    if (resolution) {
      const key = `${resolution.model.name}@${resolution.model.version}`;
      const tally = byModel.get(key) ?? { devices: 0, inSync: 0 };
      tally.devices++;
      if (standing === 'in-sync') tally.inSync++;
      byModel.set(key, tally);
    }
    if (query.problemsOnly && (standing === 'in-sync' || standing === 'unassigned')) continue;
    if (needle && !device.mac.replaceAll(':', '').includes(needle)) continue;
    rows.push({
      device,
      standing,
      assigned: resolution ? { model: resolution.model.name, version: resolution.model.version, held: resolution.held } : null,
    });
  }
  rows.sort((a, b) => STANDING_ORDER[a.standing] - STANDING_ORDER[b.standing] || (a.device.mac < b.device.mac ? -1 : 1));
  const pages = Math.max(1, Math.ceil(rows.length / PAGE_SIZE));
  const page = Math.min(query.page, pages);
  const shown = rows.slice((page - 1) * PAGE_SIZE, page * PAGE_SIZE);
  const outOfSync = counts['out-of-sync'] + counts.failed;

  return `<section class="summary" aria-label="summary">
${tile('devices', counts.known, '')}
${tile('seen in the last hour', counts.seenLastHour, '')}
${tile('in sync', counts['in-sync'], 'good')}
${tile('out of sync', outOfSync, outOfSync > 0 ? 'warn' : '')}
${tile('failed', counts.failed, counts.failed > 0 ? 'bad' : '')}
${tile('no assignment', counts.unassigned, '')}
</section>
<section><h2>Upstream</h2>
${upstream.url === null ? '<p>none configured: this gateway serves what is pushed to it</p>'
    : `<p id="upstream" class="${upstream.state === 'ok' ? '' : 'stale'}"><code>${escapeHtml(upstream.url)}</code>, ${escapeHtml(upstream.state)}; ${upstream.lastSync ? `last successful sync ${escapeHtml(upstream.lastSync)}` : 'no successful sync yet'}</p>`
      + (upstream.lastError ? `<p class="error">last error ${escapeHtml(upstream.lastError)}</p>` : '')}</section>
<section><h2>Models</h2>${renderModels(catalog, byModel, query)}</section>
<section><h2>Devices</h2>
<p class="muted" id="device-range">${rows.length === 0 ? 'no device matches' : `${(page - 1) * PAGE_SIZE + 1}–${(page - 1) * PAGE_SIZE + shown.length} of ${rows.length}`}${needle ? ` matching “${escapeHtml(query.q)}”` : ''}${query.problemsOnly ? ', problems only' : ''}; problems first</p>
<ul class="devices">${shown.map((row) => renderDevice(row, now)).join('\n')}</ul>
${renderPager(query, page, pages)}
</section>`;
}

/** Pending shown at most: enough to act on; the CLI lists them all. */
const PENDING_SHOWN = 50;

/** Devices waiting for an operator (devices.admission: accepted), newest first; nothing when none wait. */
export function renderPending(pending: ReadonlyArray<{ mac: string; publicKey: string; since: string }>): string {
  if (pending.length === 0) return '';
  const shown = [...pending].sort((a, b) => b.since.localeCompare(a.since)).slice(0, PENDING_SHOWN);
  return `<section id="pending"><h2>Waiting for acceptance</h2>
<p class="muted">${pending.length} device${pending.length === 1 ? '' : 's'} offered a key and wait${pending.length === 1 ? 's' : ''}: <code>modelferry devices accept MAC</code> or <code>reject MAC</code></p>
<ul class="devices">${shown.map((entry) => `<li class="device out-of-sync"><div class="line"><code class="mac">${escapeHtml(entry.mac)}</code><span class="badge">pending</span></div>`
    + `<div class="line muted"><span>key <code>${escapeHtml(entry.publicKey)}</code></span><span>since <time datetime="${escapeHtml(entry.since)}">${escapeHtml(entry.since.replace('T', ' ').slice(0, 19))}</time></span></div></li>`).join('\n')}</ul>
</section>`;
}

function tile(label: string, value: number, tone: string): string {
  return `<div class="tile ${tone}" data-count="${escapeHtml(label)}"><b>${value}</b><span>${escapeHtml(label)}</span></div>`;
}

function renderModels(catalog: EffectiveCatalog, byModel: Map<string, { devices: number; inSync: number }>, query: StatusQuery): string {
  const total = catalog.models.size;
  if (total === 0) return '<p class="muted">no models yet</p>';
  const pages = Math.ceil(total / MODELS_PAGE_SIZE);
  const page = Math.min(query.modelsPage, pages);
  const names = [...new Set([...catalog.models.values()].map((m) => m.name))].sort();
  // One page of versions, in name order (newest version first), grouped under their names.
  const first = (page - 1) * MODELS_PAGE_SIZE;
  const shown = new Map<string, EffectiveModel[]>();
  for (const model of names.flatMap((name) => catalog.versionsOf(name)).slice(first, first + MODELS_PAGE_SIZE)) {
    shown.set(model.name, [...shown.get(model.name) ?? [], model]);
  }
  const assignments = [...catalog.assignments.values()];
  const items = [...shown].map(([name, models]) => {
    const versions = models.map((model) => {
      const tally = byModel.get(`${model.name}@${model.version}`);
      const selectors = assignments.filter((a) => {
        const target = catalog.resolveRef(a);
        const previous = a.rollout ? catalog.resolveRef(a.rollout.previous) : undefined;
        return target === model || previous === model;
      }).map((a) => {
        const rollout = a.rollout
          ? ` <span class="rollout">rollout ${a.rollout.percent}%${a.rollout.halted ? ' <b class="halted">halted</b>' : ''} (others on ${escapeHtml(a.rollout.previous.model)}@${escapeHtml(a.rollout.previous.version)})</span>`
          : '';
        return `<code>${escapeHtml(a.selector)}</code>${a.version !== model.version ? ` (as ${escapeHtml(a.model)}@${escapeHtml(a.version)})` : ''}${rollout}`;
      });
      return `<li><b>${escapeHtml(model.version)}</b> <span class="muted">${escapeHtml(model.layer)}, ${formatBytes(model.size)}</span>`
        + ` · ${tally ? `${tally.devices} device${tally.devices === 1 ? '' : 's'}, ${tally.inSync} in sync` : 'no devices'}`
        + `${selectors.length ? ` · assigned to ${selectors.join(', ')}` : ''}${renderProgram(model.program)}</li>`;
    });
    return `<li class="model"><h3>${escapeHtml(name)}</h3><ul>${versions.join('')}</ul></li>`;
  });
  const range = pages > 1 ? `<p class="muted" id="model-range">versions ${first + 1}–${Math.min(total, first + MODELS_PAGE_SIZE)} of ${total}</p>` : '';
  return `${range}<ul class="models">${items.join('')}</ul>${renderPager(query, page, pages, 'models')}`;
}

/** What is inside the program (daemon/program): what a device needs to run it. */
function renderProgram(program: ProgramSummary | null | undefined): string {
  if (!program) return '';
  const { operators, delegates, arenaBytes } = program.requires;
  return `<div class="program muted">${program.methods.map((m) => escapeHtml(m.name)).join(', ')}: `
    + `${operators.length} operator${operators.length === 1 ? '' : 's'} <span title="${escapeHtml(operators.join(' '))}">(${escapeHtml(operators.slice(0, 4).join(', '))}${operators.length > 4 ? ', …' : ''})</span>`
    + `${delegates.length ? `, delegates ${escapeHtml(delegates.join(', '))}` : ''}, arena ${formatBytes(arenaBytes)}</div>`;
}

function renderDevice({ device, standing, assigned }: DeviceRow, now: number): string {
  const report = device.report;
  const running = report?.sha256
    ? `${report.model ? `${escapeHtml(report.model)}@${escapeHtml(report.version ?? '?')}` : `<code>${escapeHtml(report.sha256.slice(0, 12))}…</code>`}`
    : '<span class="muted">nothing reported</span>';
  const error = report?.error
    ? `<p class="error">${escapeHtml(report.error.length > ERROR_CHARS ? `${report.error.slice(0, ERROR_CHARS)}…` : report.error)}</p>`
    : '';
  const seen = Date.parse(device.lastSeen);
  const stale = seen < now - HOUR_MS;
  return `<li class="device ${standing}" data-mac="${escapeHtml(device.mac)}">
<div class="line"><code class="mac">${escapeHtml(device.mac)}</code><span class="badge">${standing === 'failed' && report?.rolledBackFrom ? 'rolled back' : STANDING_TEXT[standing]}</span></div>
<div class="line"><span>runs ${running}</span><span>assigned ${assigned ? `${escapeHtml(assigned.model)}@${escapeHtml(assigned.version)}${assigned.held ? ' (held by rollout)' : ''}` : '—'}</span></div>
<div class="line muted"><span class="${stale ? 'stale' : ''}">seen <time datetime="${escapeHtml(device.lastSeen)}">${escapeHtml(ago(now - seen))}</time></span><span>state ${escapeHtml(report?.state ?? '—')}</span><span>${report?.rssi === undefined ? 'rssi —' : `rssi ${report.rssi} dBm`}</span><span>${escapeHtml(device.address ?? '')}</span></div>
${error}</li>`;
}

/** Links to the previous and next page of a list (`page`: devices, `models`: the model list), keeping the rest of the query. */
function renderPager(query: StatusQuery, page: number, pages: number, list: 'page' | 'models' = 'page'): string {
  if (pages <= 1) return '';
  const link = (target: number, label: string) => {
    const params = new URLSearchParams();
    if (query.q) params.set('q', query.q);
    if (query.problemsOnly) params.set('show', 'problems');
    if (list === 'page' && query.modelsPage > 1) params.set('models', String(query.modelsPage));
    if (list === 'models' && query.page > 1) params.set('page', String(query.page));
    params.set(list, String(target));
    return `<a href="/?${escapeHtml(params.toString())}" rel="${label === 'next' ? 'next' : 'prev'}">${label === 'next' ? 'next ›' : '‹ previous'}</a>`;
  };
  return `<nav class="pager${list === 'models' ? ' models-pager' : ''}">${page > 1 ? link(page - 1, 'previous') : ''} <span>page ${page} of ${pages}</span> ${page < pages ? link(page + 1, 'next') : ''}</nav>`;
}

/** `5 s ago`, `3 min ago`, `2 h ago`, `4 days ago`. */
export function ago(ms: number): string {
  const s = Math.max(0, Math.round(ms / 1000));
  if (s < 90) return `${s} s ago`;
  if (s < 5400) return `${Math.round(s / 60)} min ago`;
  if (s < 172_800) return `${Math.round(s / 3600)} h ago`;
  return `${Math.round(s / 86_400)} days ago`;
}

function formatBytes(bytes: number): string {
  if (bytes < 1024) return `${bytes} B`;
  if (bytes < 1024 ** 2) return `${(bytes / 1024).toFixed(1)} KiB`;
  return `${(bytes / 1024 ** 2).toFixed(1)} MiB`;
}

/** Text made safe for HTML content and quoted attribute values. */
export function escapeHtml(text: string): string {
  return text.replace(/[&<>"'`]/g, (c) => `&#${c.charCodeAt(0)};`);
}

const STYLE = `
:root{color-scheme:light dark;--good:#1a7f37;--warn:#b35900;--bad:#c62828;--line:#8884}
*{box-sizing:border-box}body{font:15px/1.4 system-ui,sans-serif;margin:0 auto;padding:.8em;max-width:60em}
h1{font-size:1.3em;margin:.2em 0}h2{font-size:1.1em;margin:1em 0 .4em}h3{font-size:1em;margin:0}
.muted{opacity:.7}code{font-size:.95em}
.identity{display:grid;grid-template-columns:auto 1fr;gap:.1em .8em;margin:.4em 0}.identity dt{opacity:.7}.identity dd{margin:0;overflow-wrap:anywhere}
form{display:flex;flex-wrap:wrap;gap:.4em;align-items:center}input[type=search]{flex:1 1 12em;font-size:1em;padding:.4em}
button{font-size:1em;padding:.35em .8em}
.summary{display:grid;grid-template-columns:repeat(auto-fit,minmax(6.5em,1fr));gap:.4em;margin-top:.6em}
.tile{border:1px solid var(--line);border-radius:.4em;padding:.4em;text-align:center}.tile b{display:block;font-size:1.5em}
.tile.good b{color:var(--good)}.tile.warn{border-color:var(--warn)}.tile.warn b{color:var(--warn)}.tile.bad{border-color:var(--bad)}.tile.bad b{color:var(--bad)}
ul{padding:0;margin:0;list-style:none}.models>li{margin:.3em 0}.models ul{padding-left:1em}.rollout{color:var(--warn)}
.device{border:1px solid var(--line);border-left:.35em solid var(--line);border-radius:.3em;padding:.35em .5em;margin:.35em 0}
.device.in-sync{border-left-color:var(--good)}.device.out-of-sync{border-left-color:var(--warn);background:#b359000f}
.device.failed{border-left-color:var(--bad);background:#c628281a}
.line{display:flex;flex-wrap:wrap;gap:.2em 1em;justify-content:space-between}.mac{font-weight:bold}
.badge{font-size:.85em;padding:0 .4em;border-radius:.6em;border:1px solid currentColor}
.failed .badge{color:var(--bad)}.out-of-sync .badge{color:var(--warn)}.in-sync .badge{color:var(--good)}
.stale{color:var(--warn)}.error{margin:.2em 0 0;color:var(--bad);overflow-wrap:anywhere;white-space:pre-wrap}
.pager{display:flex;gap:1em;justify-content:center;margin:.6em 0}footer{margin-top:1.5em}
`;

// Replaces the live part in place every 15 s (and on "refresh"); pauses while hidden.
const SCRIPT = `(() => {
  const live = document.getElementById('live');
  const updated = document.getElementById('updated');
  let busy = false;
  async function refresh() {
    if (busy) return;
    busy = true;
    try {
      const url = new URL(location.href);
      url.searchParams.set('fragment', '1');
      const response = await fetch(url, { cache: 'no-store' });
      if (!response.ok) throw new Error(String(response.status));
      live.innerHTML = await response.text();
      updated.textContent = 'updated ' + new Date().toISOString().slice(11, 19) + ' UTC';
      updated.classList.remove('stale');
    } catch (error) {
      updated.textContent = 'gateway not answering (' + error.message + '); retrying';
      updated.classList.add('stale');
    } finally {
      busy = false;
    }
  }
  document.getElementById('refresh').addEventListener('click', refresh);
  setInterval(() => { if (!document.hidden) refresh(); }, 15000);
})();`;

const hash = (text: string) => `'sha256-${createHash('sha256').update(text).digest('base64')}'`;

/** Only the page's own inline script and style may run; nothing is loaded from elsewhere. */
export const STATUS_PAGE_CSP = [
  "default-src 'none'",
  `script-src ${hash(SCRIPT)}`,
  `style-src ${hash(STYLE)}`,
  "connect-src 'self'",
  "form-action 'self'",
  "base-uri 'none'",
  "frame-ancestors 'none'",
].join('; ');
