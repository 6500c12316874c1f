import { stat, utimes } from 'node:fs/promises';
import type { Catalog } from '../catalog/catalog.ts';
import type { EffectiveCatalog } from '../catalog/effective-catalog.ts';
import type { Clock } from '../clock.ts';
import type { DeviceRegistry } from '../devices/device-registry.ts';
import type { Logger } from '../log.ts';
import type { Metrics } from '../metrics.ts';
import type { BlobStore } from '../store/blob-store.ts';

export interface CollectorOptions {
  /** How long a blob nothing references stays on disk (fractions allowed). */
  graceHours: number;
  /** How often a collection runs. */
  intervalMinutes: number;
}

/** What the collector reads of the catalog and the devices: references, and what devices run. */
export interface CollectorParts {
  blobs: BlobStore;
  catalog: Pick<Catalog, 'current' | 'layer' | 'onChange'>;
  devices: Pick<DeviceRegistry, 'records'>;
  metrics: Pick<Metrics, 'gcDeleted' | 'gcDeletedBytes'>;
  /** Tests pass their own instead of sleeping through a grace period. */
  clock: Clock;
  log: Logger;
}

export interface Collection {
  removed: Array<{ sha256: string; size: number }>;
  bytes: number;
  /** Unreferenced blobs still within their grace period, or in use. */
  kept: number;
}

/**
 * Garbage collection, a policy over the catalog, the devices and the blob store: decides
 * which blobs are served and which are deleted (docs/central-store.md "Garbage
 * collection"):
 * - served: blobs a model of the effective catalog names, so an artifact whose model was
 *   deleted stops being served at once;
 * - deleted: blobs no model of either layer names and no device reports running, once
 *   unreferenced for `graceHours`, unless a download or a sync holds them;
 * - where: a locally pushed model's blob lives in the local folder; blobs an older layout
 *   kept in the cache folder are moved there at start.
 *
 * When a blob stops being referenced its file's mtime is set to that moment, so the grace
 * period is measured from there and survives restarts.
 */
export class BlobCollector {
  readonly #blobs: BlobStore;
  readonly #catalog: CollectorParts['catalog'];
  readonly #devices: CollectorParts['devices'];
  readonly #metrics: CollectorParts['metrics'];
  readonly #clock: Clock;
  readonly #log: Logger;
  readonly #graceMs: number;
  readonly #intervalMs: number;
  readonly #servedBy = new WeakMap<EffectiveCatalog, Set<string>>();
  #referenced = new Set<string>();
  #unsubscribe: (() => void) | undefined;
  #stopTimer: (() => void) | undefined;
  #running: Promise<unknown> = Promise.resolve();

  constructor(options: CollectorOptions, parts: CollectorParts) {
    this.#blobs = parts.blobs;
    this.#catalog = parts.catalog;
    this.#devices = parts.devices;
    this.#metrics = parts.metrics;
    this.#clock = parts.clock;
    this.#log = parts.log;
    this.#graceMs = options.graceHours * 3_600_000;
    this.#intervalMs = options.intervalMinutes * 60_000;
  }

  async start(): Promise<void> {
    await this.#moveLocalBlobs();
    this.#referenced = this.#referencedNow();
    this.#blobs.serveOnly((sha256) => this.#servedSet(this.#catalog.current).has(sha256));
    this.#unsubscribe = this.#catalog.onChange(() => void this.#serial(() => this.#markUnreferenced()));
    this.#stopTimer = this.#clock.every(this.#intervalMs, () => this.collect().then(() => {}, (error: unknown) => this.#log.error({ err: error }, 'blob collection failed')));
  }

  async stop(): Promise<void> {
    this.#stopTimer?.();
    this.#unsubscribe?.();
    await this.#running;
  }

  /** Deletes every blob that may go now. */
  collect(): Promise<Collection> {
    return this.#serial(async () => {
      const referenced = this.#referencedNow();
      const running = new Set<string>();
      for (const device of this.#devices.records()) if (device.report?.sha256) running.add(device.report.sha256);
      const now = this.#clock.now().getTime();
      const result: Collection = { removed: [], bytes: 0, kept: 0 };
      for (const sha256 of this.#blobs.digests()) {
        if (referenced.has(sha256) || running.has(sha256)) continue;
        if (this.#blobs.isHeld(sha256)) {
          result.kept++;
          continue;
        }
        const since = await stat(this.#blobs.pathOf(sha256)).then((s) => s.mtimeMs, () => undefined);
        // Held while the file was looked at (a push of the same bytes): it stays.
        if ((since !== undefined && now - since < this.#graceMs) || this.#blobs.isHeld(sha256)) {
          result.kept++;
          continue;
        }
        // `referenced` is as old as this collection: a push or sync that finished since may
        // name the blob now. Checked again with no await before the removal unindexes it.
        if (this.#referencedNow().has(sha256)) continue;
        const size = this.#blobs.storedSize(sha256) ?? 0;
        await this.#blobs.remove(sha256);
        result.removed.push({ sha256, size });
        result.bytes += size;
        this.#metrics.gcDeleted.inc();
        this.#metrics.gcDeletedBytes.inc(size);
      }
      if (result.removed.length > 0) this.#log.info({ removed: result.removed.length, bytes: result.bytes }, 'unreferenced blobs deleted');
      return result;
    });
  }

  #serial<T>(work: () => Promise<T>): Promise<T> {
    const run = this.#running.then(work, work);
    this.#running = run.catch(() => {});
    return run;
  }

  #servedSet(catalog: EffectiveCatalog): Set<string> {
    let served = this.#servedBy.get(catalog);
    if (!served) {
      served = new Set([...catalog.models.values()].map((model) => model.sha256));
      this.#servedBy.set(catalog, served);
    }
    return served;
  }

  #referencedNow(): Set<string> {
    const referenced = new Set<string>();
    for (const layer of ['local', 'upstream'] as const) {
      for (const model of this.#catalog.layer(layer).models) referenced.add(model.sha256);
    }
    return referenced;
  }

  /** Starts the grace period of blobs the last catalog change left unreferenced. */
  async #markUnreferenced(): Promise<void> {
    const now = this.#referencedNow();
    const at = this.#clock.now();
    for (const sha256 of this.#referenced) {
      if (now.has(sha256) || this.#blobs.storedSize(sha256) === undefined) continue;
      await utimes(this.#blobs.pathOf(sha256), at, at).catch(() => {});
    }
    this.#referenced = now;
  }

  async #moveLocalBlobs(): Promise<void> {
    let moved = 0;
    for (const model of this.#catalog.layer('local').models) {
      if (this.#blobs.tierOf(model.sha256) !== 'cache') continue;
      await this.#blobs.keepLocally(model.sha256);
      moved++;
    }
    if (moved > 0) this.#log.info({ moved }, 'moved locally pushed blobs out of the cache folder into the state folder');
  }
}
