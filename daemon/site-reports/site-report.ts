import { z } from 'zod';
import type { EffectiveCatalog } from '../catalog/effective-catalog.ts';
import type { DeviceRecord } from '../devices/device-registry.ts';
import { describeDevice } from '../devices/fleet-status.ts';
import type { SyncOutcome } from '../sync/upstream-sync.ts';

// What a gateway tells the central store about its site (`gateways/<gateway id>.json`
// under the store's prefix), for `modelferry fleet` across many sites. Everything in it is
// bounded: counts, the first models and failed devices, so one object stays a few KB
// whatever the site's size.

export const SITE_REPORT_FORMAT = 'modelferry-site-report/1';
/** Models listed at most (the rest are counted). */
export const REPORTED_MODELS = 50;
/** Failed devices listed at most, with their reasons (the rest are counted). */
export const REPORTED_FAILURES = 20;
const REASON_CHARS = 200;

const deviceCounts = z.object({
  total: z.number().int(),
  inSync: z.number().int(),
  failed: z.number().int(),
  pending: z.number().int(),
  incompatible: z.number().int(),
  rolledBack: z.number().int(),
  unassigned: z.number().int(),
  pendingAdmission: z.number().int(),
});

export const siteReportSchema = z.object({
  format: z.literal(SITE_REPORT_FORMAT),
  gateway: z.string().min(1).max(64),
  name: z.string().max(200),
  version: z.string().max(64),
  reportedAt: z.iso.datetime({ offset: true }),
  /** How often this gateway syncs (from its schedule): a report older than 3 periods is stale. */
  syncPeriodSeconds: z.number().positive().nullable(),
  /** The least time between two of its reports (upstream.reportIntervalSeconds). */
  reportIntervalSeconds: z.number().positive().nullable(),
  lastSync: z.object({
    at: z.string(),
    result: z.enum(['updated', 'unchanged', 'failed', 'skipped']),
    revision: z.string().nullable(),
    error: z.object({ code: z.string(), message: z.string() }).nullable(),
  }).nullable(),
  lastSuccessAt: z.string().nullable(),
  revision: z.string(),
  models: z.object({
    count: z.number().int(),
    bytes: z.number().int(),
    listed: z.array(z.object({ name: z.string(), version: z.string(), size: z.number().int(), layer: z.string() })),
  }),
  devices: deviceCounts,
  rollouts: z.array(z.object({
    selector: z.string(),
    model: z.string(),
    version: z.string(),
    percent: z.number(),
    halted: z.boolean(),
    haltedBy: z.string().nullable(),
  })),
  failures: z.object({
    count: z.number().int(),
    listed: z.array(z.object({
      mac: z.string(),
      model: z.string().nullable(),
      version: z.string().nullable(),
      reason: z.string().nullable(),
      rolledBack: z.boolean(),
      at: z.string().nullable(),
    })),
  }),
});

export type SiteReport = z.infer<typeof siteReportSchema>;
export type DeviceCounts = z.infer<typeof deviceCounts>;

export interface SiteFacts {
  gateway: string;
  name: string;
  version: string;
  catalog: EffectiveCatalog;
  devices: Iterable<DeviceRecord>;
  /** Devices waiting for an operator's acceptance (daemon/identity). */
  pendingAdmission: number;
  lastOutcome: SyncOutcome | null;
  lastSuccessAt: string | null;
  syncPeriodSeconds: number | null;
  reportIntervalSeconds: number | null;
}

/** The site as the report says it, as of `now`. */
export function siteReport(facts: SiteFacts, now: Date): SiteReport {
  const { catalog } = facts;
  const counts: DeviceCounts = { total: 0, inSync: 0, failed: 0, pending: 0, incompatible: 0, rolledBack: 0, unassigned: 0, pendingAdmission: facts.pendingAdmission };
  const failures: SiteReport['failures']['listed'] = [];
  let failed = 0;
  for (const device of facts.devices) {
    const described = describeDevice(device, catalog);
    counts.total++;
    if (described.compatibility?.status === 'incompatible') counts.incompatible++;
    if (described.rolledBack) counts.rolledBack++;
    if (described.assigned === null) counts.unassigned++;
    else if (described.inSync) counts.inSync++;
    else if (device.report?.state === 'failed') counts.failed++;
    else counts.pending++;
    if (device.report?.state === 'failed') {
      failed++;
      if (failures.length < REPORTED_FAILURES) {
        failures.push({
          mac: device.mac,
          model: device.report.model ?? described.assigned?.model ?? null,
          version: device.report.version ?? described.assigned?.version ?? null,
          reason: device.report.error ? device.report.error.slice(0, REASON_CHARS) : null,
          rolledBack: described.rolledBack !== null,
          at: device.report.at ?? null,
        });
      }
    }
  }
  const models = [...catalog.models.values()].sort((a, b) => a.name.localeCompare(b.name) || b.createdAt.localeCompare(a.createdAt));
  const outcome = facts.lastOutcome;
  return {
    format: SITE_REPORT_FORMAT,
    gateway: facts.gateway,
    name: facts.name,
    version: facts.version,
    reportedAt: now.toISOString(),
    syncPeriodSeconds: facts.syncPeriodSeconds,
    reportIntervalSeconds: facts.reportIntervalSeconds,
    lastSync: outcome === null ? null : { at: outcome.finishedAt, result: outcome.result, revision: outcome.revision, error: outcome.error },
    lastSuccessAt: facts.lastSuccessAt,
    revision: catalog.revision,
    models: {
      count: models.length,
      bytes: models.reduce((sum, m) => sum + m.size, 0),
      listed: models.slice(0, REPORTED_MODELS).map((m) => ({ name: m.name, version: m.version, size: m.size, layer: m.layer })),
    },
    devices: counts,
    rollouts: [...catalog.assignments.values()].flatMap((a) => a.rollout ? [{
      selector: a.selector, model: a.model, version: a.version, percent: a.rollout.percent,
      halted: Boolean(a.rollout.halted), haltedBy: a.rollout.halted?.by ?? null,
    }] : []),
    failures: { count: failed, listed: failures },
  };
}

/** What changed between two reports, apart from when they were made: whether to write again. */
export function sameSite(a: SiteReport, b: SiteReport): boolean {
  const { reportedAt: _a, ...restA } = a;
  const { reportedAt: _b, ...restB } = b;
  return JSON.stringify(restA) === JSON.stringify(restB);
}
