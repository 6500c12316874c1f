import { createHash } from 'node:crypto';
import { LATEST } from '../contract/identifiers.ts';
import { rolloutBucket } from './rollout.ts';
import { modelKey, type Assignment, type LayerContent, type LayerName, type ModelRecord, type ModelRef } from './types.ts';

export interface EffectiveModel extends ModelRecord {
  layer: LayerName;
}

export interface EffectiveAssignment extends Assignment {
  layer: LayerName;
}

export interface Resolution {
  model: EffectiveModel;
  /** The assignment that decided, found by device, then group, then default. */
  assignment: EffectiveAssignment;
  /** What the assignment resolves to, before any rollout decides. */
  target: EffectiveModel;
  /** Why the device is on `rollout.previous` instead: its bucket, or a halted rollout. */
  heldBy: 'rollout' | 'halted' | null;
  /** True when a staged rollout put the device on `rollout.previous`. */
  held: boolean;
}

/** In a rollout's cohort: the device's bucket for the concrete target version is below `percent`. */
export function inCohort(mac: string, target: ModelRecord, percent: number): boolean {
  return rolloutBucket(mac, target.name, target.version) < percent;
}

const newestFirst = (a: ModelRecord, b: ModelRecord) =>
  b.createdAt.localeCompare(a.createdAt) || b.version.localeCompare(a.version, 'en', { numeric: true });

/**
 * The catalog as devices see it: the layers merged, local over upstream, into an immutable
 * value built once per change. Everything the request path asks is a map lookup here.
 */
export class EffectiveCatalog {
  readonly models = new Map<string, EffectiveModel>();
  readonly assignments = new Map<string, EffectiveAssignment>();
  readonly groups = new Map<string, { members: string[]; layer: LayerName }>();
  readonly #versionsByName = new Map<string, EffectiveModel[]>();
  readonly #groupOfDevice = new Map<string, string>();
  readonly #bySha256 = new Map<string, EffectiveModel[]>();
  /** Changes whenever any model, assignment or group changes; the same content gives the same value. */
  readonly revision: string;

  constructor(layers: ReadonlyArray<{ name: LayerName; content: LayerContent }>) {
    // Layers arrive highest precedence first, so the first to claim a key keeps it.
    for (const { name: layer, content } of layers) {
      for (const model of content.models) {
        const key = modelKey(model.name, model.version);
        if (!this.models.has(key)) this.models.set(key, { ...model, layer });
      }
      for (const assignment of content.assignments) {
        if (!this.assignments.has(assignment.selector)) this.assignments.set(assignment.selector, { ...assignment, layer });
      }
      for (const [group, members] of Object.entries(content.groups)) {
        if (!this.groups.has(group)) this.groups.set(group, { members, layer });
      }
    }
    for (const model of this.models.values()) {
      const same = this.#bySha256.get(model.sha256);
      if (same) same.push(model);
      else this.#bySha256.set(model.sha256, [model]);
      const list = this.#versionsByName.get(model.name) ?? [];
      list.push(model);
      this.#versionsByName.set(model.name, list);
    }
    for (const list of this.#versionsByName.values()) list.sort(newestFirst);
    for (const { name: layer } of layers) {
      for (const [group, { members, layer: owner }] of this.groups) {
        if (owner !== layer) continue;
        for (const mac of members) if (!this.#groupOfDevice.has(mac)) this.#groupOfDevice.set(mac, group);
      }
    }
    this.revision = this.#computeRevision();
  }

  versionsOf(name: string): readonly EffectiveModel[] {
    return this.#versionsByName.get(name) ?? [];
  }

  groupOf(mac: string): string | undefined {
    return this.#groupOfDevice.get(mac);
  }

  /** True when the catalog names this device: an assignment of its own or a group. */
  namesDevice(mac: string): boolean {
    return this.assignments.has(mac) || this.#groupOfDevice.has(mac);
  }

  /** A concrete version, or the newest one for `latest`. */
  resolveRef(ref: ModelRef): EffectiveModel | undefined {
    if (ref.version === LATEST) return this.versionsOf(ref.model)[0];
    return this.models.get(modelKey(ref.model, ref.version));
  }

  assignmentFor(mac: string): EffectiveAssignment | undefined {
    const group = this.groupOf(mac);
    return this.assignments.get(mac)
      ?? (group === undefined ? undefined : this.assignments.get(`group:${group}`))
      ?? this.assignments.get('default');
  }

  resolveDevice(mac: string): Resolution | undefined {
    const assignment = this.assignmentFor(mac);
    if (!assignment) return undefined;
    const target = this.resolveRef(assignment);
    if (!target) return undefined;
    const rollout = assignment.rollout;
    // A halted rollout offers `previous` to its whole cohort until it is resumed.
    if (rollout && (rollout.halted || !inCohort(mac, target, rollout.percent))) {
      const previous = this.resolveRef(rollout.previous);
      return previous ? { model: previous, assignment, target, heldBy: rollout.halted ? 'halted' : 'rollout', held: true } : undefined;
    }
    return { model: target, assignment, target, heldBy: null, held: false };
  }

  /** Models with these bytes, e.g. to name what a device reports running. */
  modelsWithSha256(sha256: string): readonly EffectiveModel[] {
    return this.#bySha256.get(sha256) ?? [];
  }

  /** True when this assignment is the one that decides for `mac` (device, else group, else default). */
  decidesFor(selector: string, mac: string): boolean {
    if (selector === mac) return true;
    if (this.assignments.has(mac)) return false;
    const group = this.groupOf(mac);
    if (selector.startsWith('group:')) return group === selector.slice('group:'.length);
    return selector === 'default' && (group === undefined || !this.assignments.has(`group:${group}`));
  }

  /** The selectors whose assignment resolves to this model now, for `409 in_use`. */
  selectorsUsing(name: string, version: string): string[] {
    const using: string[] = [];
    for (const assignment of this.assignments.values()) {
      const refs = assignment.rollout ? [assignment, assignment.rollout.previous] : [assignment];
      if (refs.some((ref) => {
        const model = this.resolveRef(ref);
        return model?.name === name && model.version === version;
      })) using.push(assignment.selector);
    }
    return using;
  }

  #computeRevision(): string {
    const sorted = <T>(items: Iterable<T>, key: (item: T) => string) => [...items].sort((a, b) => key(a).localeCompare(key(b)));
    const canonical = JSON.stringify({
      models: sorted(this.models.values(), (m) => modelKey(m.name, m.version))
        .map((m) => [m.name, m.version, m.sha256, m.size, m.signature, m.keyId, m.createdAt]),
      assignments: sorted(this.assignments.values(), (a) => a.selector)
        .map((a) => [a.selector, a.model, a.version, a.rollout && [a.rollout.percent, a.rollout.previous.model, a.rollout.previous.version, Boolean(a.rollout.halted)]]),
      groups: sorted(this.groups.entries(), ([group]) => group).map(([group, { members }]) => [group, [...members].sort()]),
    });
    return createHash('sha256').update(canonical).digest('hex').slice(0, 16);
  }
}
