import type { LayerContent, ModelRecord } from '../catalog/types.ts';
import { fail } from '../errors.ts';
import type { BlobToFetch } from './blob-fetcher.ts';
import type { Manifest } from './manifest.ts';

// What a sync decides, apart from what it does: which manifest request to send, which
// artifacts to fetch and from where, whether a manifest brings anything new, what the
// upstream layer becomes. Everything here is a function of its arguments.

/** The validators of a manifest response, for the next conditional request. */
export interface Validators {
  etag: string | null;
  lastModified: string | null;
}

/** What is kept between runs and restarts, written only when a sync changed something. */
export interface SavedState extends Validators {
  url: string;
  revision: string;
  /** Our own digest of the manifest's content, to tell "changed" from "re-sent". */
  content: string;
  lastSuccessAt: string;
}

/** How often one run follows a manifest that changed under it before applying what it has. */
export const MAX_ROUNDS = 3;

/** Reports whether a blob is stored: its size, or undefined. */
export type StoredSize = (sha256: string) => number | undefined;

/**
 * The validators for the first manifest request of a run: the saved ones for this URL, but
 * only while every blob of the upstream layer is here. After the cache folder was cleaned,
 * the same manifest must come again and bring the missing blobs back.
 */
export function firstValidators(saved: SavedState | undefined, layer: readonly ModelRecord[], stored: StoredSize): Validators | undefined {
  return saved && layer.every((model) => stored(model.sha256) === model.size) ? saved : undefined;
}

/** The manifest's models whose blob is not here at the size the manifest names. */
export function missingModels(manifest: Manifest, stored: StoredSize): Manifest['models'] {
  return manifest.models.filter((model) => stored(model.sha256) !== model.size);
}

/**
 * The same content sent again (the store lost its ETag, or sent a new one for old bytes)
 * with nothing missing: nothing to apply. The validators to remember, when they changed.
 */
export function resent(saved: SavedState | undefined, content: string, missing: number, fetched: Validators): { remember: SavedState | null } | null {
  if (!saved || saved.content !== content || missing > 0) return null;
  const same = saved.etag === fetched.etag && saved.lastModified === fetched.lastModified;
  return { remember: same ? null : { ...saved, etag: fetched.etag, lastModified: fetched.lastModified } };
}

/** Whether a round checks the manifest again before applying (a store with validators only). */
export function followsChanges(round: number, fetched: Validators): boolean {
  return round < MAX_ROUNDS && (fetched.etag !== null || fetched.lastModified !== null);
}

/** The downloads for the missing models: one per blob, at its URL resolved against the manifest's. */
export function artifactsToFetch(missing: Manifest['models'], manifestUrl: URL): BlobToFetch[] {
  const queue: BlobToFetch[] = [];
  const seen = new Set<string>();
  for (const model of missing) {
    if (seen.has(model.sha256)) continue;
    seen.add(model.sha256);
    let url: URL;
    try {
      url = new URL(model.url, manifestUrl);
    } catch {
      fail('manifest_invalid', `${model.name}@${model.version} has an invalid url ${JSON.stringify(model.url)}`);
    }
    if (url.protocol === 's3:' ? url.host !== manifestUrl.host || manifestUrl.protocol !== 's3:' : url.protocol !== 'http:' && url.protocol !== 'https:') {
      fail('manifest_invalid', `${model.name}@${model.version} has a url that is neither http(s) nor in the manifest's own bucket: ${url.href}`);
    }
    queue.push({ sha256: model.sha256, size: model.size, url });
  }
  return queue;
}

/** Bytes still to download: each artifact less what its partial download already holds. */
export function bytesToFetch(queue: readonly BlobToFetch[], partial: readonly number[]): number {
  let need = 0;
  queue.forEach((blob, index) => { need += blob.size - Math.min(blob.size, partial[index] ?? 0); });
  return need;
}

/**
 * The bearer token goes to the manifest's own origin only, never to a CDN it points at. An
 * s3:// address is signed instead, request by request (upstream-http.ts).
 */
export function authFor(url: URL, manifestUrl: URL, token: string | null): Record<string, string> {
  return token && url.protocol !== 's3:' && url.origin === manifestUrl.origin ? { Authorization: `Bearer ${token}` } : {};
}

/** Partial downloads of artifacts the store no longer names: they will never be resumed. */
export function stalePartials(names: readonly string[], models: readonly { sha256: string }[]): string[] {
  const wanted = new Set(models.map((m) => `${m.sha256}.part`));
  return names.filter((name) => !wanted.has(name));
}

/** The upstream layer of a manifest, from the records admission made of its models. */
export function upstreamLayer(manifest: Manifest, models: ModelRecord[]): LayerContent {
  return {
    models,
    assignments: manifest.assignments.map((a) => ({ selector: a.selector, model: a.model, version: a.version, rollout: a.rollout ?? null, updatedAt: manifest.generatedAt })),
    groups: Object.fromEntries(Object.entries(manifest.groups).map(([name, members]) => [name, [...new Set(members)].sort()])),
  };
}

/** A URL as logs and status may show it: no user, password or query (which may hold a key). */
export function displayUrl(href: string): string {
  const url = new URL(href);
  url.username = '';
  url.password = '';
  url.search = '';
  return url.href;
}
