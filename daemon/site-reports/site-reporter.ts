import type { StoreObjects } from '../central-store/store-objects.ts';
import { isModelferryError } from '../errors.ts';
import type { Logger } from '../log.ts';
import { sameSite, type SiteReport } from './site-report.ts';

export interface ReporterOptions {
  /** upstream.report, read at each check (it reloads live). */
  enabled: () => boolean;
  /** The store to write into; opened for each write (credentials and settings may have changed). */
  openStore: () => Promise<StoreObjects>;
  /** The site as of now. */
  report: () => SiteReport;
  /** Subscribes to the end of each sync; returns the unsubscribe. */
  onSync: (listener: () => void) => () => void;
  /** At most one write per this long; the fleet is also compared this often. */
  minIntervalMs: number;
}

export interface ReporterStatus {
  lastWrittenAt: string | null;
  lastError: { at: string; message: string } | null;
  writes: number;
}

/**
 * Writes `gateways/<gateway id>.json` into the central store (site-report.ts): after each
 * sync, so a gateway that stops reporting can be told from one that has nothing to say, and
 * when its fleet changes; never more than once per `minIntervalMs`. A failed write is logged
 * (once per distinct reason) and tried again at the next occasion.
 */
export class SiteReporter {
  readonly #options: ReporterOptions;
  readonly #log: Logger;
  #unsubscribe: (() => void) | undefined;
  #timer: NodeJS.Timeout | undefined;
  #deferred: NodeJS.Timeout | undefined;
  #writing: Promise<void> | undefined;
  #lastWritten: SiteReport | undefined;
  #lastAt = 0;
  #syncPending = false;
  #lastReason: string | undefined;
  readonly #status: ReporterStatus = { lastWrittenAt: null, lastError: null, writes: 0 };

  constructor(options: ReporterOptions, log: Logger) {
    this.#options = options;
    this.#log = log.child({ part: 'site-report' });
  }

  async start(): Promise<void> {
    this.#unsubscribe = this.#options.onSync(() => {
      this.#syncPending = true;
      this.#consider();
    });
    this.#timer = setInterval(() => this.#consider(), this.#options.minIntervalMs);
    this.#timer.unref();
  }

  async stop(): Promise<void> {
    this.#unsubscribe?.();
    clearInterval(this.#timer);
    clearTimeout(this.#deferred);
    this.#deferred = undefined;
    await this.#writing;
  }

  status(): ReporterStatus {
    return { ...this.#status };
  }

  /** Writes now if a sync ended or the fleet changed, unless the last write was too recent (then later). */
  #consider(): void {
    if (!this.#options.enabled() || this.#writing || this.#deferred) return;
    const wait = this.#lastAt + this.#options.minIntervalMs - Date.now();
    if (wait > 0) {
      if (this.#syncPending) {
        this.#deferred = setTimeout(() => {
          this.#deferred = undefined;
          this.#consider();
        }, wait);
        this.#deferred.unref();
      }
      return;
    }
    const report = this.#options.report();
    if (!this.#syncPending && this.#lastWritten && sameSite(report, this.#lastWritten)) return;
    this.#syncPending = false;
    this.#writing = this.#write(report).finally(() => { this.#writing = undefined; });
  }

  async #write(report: SiteReport): Promise<void> {
    this.#lastAt = Date.now();
    try {
      const store = await this.#options.openStore();
      try {
        await store.writeBytes(`gateways/${report.gateway}.json`, Buffer.from(`${JSON.stringify(report)}\n`), { contentType: 'application/json', cacheControl: 'no-cache' });
      } finally {
        store.close();
      }
      this.#lastWritten = report;
      this.#status.lastWrittenAt = report.reportedAt;
      this.#status.lastError = null;
      this.#status.writes++;
      this.#lastReason = undefined;
    } catch (error) {
      const message = isModelferryError(error) ? error.message : (error as Error).message;
      this.#status.lastError = { at: new Date().toISOString(), message };
      // A key without write permission fails every time: said once, not every minute.
      if (message !== this.#lastReason) this.#log.warn({ reason: message }, 'the site report could not be written to the store; retrying at the next sync');
      else this.#log.debug({ reason: message }, 'the site report could not be written to the store');
      this.#lastReason = message;
    }
  }
}
