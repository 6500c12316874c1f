import { randomUUID } from 'node:crypto';
import { open, readdir, rename, rm, stat, utimes, type FileHandle } from 'node:fs/promises';
import path from 'node:path';
import type { Clock } from '../clock.ts';
import type { Logger } from '../log.ts';
import { makeDirectory } from '../make-directory.ts';
import type { Metrics } from '../metrics.ts';
import type { BlobStore } from '../store/blob-store.ts';
import type { DiskSpace } from '../store/disk-space.ts';
import { runDeltaJob } from './run-delta-job.ts';

/** A delta this gateway holds: it makes the blob `to` from the blob `from`. */
export interface DeltaOffer {
  from: string;
  to: string;
  /** The delta's own bytes and digest. */
  size: number;
  sha256: string;
}

/** What a poll may offer for a pair: the delta, one being made, or nothing (full download). */
export type DeltaState = DeltaOffer | 'pending' | null;

export interface DeltaSettings {
  /** `<paths.cache>/deltas`: deltas can always be made again, so they live with the cache. */
  dir: string;
  /** cache.deltaBytes, read at each use (it reloads live); 0 turns deltas off. */
  maxBytes: () => number;
  /** deltas.maxShare: a delta is offered only when smaller than this share of the full size. */
  maxShare: () => number;
}

export interface DeltaParts {
  blobs: BlobStore;
  disk: DiskSpace;
  metrics: Pick<Metrics, 'deltasMade'>;
  clock: Clock;
  log: Logger;
}

/** Why a pair has no delta, remembered so that it is not made again at every poll. */
type Outcome =
  | { kind: 'pending' }
  /** Made, but not worth offering (over the share, or over the whole cache): its size. */
  | { kind: 'too_large'; size: number }
  | { kind: 'failed'; at: number };

interface Entry extends DeltaOffer {
  lastUsed: number;
  /** Responses reading it: it is not evicted meanwhile. */
  readers: number;
}

/** An open delta for one response; `release` when the response is over. */
export interface DeltaReader {
  file: FileHandle;
  delta: DeltaOffer;
  release(): void;
}

/** A job whose delta failed is tried again after this long (a blob moved, the disk was full). */
const RETRY_FAILED_MS = 10 * 60_000;
/** A job still running after this long is stopped (a 3 MiB model takes seconds, even on a Pi). */
const JOB_TIMEOUT_MS = 10 * 60_000;
/** Pairs remembered without a delta at most; the oldest are forgotten first. */
const OUTCOMES_MAX = 10_000;

const NAME = /^([0-9a-f]{64})-([0-9a-f]{64})\.([0-9a-f]{64})$/;

/**
 * The deltas between blobs (docs/design.md "Deltas"): made when a poll first wants one (or
 * when a catalog change makes devices want one), one at a time in a process of their own,
 * kept on disk under `cache.deltaBytes` with the least recently used dropped first, and
 * dropped with the blobs they come from or make. Nothing here blocks: a poll asks `offer()`,
 * which answers from memory, and a delta that is not ready yet is 'pending'.
 *
 * Files are named `<from>-<to>.<sha256 of the delta>`: written to a temporary name, fsynced
 * and renamed, so a file under its name is whole, and its name says all the index needs.
 */
export class DeltaStore {
  readonly #settings: DeltaSettings;
  readonly #parts: DeltaParts;
  readonly #entries = new Map<string, Entry>();
  readonly #outcomes = new Map<string, Outcome>();
  readonly #queue: Array<{ from: string; to: string }> = [];
  readonly #listeners = new Set<() => void>();
  readonly #stopping = new AbortController();
  #bytes = 0;
  #working: Promise<void> | undefined;
  #unsubscribe: (() => void) | undefined;

  constructor(settings: DeltaSettings, parts: DeltaParts) {
    this.#settings = settings;
    this.#parts = parts;
  }

