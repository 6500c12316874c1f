// The catalog's records, as stored in LevelDB and as the admin API shows them.

import type { ProgramSummary } from '../program/program-summary.ts';

export interface ModelRecord {
  name: string;
  version: string;
  sha256: string;
  size: number;
  /** `executorch`, or `unknown` when artifacts.formats lets other bytes in. */
  format: 'executorch' | 'unknown';
  /**
   * What is inside the program (daemon/program). Null for other bytes; absent on records
   * stored before the gateway read programs, and for upstream models until they are read.
   */
  program?: ProgramSummary | null;
  signature: string | null;
  keyId: string | null;
  /** The sequence a v2 signature covers; null for v1 or unsigned, absent on older records. */
  signatureSeq?: string | null;
  createdAt: string;
}

export interface ModelRef {
  model: string;
  /** A concrete version, or `latest`: the newest version of that name. */
  version: string;
}

export interface Rollout {
  /** 0..100: devices whose bucket is below it get the assignment, the others `previous`. */
  percent: number;
  previous: ModelRef;
  /**
   * Halt when this many cohort devices report `failed` for the new version: a count, or
   * `"N%"` of the cohort's known devices. Absent: never halts by itself.
   */
  haltOnFailures?: number | `${number}%` | null;
  /** Judge `haltOnFailures` only once the cohort has this many known devices (default 1). */
  minDevices?: number | null;
  /** Automatic progression: the percentages to raise to, one every `stepAfterMinutes` while healthy. */
  steps?: number[] | null;
  stepAfterMinutes?: number | null;
  /** When `percent` last changed (set, stepped or promoted): steps count from here. */
  percentSince?: string;
  /** Set by the gateway when the rollout stopped itself (or an operator halted it). */
  halted?: RolloutHalt | null;
}

export interface RolloutHalt {
  at: string;
  /** `failures` (the threshold was passed) or `operator` (halted by hand). */
  by: 'failures' | 'operator';
  failed: number;
  cohort: number;
  /** Reported errors of the failed cohort devices, tallied. */
  reasons: Record<string, number>;
}

export interface Assignment extends ModelRef {
  /** A MAC, `group:<name>` or `default`, in canonical form. */
  selector: string;
  rollout: Rollout | null;
  updatedAt: string;
}

/**
 * Assignments, models and groups come in layers: `upstream` is replaced whole by each
 * successful sync, `local` holds what was pushed to this gateway. Local wins.
 */
export type LayerName = 'local' | 'upstream';
export const LAYERS_BY_PRECEDENCE: readonly LayerName[] = ['local', 'upstream'];

export interface LayerContent {
  models: ModelRecord[];
  assignments: Assignment[];
  groups: Record<string, string[]>;
}

export function modelKey(name: string, version: string): string {
  return `${name}@${version}`;
}
