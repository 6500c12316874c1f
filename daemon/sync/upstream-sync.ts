import type { ScheduledTask } from 'node-cron';
import type { Admission } from '../admission/admission.ts';
import type { Catalog } from '../catalog/catalog.ts';
import type { Clock } from '../clock.ts';
import { fail, isModelferryError, ModelferryError, type ErrorCode } from '../errors.ts';
import type { Logger } from '../log.ts';
import type { Metrics } from '../metrics.ts';
import type { BlobStore } from '../store/blob-store.ts';
import { diskFullError } from '../store/disk-space.ts';
import type { Database } from '../store/database.ts';
import { resolveS3Access, type S3Settings } from '../s3/s3-access.ts';
import { CircuitBreaker, type BreakerState } from './circuit-breaker.ts';
import { startDeadline } from './sync-deadline.ts';
import { displayUrl } from './sync-plan.ts';
import { syncOnce, type RunProgress } from './sync-run.ts';
import { scheduleSync } from './sync-schedule.ts';
import { SyncState } from './sync-state.ts';
import { UpstreamHttp } from './upstream-http.ts';

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

/** The `upstream` settings, as the config names them. */
export interface UpstreamSettings {
  url: string | null;
  token: string | null;
  schedule: string;
  maxRandomDelaySeconds: number;
  concurrency: number;
  connectTimeoutSeconds: number;
  headersTimeoutSeconds: number;
  bodyIdleTimeoutSeconds: number;
  maxManifestBytes: number;
  breakerFailures: number;
  breakerCooldownSeconds: number;
  syncTimeoutSeconds: number;
  s3: S3Settings;
}

export interface SyncOptions {
  /** Read at each run and by status(); a new schedule takes effect when the part starts again. */
  upstream: () => UpstreamSettings;
  /** paths.cache: synced blobs and partial downloads. */
  cacheDir: string;
  /** Where AWS_* variables and $CREDENTIALS_DIRECTORY are read (default: the process's). */
  env?: NodeJS.ProcessEnv;
}

export type OutcomeListener = (outcome: SyncOutcome) => void;

/**
 * Mirrors the upstream store (docs/design.md "Sync") into the `upstream` layer: at start, on
 * `upstream.schedule`, and on request (a run: sync-run.ts). Scheduled runs stop while the
 * circuit breaker is open. Nothing on the request path waits for a run.
 */
export class UpstreamSync {
  readonly #options: SyncOptions;
  readonly #parts: { admission: Admission; catalog: Catalog; blobs: BlobStore; database: Database; metrics: Metrics; clock: Clock };
  readonly #log: Logger;
  readonly #breaker: CircuitBreaker;
  #state: SyncState | undefined;
  #task: ScheduledTask | undefined;
  #abort = new AbortController();
  #current: Promise<SyncOutcome> | undefined;
  #next: Promise<SyncOutcome> | undefined;
  #lastOutcome: SyncOutcome | null = null;
  #lastSuccessAt: string | null = null;
  #lastError: SyncStatus['lastError'] = null;
  #bytesFetched = 0;
  readonly #listeners = new Set<OutcomeListener>();

  constructor(options: SyncOptions, parts: { admission: Admission; catalog: Catalog; blobs: BlobStore; database: Database; metrics: Metrics; clock: Clock; log: Logger }) {
    this.#options = options;
    this.#parts = parts;
    this.#log = parts.log.child({ part: 'sync' });
    const { breakerFailures, breakerCooldownSeconds } = options.upstream();
    this.#breaker = new CircuitBreaker(breakerFailures, breakerCooldownSeconds * 1000);
  }

  get configured(): boolean {
    return this.#options.upstream().url !== null;
  }

