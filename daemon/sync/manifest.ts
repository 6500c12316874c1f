import { createHash } from 'node:crypto';
import { z } from 'zod';
import { isModelferryError } from '../errors.ts';
import { LATEST, parseGroupName, parseMac, parseModelName, parseSelector, parseVersion, parseVersionRef, selectorKey } from '../identifiers.ts';

// The central store's manifest (DESIGN.md section 4), as `modelferry publish` writes it, a
// gateway's GET /v1/manifest serves it and a sync reads it. Identifiers go through the same
// parsers as the HTTP API, so a manifest can name nothing a push or an assignment could not.

export const MANIFEST_FORMAT = 'modelferry.manifest/v1';

/** A zod string checked (and made canonical) by one of the identifier parsers. */
function identifier(parse: (input: string) => string) {
  return z.string().transform((value, ctx) => {
    try {
      return parse(value);
    } catch (error) {
      if (!isModelferryError(error)) throw error;
      ctx.addIssue({ code: 'custom', message: error.message });
      return z.NEVER;
    }
  });
}

const digest = z.string().regex(/^[0-9a-f]{64}$/, 'must be a sha256: 64 lower-case hex characters');
const modelRef = z.object({ model: identifier(parseModelName), version: identifier(parseVersionRef) });

const manifestModel = z.object({
  name: identifier(parseModelName),
  version: identifier(parseVersion),
  sha256: digest,
  size: z.number().int().positive().max(Number.MAX_SAFE_INTEGER),
  url: z.string().min(1).max(2048),
  signature: z.string().max(256).nullable().default(null),
  keyId: z.string().max(64).nullable().default(null),
  createdAt: z.iso.datetime({ offset: true }),
});

const manifestAssignment = modelRef.extend({
  selector: identifier((input) => selectorKey(parseSelector(input))),
  rollout: z.object({ percent: z.number().min(0).max(100), previous: modelRef }).nullable().default(null),
});

// Unknown fields are dropped rather than refused, so a newer store or gateway upstream can add
// fields without breaking the gateways that sync from it.
export const manifestSchema = z.object({
  format: z.literal(MANIFEST_FORMAT, { error: `must be "${MANIFEST_FORMAT}"` }),
  revision: z.string().min(1).max(200),
  generatedAt: z.iso.datetime({ offset: true }),
  models: z.array(manifestModel).max(100_000),
  assignments: z.array(manifestAssignment).max(100_000).default([]),
  groups: z.record(identifier(parseGroupName), z.array(identifier(parseMac)).max(10_000)).default({}),
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
