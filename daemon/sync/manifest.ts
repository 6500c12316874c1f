import { createHash } from 'node:crypto';
import { z } from 'zod';
import { LATEST } from '../contract/identifiers.ts';
import { MANIFEST_FORMAT, manifestModelSchema, manifestSchema as wireManifestSchema } from '../contract/manifest.ts';

// The central store's manifest (docs/design.md "Central store format") as a sync reads it and
// `modelferry publish` writes it: the contract's schema (daemon/contract/manifest.ts, shared
// with GET /v1/manifest), plus what a reader must refuse before trusting a store: dates that
// sort, sizes that can be real, and references that resolve within the manifest.

export { MANIFEST_FORMAT };

const timestamp = z.iso.datetime({ offset: true, error: 'must be an ISO 8601 date-time such as 2026-11-24T12:00:00Z' });

// Unknown fields are dropped rather than refused, so a newer store or gateway upstream can add
// fields without breaking the gateways that sync from it.
export const manifestSchema = wireManifestSchema.extend({
  format: z.literal(MANIFEST_FORMAT, { error: `must be "${MANIFEST_FORMAT}"` }),
  revision: z.string().min(1).max(200),
  generatedAt: timestamp,
  models: z.array(manifestModelSchema.extend({
    size: z.number().int().positive().max(Number.MAX_SAFE_INTEGER),
    url: z.string().min(1).max(2048),
    signature: z.string().max(256).nullable(),
    createdAt: timestamp,
  })).max(100_000),
  assignments: wireManifestSchema.shape.assignments.max(100_000).default([]),
  groups: wireManifestSchema.shape.groups.default({}),
}).superRefine((manifest, ctx) => {
  const byKey = new Map<string, string>();
  const names = new Set<string>();
  manifest.models.forEach((model, index) => {
    const key = `${model.name}@${model.version}`;
    if (byKey.has(key)) ctx.addIssue({ code: 'custom', path: ['models', index], message: `${key} is listed twice` });
    byKey.set(key, model.sha256);
    names.add(model.name);
  });
  const resolves = (ref: { model: string; version: string }) => ref.version === LATEST ? names.has(ref.model) : byKey.has(`${ref.model}@${ref.version}`);
  const selectors = new Set<string>();
  manifest.assignments.forEach((assignment, index) => {
    if (selectors.has(assignment.selector)) ctx.addIssue({ code: 'custom', path: ['assignments', index, 'selector'], message: `${assignment.selector} is assigned twice` });
    selectors.add(assignment.selector);
    for (const ref of assignment.rollout ? [assignment, assignment.rollout.previous] : [assignment]) {
      if (!resolves(ref)) ctx.addIssue({ code: 'custom', path: ['assignments', index], message: `${ref.model}@${ref.version} is not among the manifest's models` });
    }
  });
  const groupOf = new Map<string, string>();
  for (const [group, members] of Object.entries(manifest.groups)) {
    for (const mac of members) {
      const other = groupOf.get(mac);
      if (other !== undefined && other !== group) ctx.addIssue({ code: 'custom', path: ['groups', group], message: `${mac} is in groups ${other} and ${group}; a device is in at most one group` });
      groupOf.set(mac, group);
    }
  }
});

export type Manifest = z.infer<typeof manifestSchema>;
export type ManifestModel = Manifest['models'][number];
export type ManifestAssignment = Manifest['assignments'][number];

/** Validates a parsed manifest; throws an Error whose message names the first bad field. */
export function parseManifest(value: unknown): Manifest {
  const result = manifestSchema.safeParse(value);
  if (!result.success) {
    const issue = result.error.issues[0]!;
    const where = issue.path.length > 0 ? issue.path.join('.') : 'manifest';
    throw new Error(`${where}: ${issue.message}`);
  }
  return result.data;
}

/** A revision that changes whenever the content (anything but generatedAt) changes. */
export function revisionOf(manifest: Omit<Manifest, 'revision' | 'generatedAt' | 'format'>): string {
  const canonical = JSON.stringify({
    models: [...manifest.models].sort((a, b) => `${a.name}@${a.version}`.localeCompare(`${b.name}@${b.version}`)),
    assignments: [...manifest.assignments].sort((a, b) => a.selector.localeCompare(b.selector)),
    groups: Object.entries(manifest.groups).sort(([a], [b]) => a.localeCompare(b)),
  });
  return createHash('sha256').update(canonical).digest('hex').slice(0, 16);
}