  async start(): Promise<void> {
    this.#state = await SyncState.load(this.#parts.database);
    this.#lastSuccessAt = this.#state.saved?.lastSuccessAt ?? null;
    this.#abort = new AbortController();
    const upstream = this.#options.upstream();
    if (upstream.url === null) return;
    this.#task = await scheduleSync(upstream, () => this.run('schedule'), this.#log);
    this.#log.info({ url: displayUrl(upstream.url), schedule: upstream.schedule }, 'upstream sync scheduled');
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

  /** The time between two scheduled runs, from the schedule (null: none scheduled). */
  periodSeconds(): number | null {
    const [next, after] = this.#task?.getNextRuns(2) ?? [];
    return next && after ? Math.round((after.getTime() - next.getTime()) / 1000) : null;
  }

  /** Calls `listener` with the outcome of every run that ends from now on; returns the unsubscribe. */
  onOutcome(listener: OutcomeListener): () => void {
    this.#listeners.add(listener);
    return () => this.#listeners.delete(listener);
  }

  status(): SyncStatus {
    const now = this.#now();
    const breaker = this.#breaker.state(now);
    const openUntil = this.#breaker.openUntil;
    const last = this.#lastOutcome;
    const url = this.#options.upstream().url;
    return {
      configured: url !== null,
      url: url === null ? null : displayUrl(url),
      state: url === null ? 'none' : breaker === 'open' ? 'open' : last?.result === 'failed' ? 'failing' : 'ok',
      running: this.#current !== undefined,
      breaker: { state: breaker, failures: this.#breaker.failures, openUntil: openUntil === null ? null : new Date(openUntil).toISOString() },
      lastSuccessAt: this.#lastSuccessAt,
      lastError: this.#lastError,
      lastOutcome: last,
      revision: this.#state?.saved?.revision ?? null,
      bytesFetched: this.#bytesFetched,
    };
  }

  #now(): number {
    return this.#parts.clock.now().getTime();
  }

  #launch(trigger: SyncTrigger): Promise<SyncOutcome> {
    const run = this.#runOnce(trigger).finally(() => {
      this.#current = undefined;
    });
    this.#current = run;
    return run;
  }

  async #runOnce(trigger: SyncTrigger): Promise<SyncOutcome> {
    const { metrics } = this.#parts;
    const startedAt = new Date(this.#now()).toISOString();
    const progress: RunProgress & { bytes: number } = { revision: null, models: null, fetched: 0, bytes: 0 };
    const finish = (result: SyncOutcome['result'], error: SyncOutcome['error'] = null): SyncOutcome => {
      const outcome: SyncOutcome = { result, trigger, startedAt, finishedAt: new Date(this.#now()).toISOString(), ...progress, error };
      this.#lastOutcome = outcome;
      metrics.syncRan(result, new Date(this.#now()));
      metrics.circuitIs(this.#breaker.state(this.#now()));
      for (const listener of this.#listeners) listener(outcome);
      return outcome;
    };
    if (trigger !== 'request' && !this.#breaker.allows(this.#now())) {
      this.#log.debug('sync skipped: the circuit breaker is open');
      return finish('skipped');
    }
    const upstream = this.#options.upstream();
    const url = new URL(upstream.url!);
    const deadline = startDeadline(upstream.syncTimeoutSeconds);
    let http: UpstreamHttp | undefined;
    const onBytes = (n: number) => {
      progress.bytes += n;
      this.#bytesFetched += n;
      metrics.syncBytes.inc(n);
    };
    try {
      const s3 = url.protocol === 's3:' ? { access: await resolveS3Access(upstream.s3, this.#options.env), now: () => this.#parts.clock.now() } : undefined;
      http = new UpstreamHttp({
        connectMs: upstream.connectTimeoutSeconds * 1000,
        headersMs: upstream.headersTimeoutSeconds * 1000,
        bodyIdleMs: upstream.bodyIdleTimeoutSeconds * 1000,
      }, upstream.concurrency, s3);
      const result = await syncOnce(
        {
          url, token: upstream.token, concurrency: upstream.concurrency, maxManifestBytes: upstream.maxManifestBytes, cacheDir: this.#options.cacheDir,
          onPlannedBytes: (bytes) => deadline.allowFor(bytes),
        },
        { ...this.#parts, state: this.#state!, http, log: this.#log },
        AbortSignal.any([this.#abort.signal, deadline.signal]),
        progress,
        onBytes,
      );
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
      deadline.clear();
      http?.close();
    }
  }
}
