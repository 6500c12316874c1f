import { existsSync } from 'node:fs';
import path from 'node:path';

// Rows that need parts other helpers build: the firmware's device simulator (fleet
// convergence) and upstream sync (incremental sync). Until those exist the bench says so.

export interface Skipped {
  name: string;
  target: string;
  skipped: string;
}

export async function fleetConvergence(root: string): Promise<Skipped> {
  const name = 'fleet convergence: 200 modelferry-sim devices long-polling, push to all installed (median of 5)';
  const target = '≤ 5 s';
  const sim = [path.join(root, 'firmware', 'build', 'modelferry-sim'), path.join(root, 'firmware', 'build', 'host', 'modelferry-sim')].find((p) => existsSync(p));
  if (!existsSync(path.join(root, 'firmware'))) return { name, target, skipped: 'the firmware simulator (firmware/, modelferry-sim) is not part of this checkout yet' };
  if (!sim) return { name, target, skipped: 'modelferry-sim is not built (firmware/build/modelferry-sim missing)' };
  return { name, target, skipped: 'not measured by this bench yet' };
}

export async function incrementalSync(root: string): Promise<Skipped> {
  const name = 'incremental sync: bytes transferred when 1 of 200 models changed, vs that blob';
  const target = '≤ blob + manifest + 10 %';
  if (!existsSync(path.join(root, 'daemon', 'sync'))) return { name, target, skipped: 'upstream sync (daemon/sync/) is not part of this checkout yet' };
  return { name, target, skipped: 'not measured by this bench yet' };
}
