// What a name in the drop folder is. Names come from readdir, so they never hold a `/`;
// everything a name claims (model, version) is parsed again by the catalog's rules.

export type DropName =
  /** Being written under a temporary name, to be renamed when complete: not ours yet. */
  | { kind: 'temporary' }
  /** A model body: `stem.pte`; `stem` is `name@version` or pairs with `stem.json`. */
  | { kind: 'program'; stem: string }
  /** A sidecar: `stem.json`, metadata for `stem.pte`. */
  | { kind: 'sidecar'; stem: string }
  | { kind: 'other' };

/** The folders the inbox files into; never taken as drops. */
export const FILED = new Set(['accepted', 'rejected']);

/**
 * rsync writes `.name.XXXXXX` and renames; curl, wget and browsers use `.part`, `.tmp`,
 * `.crdownload`; WinSCP `.filepart`; editors `~` and `.swp`. All are renamed (or removed)
 * when complete, so they are waited for, never read.
 */
export function classify(name: string): DropName {
  if (name.startsWith('.') || /(\.(tmp|part|filepart|crdownload|swp)|~)$/i.test(name)) return { kind: 'temporary' };
  if (name.endsWith('.pte') && name.length > '.pte'.length) return { kind: 'program', stem: name.slice(0, -'.pte'.length) };
  if (name.endsWith('.json') && name.length > '.json'.length) return { kind: 'sidecar', stem: name.slice(0, -'.json'.length) };
  return { kind: 'other' };
}

/** `kws@2026.11.24-3` → name and version (unchecked); anything else → undefined. */
export function splitStem(stem: string): { name: string; version: string } | undefined {
  const at = stem.lastIndexOf('@');
  if (at < 1 || at === stem.length - 1) return undefined;
  return { name: stem.slice(0, at), version: stem.slice(at + 1) };
}
