import { readdir, rm } from 'node:fs/promises';
import path from 'node:path';
import type { Admission } from '../admission/admission.ts';
import type { Candidate, WayIn } from '../admission/way-in.ts';
import type { Catalog } from '../catalog/catalog.ts';
import type { Clock } from '../clock.ts';
import { rewrittenVersions } from '../catalog/immutable-versions.ts';
import { fail, ModelferryError } from '../errors.ts';
import type { Logger } from '../log.ts';
import type { BlobStore } from '../store/blob-store.ts';
import { BlobFetcher, type BlobToFetch } from './blob-fetcher.ts';
import { fetchManifest, type FetchedManifest } from './manifest-source.ts';
import { revisionOf, type ManifestModel } from './manifest.ts';
import {
  artifactsToFetch, authFor, bytesToFetch, firstValidators, followsChanges, missingModels, resent, stalePartials, upstreamLayer,
  type SavedState, type Validators,
} from './sync-plan.ts';
import type { SyncState } from './sync-state.ts';
import type { UpstreamHttp } from './upstream-http.ts';
import { inPool } from './worker-pool.ts';

/** What one run reads of the upstream settings, as they are when it starts. */
export interface RunSettings {
  url: URL;
  token: string | null;
  concurrency: number;
  maxManifestBytes: number;
  /** paths.cache: synced blobs and partial downloads. */
  cacheDir: string;
  /** Called once the run knows the bytes it must download (its deadline grows with them). */
  onPlannedBytes(bytes: number): void;
}

export interface RunParts {
  admission: Admission;
  catalog: Pick<Catalog, 'current' | 'layer' | 'replaceUpstream'>;
  blobs: Pick<BlobStore, 'storedSize' | 'adopt' | 'pathOf'>;
  state: SyncState;
  http: UpstreamHttp;
  clock: Clock;
  log: Logger;
}

/** What a run got to, for its outcome: also when it fails. */
export interface RunProgress {
  revision: string | null;
  models: number | null;
  /** Artifacts downloaded. */
  fetched: number;
}

/** How one round of a run ended. */
type RoundEnd = { kind: 'updated' } | { kind: 'unchanged' } | { kind: 'newer'; next: FetchedManifest };

/**
 * One sync run: fetches the manifest conditionally, then admits its models the way every
 * model enters the catalog. The bytes the cache lacks come from the store, and the upstream
 * layer is replaced in one batch once every model passed; a run that fails changes nothing
 * devices see. A manifest that changed while the artifacts came in is followed (a new
 * round, reusing what was downloaded) rather than applied out of date.
 */
export async function syncOnce(settings: RunSettings, parts: RunParts, signal: AbortSignal, progress: RunProgress, onBytes: (n: number) => void): Promise<'updated' | 'unchanged'> {
  const { url } = settings;
  const saved = parts.state.saved?.url === url.href ? parts.state.saved : undefined;
  const manifest = (validators: Validators | undefined) => fetchManifest(parts.http, url, {
    validators,
    headers: authFor(url, url, settings.token),
    maxBytes: settings.maxManifestBytes,
  }, signal, onBytes);
  const first = await manifest(firstValidators(saved, parts.catalog.layer('upstream').models, (sha256) => parts.blobs.storedSize(sha256)));
  if (first === 'unchanged') return 'unchanged';
  let fetched = first;
  for (let round = 1; ; round++) {
    progress.revision = fetched.manifest.revision;
    progress.models = fetched.manifest.models.length;
    const way = roundOf({ settings, parts, signal, progress, onBytes, saved, fetched, round, manifest });
    const end = await parts.admission.admit(fetched.manifest.models.map(candidateOf), way);
    if (end.kind === 'unchanged') return 'unchanged';
    if (end.kind === 'newer') {
      parts.log.info({ revision: fetched.manifest.revision, newer: end.next.manifest.revision }, 'the upstream manifest changed during the sync; syncing the newer one');
      fetched = end.next;
      continue;
    }
    await dropStalePartials(settings.cacheDir, fetched.manifest.models);
    return 'updated';
  }
}

