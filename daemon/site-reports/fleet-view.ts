import { createHash } from 'node:crypto';
import type { StoreObjects } from '../central-store/store-objects.ts';
import { ago as agoMs, escapeHtml } from '../http/status-page.ts';
import { siteReportSchema, type SiteReport } from './site-report.ts';

// Many sites at a glance, from the reports their gateways write into the store
// (site-report.ts): one row per gateway, for `modelferry fleet` (text or JSON) and for the
// static page it can write into the store (`fleet.html`). A bucket holds a prefix per site
// (docs/central-store.md "Many sites on S3"), so the store's top gives the whole fleet: its
// own gateways/ and the gateways/ of each prefix one level down.

/** A gateway that has not reported for this many of its sync periods (or report intervals, when longer) is stale. */
export const STALE_PERIODS = 3;
/** The sync period assumed for a gateway whose report does not say (the default schedule). */
const DEFAULT_PERIOD_SECONDS = 300;
/** Reports (and listings) read at once. */
const READS_AT_ONCE = 16;
/**
 * Prefixes one level down whose reports are read at the most: each costs a listing, so a
 * bucket with more (or a prefix given by mistake) does not turn into an endless run.
 */
export const MAX_PREFIXES = 10_000;

export interface SiteRow {
  /** The prefix below the store whose gateways/ holds the report (`site-a`); '' for the store's own. */
  prefix: string;
  gateway: string;
  name: string;
  version: string;
  reportedAt: string;
  /** Seconds since the report was written. */
  ageSeconds: number;
  /** Not reported for STALE_PERIODS sync periods. */
  stale: boolean;
  devices: SiteReport['devices'];
  models: number;
  lastSync: SiteReport['lastSync'];
  rollouts: number;
  haltedRollouts: string[];
  failures: SiteReport['failures']['listed'];
}

export interface Fleet {
  store: string;
  generatedAt: string;
  sites: SiteRow[];
  /** Objects under gateways/ that are not reports this version can read. */
  unreadable: Array<{ key: string; reason: string }>;
  /** The prefixes one level down that were read; `more` when there were more than `limit`. */
  prefixes: { read: number; limit: number; more: boolean };
}

/**
 * Every report in the store and in the prefixes one level down (`site-a/gateways/`), as
 * rows: stale and failing sites first, then by prefix and name.
 */
export async function readFleet(store: StoreObjects, now: Date, prefixLimit = MAX_PREFIXES): Promise<Fleet> {
  const below = await store.listPrefixes(prefixLimit);
  const prefixes = ['', ...below.names];
  const listed = await atOnce(prefixes, async (prefix) => (await store.list(prefix === '' ? 'gateways/' : `${prefix}/gateways/`))
    .filter((key) => key.endsWith('.json'))
    .map((key) => ({ prefix, key })));
  const sites: SiteRow[] = [];
  const unreadable: Fleet['unreadable'] = [];
  await atOnce(listed.flat(), async ({ prefix, key }) => {
    const found = await store.read(key);
    if (found === null) return;
    let parsed: unknown;
    try {
      parsed = JSON.parse(found.bytes.toString('utf8'));
    } catch {
      unreadable.push({ key, reason: 'not JSON' });
      return;
    }
    const result = siteReportSchema.safeParse(parsed);
    if (!result.success) {
      unreadable.push({ key, reason: `${result.error.issues[0]!.path.join('.')}: ${result.error.issues[0]!.message}` });
      return;
    }
    sites.push(rowOf(prefix, result.data, now));
  });
  sites.sort((a, b) => Number(b.stale) - Number(a.stale) || b.devices.failed - a.devices.failed
    || a.prefix.localeCompare(b.prefix) || a.name.localeCompare(b.name) || a.gateway.localeCompare(b.gateway));
  return {
    store: store.where,
    generatedAt: now.toISOString(),
    sites,
    unreadable: unreadable.sort((a, b) => a.key.localeCompare(b.key)),
    prefixes: { read: below.names.length, limit: prefixLimit, more: below.more },
  };
}

/** `work` on every item, READS_AT_ONCE at a time, so that a store of many sites is not asked all at once. */
async function atOnce<T, R>(items: T[], work: (item: T) => Promise<R>): Promise<R[]> {
  const results: R[] = [];
  for (let i = 0; i < items.length; i += READS_AT_ONCE) results.push(...await Promise.all(items.slice(i, i + READS_AT_ONCE).map(work)));
  return results;
}

