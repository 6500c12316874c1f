import path from 'node:path';
import { watch, type FSWatcher } from 'chokidar';
import type { Logger } from '../log.ts';
import { ConfigError } from '../errors.ts';
import type { LoadedConfig } from './load.ts';
import type { Config } from './schema.ts';

/**
 * Keys that take effect while the gateway runs. Everything else (listen address, folders,
 * mDNS, the inbox folder, flush timing) is read once at start: a change is reported as
 * needing a restart and the running value stays.
 */
export const LIVE_KEYS: ReadonlySet<string> = new Set([
  'auth.tokens',
  'devices.token',
  'devices.maxWaitSeconds',
  'devices.pollIntervalSeconds',
  'devices.pollJitterSeconds',
  'trust.keys',
  'trust.requireSignatures',
  'artifacts.maxBytes',
  'artifacts.formats',
  'artifacts.diskReserveBytes',
  'artifacts.maxConcurrentPushes',
  'artifacts.maxModels',
  'log.level',
  'cache.deltaBytes',
  'deltas.maxShare',
  'deltas.waitSeconds',
  'upstream.url',
  'upstream.token',
  'upstream.schedule',
  'upstream.maxRandomDelaySeconds',
  'upstream.concurrency',
  'upstream.connectTimeoutSeconds',
  'upstream.headersTimeoutSeconds',
  'upstream.bodyIdleTimeoutSeconds',
  'upstream.maxManifestBytes',
  'upstream.syncTimeoutSeconds',
  'upstream.s3',
  'upstream.report',
  'tls.certFile',
  'tls.keyFile',
]);

export interface ReloaderOptions {
  /** The config file to watch; none when the gateway runs on defaults, variables and flags. */
  file: string | undefined;
  /** Loads the configuration again from the same file, environment and flags. */
  load: () => LoadedConfig;
  running: Config;
  /** Makes the live keys take effect; throws ConfigError (and changes nothing) when it cannot. */
  apply: (next: Config, keys: string[]) => void;
  /**
   * Runs after every reload the configuration passed, changed or not: re-reads what the
   * configuration only names (a certificate renewed in place under the same file name).
   */
  refresh?: () => void;
  log: Logger;
}

/**
 * Reloads the configuration when its file changes or on SIGHUP. An edit that does not
 * validate is refused with the key named, and the running configuration stays as it was.
 */
export class ConfigReloader {
  readonly #options: ReloaderOptions;
  readonly #log: Logger;
  #watcher: FSWatcher | undefined;
  #debounce: NodeJS.Timeout | undefined;
  readonly #onSignal = () => this.reload('SIGHUP');

  constructor(options: ReloaderOptions) {
    this.#options = options;
    this.#log = options.log;
  }

  async start(): Promise<void> {
    process.on('SIGHUP', this.#onSignal);
    const file = this.#options.file;
    if (file === undefined) return;
    // The folder is watched, not the file: editors and config management replace a file
    // by renaming a new one over it, which ends a watch on the old file.
    const absolute = path.resolve(file);
    const watcher = watch(path.dirname(absolute), {
      depth: 0,
      ignoreInitial: true,
      ignored: (candidate) => candidate !== path.dirname(absolute) && candidate !== absolute,
    });
    // An editor's save is several events (truncate, write, rename): reload once, after them.
    const soon = () => {
      clearTimeout(this.#debounce);
      this.#debounce = setTimeout(() => this.reload('file'), 300);
    };
    watcher.on('add', soon);
    watcher.on('change', soon);
    watcher.on('error', (error) => this.#log.error({ err: error, file }, 'config watcher error'));
    await new Promise<void>((resolve) => watcher.once('ready', () => resolve()));
    this.#watcher = watcher;
  }

  async stop(): Promise<void> {
    process.off('SIGHUP', this.#onSignal);
    clearTimeout(this.#debounce);
    await this.#watcher?.close();
    this.#watcher = undefined;
  }

  /** Returns the keys that took effect (empty when refused or unchanged). */
  reload(trigger: string): string[] {
    const running = this.#options.running;
    let next: Config;
    try {
      next = this.#options.load().config;
    } catch (error) {
      if (!(error instanceof ConfigError)) throw error;
      this.#refused(error, trigger);
      return [];
    }
    const changed = changedKeys(running, next);
    const live = changed.filter((key) => LIVE_KEYS.has(key));
    const fixed = changed.filter((key) => !LIVE_KEYS.has(key));
    if (fixed.length > 0) {
      this.#log.warn({ keys: fixed, trigger }, `configuration change needs a restart to take effect: ${fixed.join(', ')} (the running values stay until then)`);
    }
    if (live.length === 0) {
      if (fixed.length === 0) this.#log.info({ trigger }, 'configuration unchanged');
      this.#options.refresh?.();
      return [];
    }
    try {
      this.#options.apply(next, live);
    } catch (error) {
      if (!(error instanceof ConfigError)) throw error;
      this.#refused(error, trigger);
      return [];
    }
    this.#log.info({ keys: live, trigger }, `configuration reloaded: ${live.join(', ')}`);
    this.#options.refresh?.();
    return live;
  }

  #refused(error: ConfigError, trigger: string): void {
    const key = /\b([a-z]+\.[a-zA-Z]+)\b/.exec(error.message.replace(/^config(?: is invalid)?:\s*/, ''))?.[1];
    this.#log.error({ key, trigger, reason: error.message }, `configuration change refused${key ? ` (${key})` : ''}; the running configuration stays: ${error.message.replace(/\s*\n\s*/g, '; ')}`);
  }
}

/** `section.key` of every leaf whose value differs. */
export function changedKeys(running: Config, next: Config): string[] {
  const keys: string[] = [];
  const sections = new Set([...Object.keys(running), ...Object.keys(next)]);
  for (const section of sections) {
    const a = (running as Record<string, Record<string, unknown>>)[section] ?? {};
    const b = (next as Record<string, Record<string, unknown>>)[section] ?? {};
    for (const leaf of new Set([...Object.keys(a), ...Object.keys(b)])) {
      if (JSON.stringify(a[leaf]) !== JSON.stringify(b[leaf])) keys.push(`${section}.${leaf}`);
    }
  }
  return keys;
}