interface Round {
  settings: RunSettings;
  parts: RunParts;
  signal: AbortSignal;
  progress: RunProgress;
  onBytes: (n: number) => void;
  saved: SavedState | undefined;
  fetched: FetchedManifest;
  round: number;
  manifest: (validators: Validators) => Promise<'unchanged' | FetchedManifest>;
}

/** A manifest's models as the way in of a sync: their bytes come from the store unless cached. */
function roundOf({ settings, parts, signal, progress, onBytes, saved, fetched, round, manifest: refetch }: Round): WayIn<RoundEnd> {
  const { url, token, cacheDir } = settings;
  const { blobs, state } = parts;
  const { manifest } = fetched;
  const content = revisionOf(manifest);
  const fetcher = new BlobFetcher(BlobFetcher.partialDirOf(cacheDir), parts.http);
  let queue: BlobToFetch[] = [];
  return {
    digests: 'address',
    writing: 'the sync was writing',
    replaces: 'upstream',
    // What a push would refuse, a sync refuses too, as a fault of the store: the manifest
    // names a model that may not enter, or an artifact is not what its entry says.
    refusal: (error, candidate, stage) => new ModelferryError(stage === 'before bytes' ? 'manifest_invalid' : 'artifact_invalid', `${candidate.name}@${candidate.version}: ${error.message}`),
    async plan() {
      const rewritten = rewrittenVersions(parts.catalog.current.models, manifest.models);
      if (rewritten.length > 0) {
        fail('manifest_invalid', `the store's manifest changes the bytes of ${rewritten.slice(0, 5).join(', ')}${rewritten.length > 5 ? ` and ${rewritten.length - 5} more` : ''}; versions are immutable, so nothing of it was applied: publish a new version instead`);
      }
      const missing = missingModels(manifest, (sha256) => blobs.storedSize(sha256));
      const again = resent(saved, content, missing.length, fetched);
      if (again) {
        // Remembered so that the next run is a 304.
        if (again.remember) await state.save(again.remember);
        return { done: { kind: 'unchanged' } };
      }
      queue = artifactsToFetch(missing, url);
      if (queue.length === 0) return null;
      const need = bytesToFetch(queue, await Promise.all(queue.map((blob) => fetcher.partialSize(blob))));
      settings.onPlannedBytes(need);
      return { dir: cacheDir, bytes: need, what: `the sync's ${queue.length} artifact${queue.length === 1 ? '' : 's'} to download (${need} bytes)` };
    },
    async bring({ room }) {
      const counted = (n: number) => {
        onBytes(n);
        room?.wrote(n);
      };
      progress.fetched += await inPool(queue, settings.concurrency, async (blob) => {
        const file = await fetcher.fetch(blob, authFor(blob.url, url, token), signal, counted);
        await blobs.adopt(file, blob.sha256, blob.size);
      });
      const newer = followsChanges(round, fetched) ? await refetch(fetched) : 'unchanged';
      if (newer !== 'unchanged') return { done: { kind: 'newer', next: newer } };
      return manifest.models.map((model) => ({ sha256: model.sha256, size: model.size, path: blobs.pathOf(model.sha256) }));
    },
    async enter(admitted) {
      await parts.catalog.replaceUpstream(upstreamLayer(manifest, admitted.map(({ record }) => record)));
      await state.save({ url: url.href, etag: fetched.etag, lastModified: fetched.lastModified, revision: manifest.revision, content, lastSuccessAt: parts.clock.now().toISOString() });
      return { kind: 'updated' };
    },
  };
}

function candidateOf(model: ManifestModel): Candidate {
  return {
    name: model.name,
    version: model.version,
    sha256: model.sha256,
    size: model.size,
    claim: { signature: model.signature, keyId: model.keyId, seq: model.signatureSeq },
    createdAt: model.createdAt,
  };
}

async function dropStalePartials(cacheDir: string, models: readonly ManifestModel[]): Promise<void> {
  const dir = BlobFetcher.partialDirOf(cacheDir);
  const names = await readdir(dir).catch(() => [] as string[]);
  await Promise.all(stalePartials(names, models).map((name) => rm(path.join(dir, name), { force: true })));
}