  async start(): Promise<void> {
    // The folder is made with the first delta: a gateway that never makes one leaves the
    // cache folder to its blobs.
    await rm(path.join(this.#settings.dir, 'tmp'), { recursive: true, force: true });
    for (const name of await readdir(this.#settings.dir).catch(() => [] as string[])) {
      const match = NAME.exec(name);
      if (!match) continue;
      const file = path.join(this.#settings.dir, name);
      const { size, mtimeMs } = await stat(file);
      this.#entries.set(keyOf(match[1]!, match[2]!), { from: match[1]!, to: match[2]!, sha256: match[3]!, size, lastUsed: mtimeMs, readers: 0 });
      this.#bytes += size;
    }
    await this.#dropGone();
    await this.#evict();
    this.#unsubscribe = this.#parts.blobs.onChange(() => void this.#dropGone().catch((error: unknown) => this.#parts.log.error({ err: error }, 'could not drop deltas of removed blobs')));
  }

  async stop(): Promise<void> {
    this.#unsubscribe?.();
    this.#queue.length = 0;
    this.#stopping.abort();
    await this.#working;
    this.#listeners.clear();
  }

  /** Called when a delta becomes ready, or a pair turns out to have none worth offering. */
  onChange(listener: () => void): () => void {
    this.#listeners.add(listener);
    return () => this.#listeners.delete(listener);
  }

  /**
   * The delta from the blob a device runs to the one it is assigned, when one is worth it;
   * 'pending' while it is being made (a first call starts it); null when there is none: deltas
   * are off, a blob is missing, or it is no smaller than `deltas.maxShare` of the full size.
   */
  offer(from: string, to: string): DeltaState {
    const { blobs } = this.#parts;
    const full = blobs.size(to);
    if (from === to || this.#settings.maxBytes() === 0 || full === undefined || blobs.storedSize(from) === undefined) return null;
    const key = keyOf(from, to);
    const limit = this.#settings.maxShare() * full;
    const entry = this.#entries.get(key);
    if (entry) {
      entry.lastUsed = this.#parts.clock.now().getTime();
      return entry.size < limit ? offerOf(entry) : null;
    }
    const known = this.#outcomes.get(key);
    if (known?.kind === 'pending') return 'pending';
    // A delta too large before may be worth it under a share or cache raised since.
    if (known?.kind === 'too_large' && (known.size >= limit || known.size > this.#settings.maxBytes())) return null;
    if (known?.kind === 'failed' && this.#parts.clock.now().getTime() - known.at < RETRY_FAILED_MS) return null;
    this.#remember(key, { kind: 'pending' });
    this.#queue.push({ from, to });
    this.#working ??= this.#work();
    return 'pending';
  }

  /** Opens a delta for one response (it stays on disk until released); undefined when there is none. */
  async open(from: string, to: string): Promise<DeltaReader | undefined> {
    const entry = this.#entries.get(keyOf(from, to));
    if (!entry || this.#parts.blobs.size(to) === undefined) return undefined;
    entry.readers++;
    entry.lastUsed = this.#parts.clock.now().getTime();
    let released = false;
    const release = () => {
      if (released) return;
      released = true;
      entry.readers--;
    };
    const file = await open(this.#pathOf(entry)).catch(() => undefined);
    if (!file) {
      release();
      return undefined;
    }
    // Kept across a restart: the least recently used goes first then too.
    const at = new Date(entry.lastUsed);
    void utimes(this.#pathOf(entry), at, at).catch(() => {});
    return { file, delta: offerOf(entry), release };
  }

  /**
   * cache.deltaBytes or deltas.maxShare changed (a live reload): deltas over a lowered bound
   * go, and answers are worked out again (a delta not worth it before may be now).
   */
  async reconfigured(): Promise<void> {
    await this.#evict();
    this.#changed();
  }

  /** For /healthz and the metrics. */
  status(): { count: number; bytes: number; queued: number } {
    return { count: this.#entries.size, bytes: this.#bytes, queued: this.#queue.length };
  }

  async #work(): Promise<void> {
    try {
      for (let job = this.#queue.shift(); job && !this.#stopping.signal.aborted; job = this.#queue.shift()) {
        await this.#make(job.from, job.to);
        this.#changed();
      }
    } finally {
      this.#working = undefined;
    }
  }

  async #make(from: string, to: string): Promise<void> {
    const { blobs, disk, metrics, log } = this.#parts;
    const key = keyOf(from, to);
    const full = blobs.storedSize(to);
    const source = blobs.storedSize(from);
    if (full === undefined || source === undefined) {
      this.#outcomes.delete(key);
      return;
    }
    const release = blobs.hold([from, to]);
    const temp = path.join(this.#settings.dir, 'tmp', `${randomUUID()}.part`);
    const started = Date.now();
    let claim;
    try {
      await makeDirectory(path.dirname(temp));
      // A delta is at most a few bytes over the full size (all of it inserted).
      claim = await disk.claim(this.#settings.dir, full + 1024, 'a delta');
      const maxShare = this.#settings.maxShare();
      const made = await runDeltaJob(blobs.pathOf(from), blobs.pathOf(to), temp, source + full, maxShare, JOB_TIMEOUT_MS, this.#stopping.signal);
      const cost = { ms: Date.now() - started, cpuMs: made.cpuMs, maxRssBytes: made.maxRssBytes };
      if ('estimate' in made) {
        // Most of the model is new (a retrain): not worth the seconds a delta would take.
        log.info({ from, to, full, share: made.estimate, ...cost }, 'delta not made: most of the model is new');
        metrics.deltasMade.inc({ outcome: 'too_large' });
        this.#remember(key, { kind: 'too_large', size: Math.round(made.estimate * full) });
        return;
      }
      const worth = made.size < maxShare * full && made.size <= this.#settings.maxBytes();
      log.info({ from, to, size: made.size, full, share: Number((made.size / full).toFixed(3)), offered: worth, ...cost }, worth ? 'delta made' : 'delta made, not worth offering');
      metrics.deltasMade.inc({ outcome: worth ? 'offered' : 'too_large' });
      if (!worth) {
        this.#remember(key, { kind: 'too_large', size: made.size });
        return;
      }
      const entry: Entry = { from, to, sha256: made.sha256, size: made.size, lastUsed: this.#parts.clock.now().getTime(), readers: 0 };
      await rename(temp, this.#pathOf(entry));
      this.#outcomes.delete(key);
      // The blobs may have gone while it was made.
      if (blobs.storedSize(from) === undefined || blobs.storedSize(to) === undefined) {
        await rm(this.#pathOf(entry), { force: true });
        return;
      }
      this.#entries.set(key, entry);
      this.#bytes += entry.size;
      await this.#evict();
    } catch (error) {
      if (this.#stopping.signal.aborted) return;
      log.warn({ err: error, from, to }, 'could not make a delta; devices download the full artifact');
      metrics.deltasMade.inc({ outcome: 'failed' });
      this.#remember(key, { kind: 'failed', at: this.#parts.clock.now().getTime() });
    } finally {
      await rm(temp, { force: true });
      claim?.release();
      release();
    }
  }

  #remember(key: string, outcome: Outcome): void {
    this.#outcomes.delete(key);
    if (this.#outcomes.size >= OUTCOMES_MAX) this.#outcomes.delete(this.#outcomes.keys().next().value!);
    this.#outcomes.set(key, outcome);
  }

  /** Least recently used first, down to cache.deltaBytes; deltas being sent stay. */
  async #evict(): Promise<void> {
    const limit = this.#settings.maxBytes();
    if (this.#bytes <= limit) return;
    const byUse = [...this.#entries.values()].filter((entry) => entry.readers === 0).sort((a, b) => a.lastUsed - b.lastUsed);
    for (const entry of byUse) {
      if (this.#bytes <= limit) break;
      await this.#remove(entry);
    }
  }

  /** Deltas go with the blobs they come from or make (garbage collection, a corrupt blob). */
  async #dropGone(): Promise<void> {
    const { blobs } = this.#parts;
    const gone = (sha256: string) => blobs.storedSize(sha256) === undefined;
    for (const entry of [...this.#entries.values()]) {
      if (gone(entry.from) || gone(entry.to)) await this.#remove(entry);
    }
    for (const key of [...this.#outcomes.keys()]) {
      const [from, to] = key.split('-') as [string, string];
      if (gone(from) || gone(to)) this.#outcomes.delete(key);
    }
  }

  async #remove(entry: Entry): Promise<void> {
    if (this.#entries.get(keyOf(entry.from, entry.to)) !== entry) return;
    this.#entries.delete(keyOf(entry.from, entry.to));
    this.#bytes -= entry.size;
    // A response still reading it keeps its open file; the name goes now.
    await rm(this.#pathOf(entry), { force: true });
    this.#changed();
  }

  #pathOf(delta: DeltaOffer): string {
    return path.join(this.#settings.dir, `${delta.from}-${delta.to}.${delta.sha256}`);
  }

  #changed(): void {
    for (const listener of this.#listeners) listener();
  }
}

function keyOf(from: string, to: string): string {
  return `${from}-${to}`;
}

function offerOf(entry: DeltaOffer): DeltaOffer {
  return { from: entry.from, to: entry.to, size: entry.size, sha256: entry.sha256 };
}
