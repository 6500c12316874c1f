import { z } from 'zod';

/** Sidecars are a few lines; anything bigger is not one. */
export const SIDECAR_MAX_BYTES = 64 * 1024;

/**
 * `stem.json` next to `stem.pte` (docs/design.md "Drop folder"), plus an optional `sha256` so a
 * pipeline that copies in place can make a truncated copy impossible to accept. Unknown
 * fields are refused by name: a misspelt `asign` must not silently assign nothing.
 */
export const sidecarSchema = z.strictObject({
  name: z.string(),
  version: z.string(),
  assign: z.string().optional(),
  signature: z.string().optional(),
  keyId: z.string().optional(),
  signatureSeq: z.string().optional(),
  sha256: z.string().regex(/^[0-9a-f]{64}$/, 'must be 64 lower-case hex characters').optional(),
});

export type Sidecar = z.infer<typeof sidecarSchema>;

/** Parses sidecar text; the error message is a sentence about the file. */
export function parseSidecar(text: string): Sidecar {
  let value: unknown;
  try {
    value = JSON.parse(text);
  } catch (error) {
    throw new Error(`it is not JSON (${(error as Error).message}); a sidecar looks like {"name": "kws", "version": "2026.11.24-3", "assign": "default"}`);
  }
  const result = sidecarSchema.safeParse(value);
  if (!result.success) {
    const issue = result.error.issues[0]!;
    if (issue.code === 'unrecognized_keys') {
      throw new Error(`it has ${issue.keys.length > 1 ? 'fields' : 'a field'} the gateway does not know: ${issue.keys.map((k) => JSON.stringify(k)).join(', ')}; known fields are name, version, assign, signature, keyId, signatureSeq, sha256`);
    }
    const field = issue.path.length > 0 ? issue.path.join('.') : 'the file';
    throw new Error(`${field}: ${issue.message}; a sidecar looks like {"name": "kws", "version": "2026.11.24-3", "assign": "default"}`);
  }
  return result.data;
}
