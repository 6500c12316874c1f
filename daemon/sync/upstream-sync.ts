import { readdir, rm } from 'node:fs/promises';
import path from 'node:path';
import type { ScheduledTask } from 'node-cron';
import type { Catalog } from '../catalog/catalog.ts';
import type { LayerContent, ModelRecord } from '../catalog/types.ts';
import type { Config } from '../config/schema.ts';
import { fail, isModelferryError, ModelferryError, type ErrorCode } from '../errors.ts';
import type { Logger } from '../log.ts';
import type { Metrics } from '../metrics.ts';
import type { TrustPolicy } from '../signing/trust.ts';
import type { BlobStore } from '../store/blob-store.ts';
import { diskFullError, type DiskSpace } from '../store/disk-space.ts';
import type { Database, Table } from '../store/database.ts';
import { acceptFormat, inspectProgramFile } from '../store/executorch.ts';
import { BlobFetcher, type BlobToFetch } from './blob-fetcher.ts';
import { CircuitBreaker, type BreakerState } from './circuit-breaker.ts';
import { parseManifest, revisionOf, type Manifest } from './manifest.ts';
import { readBody, UpstreamHttp } from './upstream-http.ts';

export type SyncTrigger = 'start' | 'schedule' | 'request';

export interface SyncOutcome {
  /** updated: a new upstream layer is in place; unchanged: nothing to do; skipped: the breaker is open. */
  result: 'updated' | 'unchanged' | 'failed' | 'skipped';
  trigger: SyncTrigger;
  startedAt: string;
  finishedAt: string;
  /** The upstream manifest's revision, when one was read. */
  revision: string | null;
  models: number | null;
  /** Artifacts downloaded by this run. */
  fetched: number;
  /** Body bytes received from the store by this run (manifest and artifacts). */
  bytes: number;
  error: { code: ErrorCode; message: string } | null;
}

export interface SyncStatus {
  configured: boolean;
  /** The manifest URL, without any credentials it may carry. */
  url: string | null;
  /** none (no upstream), ok, failing, or open (the breaker stops scheduled syncs). */
  state: 'none' | 'ok' | 'failing' | 'open';
  running: boolean;
  breaker: { state: BreakerState; failures: number; openUntil: string | null };
  lastSuccessAt: string | null;
  lastError: { at: string; code: ErrorCode; message: string } | null;
  lastOutcome: SyncOutcome | null;
  /** The revision of the upstream layer devices are served from. */
  revision: string | null;
  bytesFetched: number;
}

/** What is kept between runs and restarts, written only when a sync changed something. */
interface SavedState {
  url: string;
  etag: string | null;
  lastModified: string | null;
  revision: string;
  /** Our own digest of the manifest's content, to tell "changed" from "re-sent". */
  content: string;
  lastSuccessAt: string;
}

interface FetchedManifest {
  manifest: Manifest;
  etag: string | null;
  lastModified: string | null;
}

/** How often one run follows a manifest that changed under it before applying what it has. */
const MAX_ROUNDS = 3;

/**
 * Mirrors the upstream store (DESIGN.md section 4) into the `upstream` layer: at start, on
 * `upstream.schedule`, and on request. A run fetches the manifest conditionally, downloads
 * the artifacts the cache lacks (bounded, resumable, verified) and only then replaces the
 * upstream layer in one batch; a failed run changes nothing devices see. Nothing on the
 * request path waits for a run.
 */
export class UpstreamSync {
  readonly #config: Config;
  readonly #catalog: Catalog;
  readonly #blobs: BlobStore;
  readonly #db: Database;
  readonly #trust: TrustPolicy;
  readonly #metrics: Metrics;
  readonly #disk: DiskSpace;
  readonly #log: Logger;
  readonly #now: () => number;
  readonly #breaker: CircuitBreaker;
  #table: Table<SavedState> | undefined;
  #saved: SavedState | undefined;
  #task: ScheduledTask | undefined;
  #abort = new AbortController();
  #current: Promise<SyncOutcome> | undefined;
  #next: Promise<SyncOutcome> | undefined;
  #lastOutcome: SyncOutcome | null = null;
  #lastSuccessAt: string | null = null;
  #lastError: SyncStatus['lastError'] = null;
  #bytesFetched = 0;