function rowOf(prefix: string, report: SiteReport, now: Date): SiteRow {
  const ageSeconds = Math.max(0, Math.round((now.getTime() - Date.parse(report.reportedAt)) / 1000));
  const period = Math.max(report.syncPeriodSeconds ?? DEFAULT_PERIOD_SECONDS, report.reportIntervalSeconds ?? 0);
  return {
    prefix,
    gateway: report.gateway,
    name: report.name,
    version: report.version,
    reportedAt: report.reportedAt,
    ageSeconds,
    stale: ageSeconds > STALE_PERIODS * period,
    devices: report.devices,
    models: report.models.count,
    lastSync: report.lastSync,
    rollouts: report.rollouts.length,
    haltedRollouts: report.rollouts.filter((r) => r.halted).map((r) => `${r.selector} ${r.model}@${r.version}`),
    failures: report.failures.listed,
  };
}

const HEADINGS = ['gateway', 'last seen', 'in sync', 'failed', 'pending', 'halted rollouts', 'last sync'] as const;

function cells(row: SiteRow): string[] {
  return [
    `${row.name} (${row.gateway})`,
    `${agoMs(row.ageSeconds * 1000)}${row.stale ? ' STALE' : ''}`,
    `${row.devices.inSync}/${row.devices.total}`,
    String(row.devices.failed),
    String(row.devices.pending + row.devices.pendingAdmission),
    row.haltedRollouts.length === 0 ? '-' : row.haltedRollouts.join(', '),
    row.lastSync === null ? '-' : row.lastSync.error ? `${row.lastSync.result}: ${row.lastSync.error.code}` : row.lastSync.result,
  ];
}

/** Whether rows need a prefix column: some report came from a prefix below the store. */
function byPrefix(fleet: Fleet): boolean {
  return fleet.sites.some((site) => site.prefix !== '');
}

const prefixCell = (row: SiteRow) => row.prefix === '' ? '-' : row.prefix;

/** What was left unread when the store had more prefixes than are read; null when none was. */
function prefixesLeftOut(fleet: Fleet): string | null {
  if (!fleet.prefixes.more) return null;
  const limit = fleet.prefixes.limit.toLocaleString('en-US');
  return `${fleet.store} has more than ${limit} prefixes: the reports under ${limit} of them are shown, the others were not read`;
}

/** The fleet as a plain-text table for a terminal. */
export function fleetTable(fleet: Fleet): string {
  const leftOut = prefixesLeftOut(fleet);
  if (fleet.sites.length === 0) {
    const none = `no gateway has reported into ${fleet.store} yet (STORE/gateways/ or STORE/PREFIX/gateways/; upstream.report: true on each gateway)`;
    return leftOut === null ? none : `${none}\n${leftOut}`;
  }
  const withPrefix = byPrefix(fleet);
  const headings = withPrefix ? ['prefix', ...HEADINGS] : [...HEADINGS];
  const rows = [headings, ...fleet.sites.map((site) => (withPrefix ? [prefixCell(site), ...cells(site)] : cells(site)))];
  const widths = headings.map((_, column) => Math.max(...rows.map((row) => row[column]!.length)));
  const lines = rows.map((row) => row.map((cell, column) => cell.padEnd(widths[column]!)).join('  ').trimEnd());
  const stale = fleet.sites.filter((s) => s.stale).length;
  lines.push('', `${fleet.sites.length} gateway${fleet.sites.length === 1 ? '' : 's'}, ${stale} stale (no report for ${STALE_PERIODS} sync periods)`);
  if (leftOut !== null) lines.push(leftOut);
  for (const { key, reason } of fleet.unreadable) lines.push(`unreadable: ${key}: ${reason}`);
  return lines.join('\n');
}

const PAGE_STYLE = `
:root{color-scheme:light dark;--bad:#c62828;--warn:#b35900;--good:#1a7f37;--line:#8884}
body{font:15px/1.4 system-ui,sans-serif;margin:0 auto;padding:.8em;max-width:72em}
h1{font-size:1.3em}.muted{opacity:.7}table{border-collapse:collapse;width:100%}
th,td{text-align:left;padding:.3em .5em;border-bottom:1px solid var(--line);vertical-align:top}
tr.stale td{color:var(--warn)}
td.failed.some{color:var(--bad);font-weight:bold}td.insync.all{color:var(--good)}
.halted{color:var(--bad)}.leftout{color:var(--warn)}details{margin:.2em 0}code{font-size:.95em}
`;

