import { z } from 'zod';
import { canonicalMacSchema, modelNameSchema, selectorSchema, versionTextSchema } from './identifiers.ts';
import { wireModelSchema, wireModel, type ModelFields } from './model-wire.ts';

// The central store's manifest (docs/design.md "Central store format"): what
// `GET /v1/manifest` serves and what a downstream gateway's sync reads.

export const MANIFEST_FORMAT = 'modelferry.manifest/v1';

export const manifestModelSchema = wireModelSchema.extend({
  createdAt: z.string(),
});

const modelRefSchema = z.object({ model: modelNameSchema, version: versionTextSchema });

export const manifestAssignmentSchema = modelRefSchema.extend({
  selector: selectorSchema,
  rollout: z.object({ percent: z.number().min(0).max(100), previous: modelRefSchema }).optional(),
});

export const manifestSchema = z.object({
  format: z.literal(MANIFEST_FORMAT),
  revision: z.string(),
  generatedAt: z.string(),
  models: z.array(manifestModelSchema),
  assignments: z.array(manifestAssignmentSchema),
  groups: z.record(modelNameSchema, z.array(canonicalMacSchema)),
});

export type ManifestModel = z.infer<typeof manifestModelSchema>;
export type ManifestAssignment = z.infer<typeof manifestAssignmentSchema>;
export type Manifest = z.infer<typeof manifestSchema>;

export function manifestModel(model: ModelFields & { createdAt: string }, url: string): ManifestModel {
  return { ...wireModel(model, url), createdAt: model.createdAt };
}
