import type { EffectiveCatalog, EffectiveModel } from '../catalog/effective-catalog.ts';
import type { DeviceRecord } from './device-registry.ts';
import { resolveForDevice } from './device-resolution.ts';

/** One device as the inventory shows it: what it runs against what it should run. */
export function describeDevice(device: DeviceRecord, catalog: EffectiveCatalog) {
  const resolution = resolveForDevice(catalog, device.mac, device);
  // `assigned` is what the device is offered; with nothing it can run, what it should run.
  const offered = resolution ? resolution.model ?? resolution.target : null;
  const assigned = resolution && offered
    ? {
        model: offered.name,
        version: offered.version,
        sha256: offered.sha256,
        selector: resolution.assignment.selector,
        heldByRollout: resolution.heldBy === 'rollout' || resolution.heldBy === 'halted',
        heldBy: resolution.heldBy,
        offered: resolution.model !== null,
      }
    : null;
  const compatibility = resolution?.compatibility ?? null;
  const running = device.report?.sha256 ?? null;
  const failed = device.report?.state === 'failed';
  return {
    mac: device.mac,
    firstSeen: device.firstSeen,
    lastSeen: device.lastSeen,
    address: device.address,
    group: catalog.groupOf(device.mac) ?? null,
    state: device.report?.state ?? null,
    running: running === null ? null : { sha256: running, model: device.report?.model ?? null, version: device.report?.version ?? null },
    assigned,
    // A device that runs its model but says it fails on it is not in sync.
    inSync: assigned === null ? null : running === assigned.sha256 && !failed,
    rolledBack: rolledBack(device, catalog, resolution?.target),
    // `incompatible` names what is missing for the model the assignment chose for it.
    compatibility: compatibility === null ? null : compatibility.status === 'incompatible'
      ? { status: 'incompatible', model: `${resolution!.target.name}@${resolution!.target.version}`, missing: compatibility.missing, reasons: compatibility.reasons }
      : compatibility,
    capabilities: device.capabilities ?? null,
    report: device.report,
  };
}

/**
 * The model a device installed, could not confirm and went back from, and why: from its
 * last report, while that report is the failure.
 */
function rolledBack(device: DeviceRecord, catalog: EffectiveCatalog, target: EffectiveModel | undefined) {
  const report = device.report;
  if (report?.state !== 'failed' || !report.rolledBackFrom) return null;
  const model = modelRolledBackFrom(catalog, report.rolledBackFrom, target);
  return {
    sha256: report.rolledBackFrom,
    model: model?.name ?? null,
    version: model?.version ?? null,
    reason: report.error ?? null,
    at: report.at,
  };
}

/**
 * Which model a rollback was from, by its sha256: the one the device's assignment offers
 * when it has those bytes (other names may share them), else any that has them.
 */
export function modelRolledBackFrom(catalog: EffectiveCatalog, sha256: string, target: EffectiveModel | undefined): EffectiveModel | undefined {
  return target?.sha256 === sha256 ? target : catalog.modelsWithSha256(sha256)[0];
}

export interface AssignmentHealth {
  /** Known devices this assignment decides for. */
  devices: number;
  /** Of those, reporting that they run what it resolves to for them. */
  inSync: number;
  /** Not in sync, and their last report is `failed`: what an operator pausing a rollout looks at. */
  failed: number;
  /** Not in sync and not failed: still to poll, download or install. */
  pending: number;
  /** Devices whose capabilities cannot run what the assignment chose for them (counted in the above too). */
  incompatible: number;
  /** Why, tallied: `missing operator aten::mul.out`: 3. */
  incompatibleReasons: Record<string, number>;
}

export function emptyHealth(): AssignmentHealth {
  return { devices: 0, inSync: 0, failed: 0, pending: 0, incompatible: 0, incompatibleReasons: {} };
}

/** Rollout health: device reports tallied by the assignment that decides for each device. */
export function assignmentHealth(devices: Iterable<DeviceRecord>, catalog: EffectiveCatalog): Map<string, AssignmentHealth> {
  const health = new Map<string, AssignmentHealth>();
  for (const device of devices) {
    const { assigned, inSync, compatibility } = describeDevice(device, catalog);
    if (!assigned) continue;
    let tally = health.get(assigned.selector);
    if (!tally) health.set(assigned.selector, tally = emptyHealth());
    tally.devices++;
    if (compatibility?.status === 'incompatible') {
      tally.incompatible++;
      for (const reason of compatibility.reasons) tally.incompatibleReasons[reason] = (tally.incompatibleReasons[reason] ?? 0) + 1;
    }
    if (inSync) tally.inSync++;
    else if (device.report?.state === 'failed') tally.failed++;
    else tally.pending++;
  }
  return health;
}

export interface FleetCounts {
  known: number;
  seenLastHour: number;
  /** Running what their assignment resolves to. */
  inSync: number;
  /** With an assignment, not reporting that they run it (failed ones included). */
  outOfSync: number;
  /** Out of sync, and their last report is `failed`. */
  failed: number;
  /** Nothing resolves for them. */
  unassigned: number;
}

/** The fleet in numbers, for metrics and the status page. */
export function fleetCounts(devices: Iterable<DeviceRecord>, catalog: EffectiveCatalog, now: number): FleetCounts {
  const counts: FleetCounts = { known: 0, seenLastHour: 0, inSync: 0, outOfSync: 0, failed: 0, unassigned: 0 };
  const hourAgo = now - 3_600_000;
  for (const device of devices) {
    counts.known++;
    if (Date.parse(device.lastSeen) >= hourAgo) counts.seenLastHour++;
    const resolution = resolveForDevice(catalog, device.mac, device);
    const offered = resolution ? resolution.model ?? resolution.target : null;
    if (!offered) counts.unassigned++;
    else if (device.report?.sha256 === offered.sha256 && device.report.state !== 'failed') counts.inSync++;
    else {
      counts.outOfSync++;
      if (device.report?.state === 'failed') counts.failed++;
    }
  }
  return counts;
}