  constructor(
    parts: { config: Config; catalog: Catalog; blobs: BlobStore; database: Database; trust: TrustPolicy; metrics: Metrics; disk: DiskSpace },
    log: Logger,
    now: () => number = Date.now,
  ) {
    this.#config = parts.config;
    this.#catalog = parts.catalog;
    this.#blobs = parts.blobs;
    this.#db = parts.database;
    this.#trust = parts.trust;
    this.#metrics = parts.metrics;
    this.#disk = parts.disk;
    this.#log = log.child({ part: 'sync' });
    this.#now = now;
    const { breakerFailures, breakerCooldownSeconds } = parts.config.upstream;
    this.#breaker = new CircuitBreaker(breakerFailures, breakerCooldownSeconds * 1000);
  }

  get configured(): boolean {
    return this.#config.upstream.url !== null;
  }

  async start(): Promise<void> {
    this.#table = this.#db.table<SavedState>('sync');
    this.#saved = await this.#table.get('state');
    this.#lastSuccessAt = this.#saved?.lastSuccessAt ?? null;
    this.#abort = new AbortController();
    if (!this.configured) return;
    const { schedule, maxRandomDelaySeconds, url } = this.#config.upstream;
    const log = this.#log;
    // Loaded only by gateways with an upstream: most sites have none, and it costs memory.
    const { createTask } = await import('node-cron');
    this.#task = createTask(schedule, () => this.run('schedule'), {
      name: 'upstream-sync',
      noOverlap: true,
      maxRandomDelay: maxRandomDelaySeconds * 1000,
      unref: true,
      logger: {
        info: (message) => log.debug(message),
        warn: (message) => log.warn(message),
        error: (message, err) => log.error({ err: err ?? message }, 'scheduled sync failed'),
        debug: (message) => log.debug({ detail: String(message) }, 'scheduler'),
      },
    });
    await this.#task.start();
    this.#log.info({ url: displayUrl(url!), schedule }, 'upstream sync scheduled');
    void this.run('start');
  }

  async stop(): Promise<void> {
    await this.#task?.destroy();
    this.#task = undefined;
    this.#abort.abort();
    await Promise.allSettled([this.#current, this.#next]);
  }

  /**
   * Runs a sync. A request while one is running waits for it and then runs once more (shared
   * by every request that came meanwhile), so its answer reflects the store as of the request.
   * A scheduled run while one is running is dropped.
   */
  run(trigger: SyncTrigger): Promise<SyncOutcome> {
    if (!this.configured) fail('no_upstream', 'this gateway has no upstream.url configured');
    if (!this.#current) return this.#launch(trigger);
    if (trigger !== 'request') return this.#current;
    this.#next ??= this.#current.then(() => {
      this.#next = undefined;
      return this.#launch(trigger);
    });
    return this.#next;
  }

  status(): SyncStatus {
    const now = this.#now();
    const breaker = this.#breaker.state(now);
    const openUntil = this.#breaker.openUntil;
    const last = this.#lastOutcome;
    return {
      configured: this.configured,
      url: this.configured ? displayUrl(this.#config.upstream.url!) : null,
      state: !this.configured ? 'none' : breaker === 'open' ? 'open' : last?.result === 'failed' ? 'failing' : 'ok',
      running: this.#current !== undefined,
      breaker: { state: breaker, failures: this.#breaker.failures, openUntil: openUntil === null ? null : new Date(openUntil).toISOString() },
      lastSuccessAt: this.#lastSuccessAt,
      lastError: this.#lastError,
      lastOutcome: last,
      revision: this.#saved?.revision ?? null,
      bytesFetched: this.#bytesFetched,
    };
  }

  #launch(trigger: SyncTrigger): Promise<SyncOutcome> {
    const run = this.#runOnce(trigger).finally(() => {
      this.#current = undefined;
    });
    this.#current = run;
    return run;
  }

  async #runOnce(trigger: SyncTrigger): Promise<SyncOutcome> {
    const startedAt = new Date(this.#now()).toISOString();
    const progress = { revision: null as string | null, models: null as number | null, fetched: 0, bytes: 0 };
    const finish = (result: SyncOutcome['result'], error: SyncOutcome['error'] = null): SyncOutcome => {
      const outcome: SyncOutcome = { result, trigger, startedAt, finishedAt: new Date(this.#now()).toISOString(), ...progress, error };
      this.#lastOutcome = outcome;
      this.#metrics.syncRan(result);
      this.#metrics.circuitIs(this.#breaker.state(this.#now()));
      return outcome;
    };
    if (trigger !== 'request' && !this.#breaker.allows(this.#now())) {
      this.#log.debug('sync skipped: the circuit breaker is open');
      return finish('skipped');
    }
    const http = new UpstreamHttp({
      connectMs: this.#config.upstream.connectTimeoutSeconds * 1000,
      headersMs: this.#config.upstream.headersTimeoutSeconds * 1000,
      bodyIdleMs: this.#config.upstream.bodyIdleTimeoutSeconds * 1000,
    }, this.#config.upstream.concurrency);
    const onBytes = (n: number) => {
      progress.bytes += n;
      this.#bytesFetched += n;
      this.#metrics.syncBytes.inc(n);
    };
    try {
      const result = await this.#sync(http, progress, onBytes);
      this.#breaker.success();
      this.#lastSuccessAt = new Date(this.#now()).toISOString();
      const outcome = finish(result);
      this.#log.info({ trigger, result, revision: progress.revision, fetched: progress.fetched, bytes: progress.bytes }, result === 'updated' ? 'upstream sync applied' : 'upstream unchanged');
      return outcome;
    } catch (error) {
      const full = isModelferryError(error) ? undefined : diskFullError(error, 'the sync was writing');
      const known = isModelferryError(error) ? error : full ?? new ModelferryError('internal', `the sync failed unexpectedly: ${(error as Error).message}`);
      if (!isModelferryError(error) && !full) this.#log.error({ err: error }, 'sync failed unexpectedly');
      if (known.code !== 'sync_aborted') this.#breaker.failure(this.#now());
      this.#lastError = { at: new Date(this.#now()).toISOString(), code: known.code, message: known.message };
      this.#log.warn({ trigger, error: known.code, reason: known.message, failures: this.#breaker.failures, breaker: this.#breaker.state(this.#now()) }, 'upstream sync failed; devices keep being served from the cache');
      return finish('failed', { code: known.code, message: known.message });
    } finally {
      http.close();
    }
  }

  async #sync(http: UpstreamHttp, progress: { revision: string | null; models: number | null; fetched: number }, onBytes: (n: number) => void): Promise<'updated' | 'unchanged'> {
    const url = new URL(this.#config.upstream.url!);
    const signal = this.#abort.signal;
    const saved = this.#saved?.url === url.href ? this.#saved : undefined;
    // A conditional request only while every blob of the upstream layer is here: after the
    // cache folder was cleaned, the same manifest must bring the missing blobs back.
    const complete = this.#catalog.layer('upstream').models.every((m) => this.#blobs.storedSize(m.sha256) === m.size);
    const first = await this.#fetchManifest(http, url, complete ? saved : undefined, signal, onBytes);
    if (first === 'unchanged') return 'unchanged';
    let fetched: FetchedManifest = first;
    for (let round = 1; ; round++) {
      const { manifest } = fetched;
      progress.revision = manifest.revision;
      progress.models = manifest.models.length;
      const content = revisionOf(manifest);
      this.#checkModels(manifest);
      const needed = manifest.models.filter((m) => this.#blobs.storedSize(m.sha256) !== m.size);
      if (saved && saved.content === content && needed.length === 0) {
        // The same content sent again (the store lost its ETag, or a new one for old bytes):
        // remember the validators so the next run is a 304, and change nothing else.
        if (saved.etag !== fetched.etag || saved.lastModified !== fetched.lastModified) await this.#save({ ...saved, etag: fetched.etag, lastModified: fetched.lastModified });
        return 'unchanged';
      }
      const release = this.#blobs.hold(manifest.models.map((m) => m.sha256));
      try {
        progress.fetched += await this.#fetchBlobs(http, url, needed, signal, onBytes);
        // A store that changed while the artifacts came in: take the newer manifest, reusing
        // what was downloaded, rather than apply one that is already out of date.
        const again = round < MAX_ROUNDS && (fetched.etag || fetched.lastModified)
          ? await this.#fetchManifest(http, url, { etag: fetched.etag, lastModified: fetched.lastModified }, signal, onBytes)
          : 'unchanged';
        if (again !== 'unchanged') {
          this.#log.info({ revision: manifest.revision, newer: again.manifest.revision }, 'the upstream manifest changed during the sync; syncing the newer one');
          fetched = again;
          continue;
        }
        await this.#catalog.replaceUpstream(await this.#layerOf(manifest));
        await this.#save({ url: url.href, etag: fetched.etag, lastModified: fetched.lastModified, revision: manifest.revision, content, lastSuccessAt: new Date(this.#now()).toISOString() });
      } finally {
        release();
      }
      await this.#dropStalePartials(manifest);
      return 'updated';
    }
  }

  async #fetchManifest(
    http: UpstreamHttp,
    url: URL,
    validators: { etag: string | null; lastModified: string | null } | undefined,
    signal: AbortSignal,
    onBytes: (n: number) => void,
  ): Promise<'unchanged' | FetchedManifest> {
    const headers: Record<string, string> = { Accept: 'application/json', ...this.#authFor(url, url) };
    if (validators?.etag) headers['If-None-Match'] = validators.etag;
    if (validators?.lastModified) headers['If-Modified-Since'] = validators.lastModified;
    const res = await http.get(url, headers, signal);
    if (res.statusCode === 304) {
      res.resume();
      return 'unchanged';
    }
    if (res.statusCode !== 200) {
      res.resume();
      fail('upstream_error', `${displayUrl(url.href)} answered ${res.statusCode} for the manifest`);
    }
    let body: Buffer;
    try {
      body = await readBody(res, this.#config.upstream.maxManifestBytes, 'the manifest');
    } catch (error) {
      throw isModelferryError(error) ? error : new ModelferryError('upstream_unreachable', `the manifest's body broke off: ${(error as Error).message}`);
    }
    onBytes(body.length);
    let parsed: unknown;
    try {
      parsed = JSON.parse(body.toString('utf8'));
    } catch {
      fail('manifest_invalid', `${displayUrl(url.href)} is not JSON`);
    }
    let manifest: Manifest;
    try {
      manifest = parseManifest(parsed);
    } catch (error) {
      fail('manifest_invalid', `the manifest is not valid: ${(error as Error).message}`);
    }
    const header = (name: string) => {
      const value = res.headers[name];
      return typeof value === 'string' && value !== '' ? value : null;
    };
    return { manifest, etag: header('etag'), lastModified: header('last-modified') };
  }

  /** What a push would refuse, a sync refuses too: too big, badly or un-signed under the trust policy. */
  #checkModels(manifest: Manifest): void {
    const maxBytes = this.#config.artifacts.maxBytes;
    for (const model of manifest.models) {
      const what = `${model.name}@${model.version}`;
      if (model.size > maxBytes) fail('manifest_invalid', `${what} is ${model.size} bytes, more than artifacts.maxBytes (${maxBytes})`);
      try {
        this.#trust.check({ name: model.name, version: model.version, sha256: model.sha256, size: model.size }, { signature: model.signature, keyId: model.keyId });
      } catch (error) {
        if (!isModelferryError(error)) throw error;
        fail('manifest_invalid', `${what}: ${error.message}`);
      }
    }
  }

  async #fetchBlobs(http: UpstreamHttp, manifestUrl: URL, needed: Manifest['models'], signal: AbortSignal, onBytes: (n: number) => void): Promise<number> {
    const fetcher = new BlobFetcher(BlobFetcher.partialDirOf(this.#config.paths.cache), http);
    const queue: BlobToFetch[] = [];
    const seen = new Set<string>();
    for (const model of needed) {
      if (seen.has(model.sha256)) continue;
      seen.add(model.sha256);
      let url: URL;
      try {
        url = new URL(model.url, manifestUrl);
      } catch {
        fail('manifest_invalid', `${model.name}@${model.version} has an invalid url ${JSON.stringify(model.url)}`);
      }
      if (url.protocol !== 'http:' && url.protocol !== 'https:') fail('manifest_invalid', `${model.name}@${model.version} has a url that is not http(s): ${url.protocol}`);
      queue.push({ sha256: model.sha256, size: model.size, url });
    }
    // Room for every artifact to fetch (less what partial downloads already hold) must be
    // there beyond the reserve before the first byte is asked for.
    if (queue.length === 0) return 0;
    let need = 0;
    for (const blob of queue) need += blob.size - Math.min(blob.size, await fetcher.partialSize(blob));
    const room = await this.#disk.claim(this.#config.paths.cache, need, `the sync's ${queue.length} artifact${queue.length === 1 ? '' : 's'} to download (${need} bytes)`);
    const counted = (n: number) => {
      onBytes(n);
      room.wrote(n);
    };
    let count = 0;
    let failed: unknown;
    const worker = async () => {
      while (queue.length > 0 && failed === undefined) {
        const blob = queue.shift()!;
        try {
          const file = await fetcher.fetch(blob, this.#authFor(blob.url, manifestUrl), signal, counted);
          await this.#blobs.adopt(file, blob.sha256, blob.size);
          count++;
        } catch (error) {
          failed ??= error;
        }
      }
    };
    try {
      await Promise.all(Array.from({ length: Math.min(this.#config.upstream.concurrency, queue.length) }, worker));
    } finally {
      room.release();
    }
    if (failed !== undefined) throw failed;
    return count;
  }

  /** The upstream layer of a manifest whose artifacts are all in place, format-checked as a push would be. */
  async #layerOf(manifest: Manifest): Promise<LayerContent> {
    const formats = new Map<string, Pick<ModelRecord, 'format' | 'program'>>();
    for (const m of manifest.models) {
      if (formats.has(m.sha256)) continue;
      try {
        formats.set(m.sha256, acceptFormat(await inspectProgramFile(this.#blobs.pathOf(m.sha256), m.size), this.#config.artifacts.formats));
      } catch (error) {
        if (!isModelferryError(error)) throw error;
        fail('artifact_invalid', `${m.name}@${m.version}: ${error.message}`);
      }
    }
    const models: ModelRecord[] = manifest.models.map((m) => ({
      name: m.name,
      version: m.version,
      sha256: m.sha256,
      size: m.size,
      ...formats.get(m.sha256)!,
      signature: m.signature,
      keyId: m.keyId,
      createdAt: m.createdAt,
    }));
    return {
      models,
      assignments: manifest.assignments.map((a) => ({ selector: a.selector, model: a.model, version: a.version, rollout: a.rollout ?? null, updatedAt: manifest.generatedAt })),
      groups: Object.fromEntries(Object.entries(manifest.groups).map(([name, members]) => [name, [...new Set(members)].sort()])),
    };
  }

  async #save(state: SavedState): Promise<void> {
    await this.#table!.put('state', state);
    this.#saved = state;
  }

  /** The bearer token goes to the manifest's own origin only, never to a CDN it points at. */
  #authFor(url: URL, manifestUrl: URL): Record<string, string> {
    const token = this.#config.upstream.token;
    return token && url.origin === manifestUrl.origin ? { Authorization: `Bearer ${token}` } : {};
  }

  /** Partial downloads of artifacts the store no longer names will never be resumed. */
  async #dropStalePartials(manifest: Manifest): Promise<void> {
    const dir = BlobFetcher.partialDirOf(this.#config.paths.cache);
    const wanted = new Set(manifest.models.map((m) => `${m.sha256}.part`));
    const names = await readdir(dir).catch(() => [] as string[]);
    await Promise.all(names.filter((name) => !wanted.has(name)).map((name) => rm(path.join(dir, name), { force: true })));
  }
}

/** A URL as logs and status may show it: no user, password or query (which may hold a key). */
export function displayUrl(href: string): string {
  const url = new URL(href);
  url.username = '';
  url.password = '';
  url.search = '';
  return url.href;
}