/** Self-contained (no script, nothing loaded from elsewhere): what `fleet --write-page` puts in the store. */
export const FLEET_PAGE_CSP = `default-src 'none'; style-src 'sha256-${createHash('sha256').update(PAGE_STYLE).digest('base64')}'`;

/** The same table as a static page, with each site's failed devices under it. */
export function fleetPage(fleet: Fleet): string {
  const withPrefix = byPrefix(fleet);
  const headings = withPrefix ? ['prefix', ...HEADINGS] : [...HEADINGS];
  const leftOut = prefixesLeftOut(fleet);
  const rows = fleet.sites.map((site) => {
    const [gateway, , inSync, failed, pending, halted, lastSync] = cells(site);
    const failures = site.failures.length === 0 ? '' : `<tr class="failures"><td colspan="${headings.length}"><details><summary>${site.devices.failed} failed device${site.devices.failed === 1 ? '' : 's'}</summary><ul>${
      site.failures.map((f) => `<li><code>${escapeHtml(f.mac)}</code> ${escapeHtml(f.model ?? '?')}@${escapeHtml(f.version ?? '?')}${f.rolledBack ? ' (rolled back)' : ''}: ${escapeHtml(f.reason ?? 'no reason given')}</li>`).join('')}</ul></details></td></tr>`;
    return `<tr class="site${site.stale ? ' stale' : ''}" data-gateway="${escapeHtml(site.gateway)}"${withPrefix ? ` data-prefix="${escapeHtml(site.prefix)}"` : ''}>`
      + (withPrefix ? `<td class="prefix">${escapeHtml(prefixCell(site))}</td>` : '')
      + `<td>${escapeHtml(gateway!)}</td>`
      + `<td class="age"><time datetime="${escapeHtml(site.reportedAt)}">${escapeHtml(agoMs(site.ageSeconds * 1000))}</time>${site.stale ? ' <b>stale</b>' : ''}</td>`
      + `<td class="insync${site.devices.inSync === site.devices.total && site.devices.total > 0 ? ' all' : ''}">${escapeHtml(inSync!)}</td>`
      + `<td class="failed${site.devices.failed > 0 ? ' some' : ''}">${escapeHtml(failed!)}</td>`
      + `<td>${escapeHtml(pending!)}</td>`
      + `<td class="${site.haltedRollouts.length > 0 ? 'halted' : ''}">${escapeHtml(halted!)}</td>`
      + `<td>${escapeHtml(lastSync!)}</td></tr>${failures}`;
  });
  return `<!doctype html>
<html lang="en"><head><meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<meta http-equiv="Content-Security-Policy" content="${escapeHtml(FLEET_PAGE_CSP)}">
<title>modelferry fleet · ${escapeHtml(fleet.store)}</title>
<style>${PAGE_STYLE}</style></head>
<body>
<h1>modelferry fleet</h1>
<p class="muted"><code>${escapeHtml(fleet.store)}</code>: ${fleet.sites.length} gateway${fleet.sites.length === 1 ? '' : 's'}, ${fleet.sites.filter((s) => s.stale).length} stale (no report for ${STALE_PERIODS} sync periods); written <time datetime="${escapeHtml(fleet.generatedAt)}">${escapeHtml(fleet.generatedAt.replace('T', ' ').slice(0, 19))} UTC</time> by <code>modelferry fleet --write-page</code></p>
${leftOut === null ? '' : `<p class="leftout">${escapeHtml(leftOut)}</p>`}
<table><thead><tr>${headings.map((h) => `<th>${escapeHtml(h)}</th>`).join('')}</tr></thead>
<tbody>${rows.join('\n')}</tbody></table>
${fleet.unreadable.length === 0 ? '' : `<p class="muted">unreadable: ${fleet.unreadable.map((u) => `<code>${escapeHtml(u.key)}</code> (${escapeHtml(u.reason)})`).join(', ')}</p>`}
</body></html>
`;
}
