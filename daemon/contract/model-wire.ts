import { z } from 'zod';
import { canonicalMacSchema, digestSchema, keyIdSchema, modelNameSchema, signatureSeqSchema, versionSchema } from './identifiers.ts';

// A model as it travels: in a device's poll answer (docs/design.md "Device poll") and in a
// manifest ("Central store format"). The field order is fixed here once: a poll answer's ETag
// is computed over its serialized body.

export const wireModelSchema = z.object({
  name: modelNameSchema,
  version: versionSchema,
  sha256: digestSchema,
  size: z.number().int().min(0),
  /** Where the bytes are: absolute, or relative to the document that carries it. */
  url: z.string().min(1),
  signature: z.string().nullable(),
  keyId: keyIdSchema.nullable(),
  /**
   * The sequence the signature covers (a decimal string, see signatureSeqSchema): a v2
   * signature, `modelferry-v2:<name>:<version>:<sha256>:<size>:<signatureSeq>`. null: a v1
   * signature (sequence 0), or none. Absent in what older stores wrote: null.
   */
  signatureSeq: signatureSeqSchema.nullable().default(null),
});

export type WireModel = z.infer<typeof wireModelSchema>;

/** The fields a stored model has in common with its wire form (records stored before sequences have none). */
export type ModelFields = Omit<WireModel, 'url' | 'signatureSeq'> & { signatureSeq?: string | null };

/** The wire form of a stored model, with `url` saying where its bytes are. */
export function wireModel(model: ModelFields, url: string): WireModel {
  return {
    name: model.name,
    version: model.version,
    sha256: model.sha256,
    size: model.size,
    url,
    signature: model.signature,
    keyId: model.keyId,
    signatureSeq: model.signatureSeq ?? null,
  };
}

/** Where this gateway serves a blob, from its root. */
export function artifactPath(sha256: string): string {
  return `/v1/artifacts/${sha256}`;
}

/** Where this gateway serves the delta from one blob to another. */
export function deltaPath(from: string, to: string): string {
  return `/v1/deltas/${from}/${to}`;
}

/**
 * A delta offered beside the full artifact (docs/design.md "Deltas"): it makes the model's
 * bytes from `from`, which the device reports running. Its `size` and `sha256` are the
 * delta's own; the device checks what it makes against the model's.
 */
export const wireDeltaSchema = z.object({
  from: digestSchema,
  url: z.string().min(1),
  size: z.number().int().min(1),
  sha256: digestSchema,
});

export type WireDelta = z.infer<typeof wireDeltaSchema>;

/** The body of a `200` to `GET /v1/devices/{mac}/model`. */
export const pollAnswerSchema = z.object({
  device: canonicalMacSchema,
  model: wireModelSchema,
  /** Only to a device whose capabilities say it applies deltas, and only when one is worth it. */
  delta: wireDeltaSchema.optional(),
  poll: z.object({
    intervalSeconds: z.number().int().min(1),
    jitterSeconds: z.number().int().min(0),
  }),
});

export type PollAnswerBody = z.infer<typeof pollAnswerSchema>;
export type PollTiming = PollAnswerBody['poll'];
