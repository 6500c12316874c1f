import type { EffectiveAssignment, EffectiveCatalog, EffectiveModel } from '../catalog/effective-catalog.ts';
import { checkCompatibility, type Compatibility } from './compatibility.ts';
import type { DeviceRecord } from './device-registry.ts';

export interface DeviceResolution {
  assignment: EffectiveAssignment;
  /** What the assignment resolves to before a rollout or compatibility decides. */
  target: EffectiveModel;
  /** What the device is offered; null when nothing it can run is (it keeps what it has). */
  model: EffectiveModel | null;
  /** Why `model` is not `target`: the rollout's bucket, a halted rollout, or compatibility. */
  heldBy: 'rollout' | 'halted' | 'incompatible' | null;
  /** The device against the model the assignment and rollout chose for it. */
  compatibility: Compatibility;
}

/**
 * What a device is offered: the catalog's answer (assignment, rollout), unless the device's
 * reported capabilities cannot run that model. Then it keeps what it runs: `previous` of a
 * rollout when it can run that, else the model it reports running when the catalog has it,
 * else nothing (`404 no_assignment`, and the device keeps its current model).
 */
export function resolveForDevice(catalog: EffectiveCatalog, mac: string, device: DeviceRecord | undefined): DeviceResolution | undefined {
  const resolution = catalog.resolveDevice(mac);
  if (!resolution) return undefined;
  const { assignment, target } = resolution;
  const capabilities = device?.capabilities;
  const compatibility = checkCompatibility(resolution.model, capabilities);
  if (compatibility.status !== 'incompatible') {
    return { assignment, target, model: resolution.model, heldBy: resolution.heldBy, compatibility };
  }
  const candidates: Array<EffectiveModel | undefined> = [];
  if (assignment.rollout && !resolution.held) candidates.push(catalog.resolveRef(assignment.rollout.previous));
  const running = device?.report;
  if (running?.sha256) {
    // The same bytes may be stored under several names: the one the device names, else the
    // one of the assignment's model, else any.
    const same = catalog.modelsWithSha256(running.sha256);
    candidates.push(same.find((m) => m.name === running.model && m.version === running.version)
      ?? same.find((m) => m.name === target.name) ?? same[0]);
  }
  const fallback = candidates.find((model) => model !== undefined && model.sha256 !== resolution.model.sha256
    && checkCompatibility(model, capabilities).status !== 'incompatible');
  return { assignment, target, model: fallback ?? null, heldBy: 'incompatible', compatibility };
}
