import type { ModelRecord } from '../catalog/types.ts';
import type { Capabilities } from '../contract/device-report.ts';

// Whether a device can run a model: on a microcontroller an ExecuTorch program loads only
// when the firmware has a kernel for every operator it uses (selective build) and every
// backend it delegates to, when its planned memory fits the arena, and when it fits the
// model slot. The program side comes from daemon/program, the device side from its report.

export interface Incompatibility {
  operators: string[];
  delegates: string[];
  arenaBytes: { needed: number; available: number } | null;
  slotBytes: { needed: number; available: number } | null;
}

export type Compatibility =
  /** The device never reported capabilities: served as if it could run anything. */
  | { status: 'unknown'; reason: 'no capabilities reported' | 'program not inspected' }
  | { status: 'compatible' }
  | { status: 'incompatible'; missing: Incompatibility; reasons: string[] };

// Keyed by the lists themselves, which the device registry shares between devices of one
// firmware: one set per firmware, not per device.
const nameSets = new WeakMap<readonly string[], Set<string>>();

function setOf(names: readonly string[]): Set<string> {
  let set = nameSets.get(names);
  if (!set) nameSets.set(names, set = new Set(names));
  return set;
}

/**
 * An empty `operators` list and `arenaBytes: 0` mean "not stated" (a firmware built without
 * its kernel list or arena size configured sends them so; no firmware that runs models has
 * no kernels or no arena), and are not judged. An empty `delegates` list is real: most
 * firmware has no backend, and a program that delegates cannot run there.
 */
export function checkCompatibility(model: Pick<ModelRecord, 'size' | 'program'>, capabilities: Capabilities | null | undefined): Compatibility {
  if (!capabilities) return { status: 'unknown', reason: 'no capabilities reported' };
  const missing: Incompatibility = { operators: [], delegates: [], arenaBytes: null, slotBytes: null };
  if (capabilities.slotBytes !== undefined && model.size > capabilities.slotBytes) {
    missing.slotBytes = { needed: model.size, available: capabilities.slotBytes };
  }
  const requires = model.program?.requires;
  if (requires) {
    const operators = setOf(capabilities.operators);
    const delegates = setOf(capabilities.delegates);
    if (operators.size > 0) missing.operators = requires.operators.filter((op) => !operators.has(op));
    missing.delegates = requires.delegates.filter((id) => !delegates.has(id));
    if (capabilities.arenaBytes !== undefined && capabilities.arenaBytes > 0 && requires.arenaBytes > capabilities.arenaBytes) {
      missing.arenaBytes = { needed: requires.arenaBytes, available: capabilities.arenaBytes };
    }
  }
  const reasons = [
    ...missing.operators.map((op) => `missing operator ${op}`),
    ...missing.delegates.map((id) => `missing delegate ${id}`),
    ...(missing.arenaBytes ? [`needs ${missing.arenaBytes.needed} bytes of planned memory, the arena has ${missing.arenaBytes.available}`] : []),
    ...(missing.slotBytes ? [`is ${missing.slotBytes.needed} bytes, the model slot holds ${missing.slotBytes.available}`] : []),
  ];
  if (reasons.length > 0) return { status: 'incompatible', missing, reasons };
  return requires ? { status: 'compatible' } : { status: 'unknown', reason: 'program not inspected' };
}
