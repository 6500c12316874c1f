import { modelKey } from './types.ts';

/**
 * The versions among `incoming` that are stored with other bytes: `kws@1 (sha256 ab12… here,
 * cd34… now)`. Versions are immutable: a device that installed kws@1 must never be told
 * that kws@1 is something else.
 */
export function rewrittenVersions(stored: ReadonlyMap<string, { sha256: string }>, incoming: Iterable<{ name: string; version: string; sha256: string }>): string[] {
  const rewritten: string[] = [];
  for (const model of incoming) {
    const existing = stored.get(modelKey(model.name, model.version));
    if (existing && existing.sha256 !== model.sha256) {
      rewritten.push(`${model.name}@${model.version} (sha256 ${existing.sha256.slice(0, 12)}… here, ${model.sha256.slice(0, 12)}… now)`);
    }
  }
  return rewritten;
}
