import { randomBytes } from 'node:crypto';
import os from 'node:os';
import path from 'node:path';
import { openStore } from './central-store/store-objects.ts';
import { siteReport } from './site-reports/site-report.ts';
import { SiteReporter } from './site-reports/site-reporter.ts';
import { VERSION } from './version.ts';
import { Admission } from './admission/admission.ts';
import { DeviceAdmission } from './identity/device-admission.ts';
import { Catalog } from './catalog/catalog.ts';
import { ConfigError } from './errors.ts';
import { ConfigReloader } from './config/config-reloader.ts';
import type { LoadedConfig } from './config/load.ts';
import { Inbox } from './inbox/inbox.ts';
import type { Config } from './config/schema.ts';
import { DeltaStore } from './deltas/delta-store.ts';
import { DeltaWarmup } from './devices/delta-warmup.ts';
import { DeviceRegistry } from './devices/device-registry.ts';
import { fleetCounts } from './devices/fleet-status.ts';
import { Advertiser, type DiscoveryStatus } from './discovery/advertiser.ts';
import { localHostName } from './discovery/host-addresses.ts';
import { PollAnswers } from './devices/poll-answers.ts';
import { createRequestListener } from './http/listener.ts';
import { TokenAuth } from './http/auth.ts';
import { HttpServer } from './http/http-server.ts';
import type { Logger } from './log.ts';
import { Metrics } from './metrics.ts';
import { systemClock, type Clock } from './clock.ts';
import { RolloutGuard } from './rollouts/rollout-guard.ts';
import { TrustPolicy } from './signing/trust.ts';
import { gatewayCredentials, type TlsCredentials } from './tls/tls-credentials.ts';
import { BlobCollector } from './gc/blob-collector.ts';
import { BlobStore, blobDirsOf } from './store/blob-store.ts';
import { DiskSpace } from './store/disk-space.ts';
import { HotBlobs } from './store/hot-blobs.ts';
import { Database } from './store/database.ts';
import { UpstreamSync } from './sync/upstream-sync.ts';

type InboxSettings = { dir: string; settleSeconds: number; checkSeconds: number };

interface Part {
  start(): Promise<void>;
  stop(): Promise<void>;
}

/**
 * The gateway daemon: starts its parts in dependency order and stops them in reverse.
 * Parts do nothing in their constructors, so a failure at start stops exactly the parts
 * that were started.
 */
export class Gateway {
  readonly #config: Config;
  readonly #log: Logger;
  readonly #configFile: string | null;
  readonly #started: Array<{ name: string; part: Part }> = [];
  #http: HttpServer | undefined;
  /** What HTTPS serves (tls.enabled), replaced by a reload that brings another certificate. */
  #tls: TlsCredentials | null = null;

  readonly #clock: Clock;

  /**
   * `configFile`: the file the config came from, which backups carry (none: the embedded
   * default). `clock`: the time of device records, assignments and rollout steps (tests
   * pass their own).
   */
  constructor(config: Config, log: Logger, options: { configFile?: string | null; clock?: Clock; reload?: () => LoadedConfig } = {}) {
    this.#config = config;
    this.#log = log;
    this.#configFile = options.configFile ?? null;
    this.#clock = options.clock ?? systemClock;
    this.#reload = options.reload;
  }

  /** Loads the configuration again (from the same file, environment and flags); none: no reload. */
  readonly #reload: (() => LoadedConfig) | undefined;
  #live: { trust: TrustPolicy; auth: TokenAuth; answers: PollAnswers; deltas: DeltaStore; sync: UpstreamSync } | undefined;

  async start(): Promise<void> {
    const config = this.#config;
    const log = this.#log;
    // Both read configured keys: a bad one stops start-up before anything opens (exit 78). The
    // certificate is made here on first start.
    const trust = new TrustPolicy(config.trust);
    this.#tls = config.tls.enabled ? gatewayCredentials(config.tls, config.paths.state, localHostName()) : null;
    const metrics = new Metrics();
    const database = new Database(config.paths.state, log);
    const deviceAdmission = new DeviceAdmission({ database, metrics, log, clock: this.#clock }, {
      policy: () => config.devices.admission,
      tokenSeconds: () => config.devices.tokenSeconds,
      maxPending: () => config.devices.maxPending,
      maxSessions: () => config.devices.maxKnown,
    });
    const auth = new TokenAuth(config.auth, config.devices, deviceAdmission);

    const blobs = new BlobStore(blobDirsOf(config.paths), log);
    const hotBlobs = new HotBlobs(blobs, config.artifacts.memoryCacheBytes);
    const catalog = new Catalog(database, blobs, log);
    const devices = new DeviceRegistry(database, log, config.devices, (mac) => catalog.current.namesDevice(mac), this.#clock);
    const disk = new DiskSpace({ reserveBytes: () => config.artifacts.diskReserveBytes });
    const deltas = new DeltaStore({
      dir: path.join(config.paths.cache, 'deltas'),
      maxBytes: () => config.cache.deltaBytes,
      maxShare: () => config.deltas.maxShare,
    }, { blobs, disk, metrics, clock: this.#clock, log });
    const answers = new PollAnswers(catalog, blobs, devices, { store: deltas, waitSeconds: () => config.deltas.waitSeconds }, {
      intervalSeconds: config.devices.pollIntervalSeconds,
      jitterSeconds: config.devices.pollJitterSeconds,
    }, config.devices);
    const collector = new BlobCollector({
      graceHours: config.cache.gcGraceHours,
      intervalMinutes: config.cache.gcIntervalMinutes,
    }, { blobs, catalog, devices, metrics, clock: this.#clock, log });
    const admission = new Admission({
      maxBytes: () => config.artifacts.maxBytes,
      formats: () => config.artifacts.formats,
      maxModels: () => config.artifacts.maxModels,
    }, { catalog, trust, blobs, disk, clock: this.#clock, log });
    const sync = new UpstreamSync({ upstream: () => config.upstream, cacheDir: config.paths.cache }, { admission, catalog, blobs, database, metrics, clock: this.#clock, log });
    let advertiser: Advertiser | undefined;
    const discovery = (): DiscoveryStatus => advertiser ? { enabled: true, ...advertiser.status() } : { enabled: false };
    try {
      await this.#startPart('database', database);
      await this.#startPart('blob store', blobs);
      await this.#startPart('hot blobs', hotBlobs);
      await this.#startPart('catalog', catalog);
      await this.#startPart('device registry', devices);
      await this.#startPart('device admission', deviceAdmission);
      await this.#startPart('deltas', deltas);
      await this.#startPart('poll answers', answers);
      await this.#startPart('delta warm-up', new DeltaWarmup({ catalog, devices, answers, deltas }));
      await this.#startPart('blob collector', collector);
      const id = await gatewayIdOf(database);
      // Before the sync, so that the report of its first run is not missed.
      const reporter = new SiteReporter({
        enabled: () => config.upstream.report,
        openStore: () => openStore(storeOf(config.upstream.url!), { s3: config.upstream.s3, now: () => this.#clock.now() }),
        report: () => siteReport({
          gateway: id,
          name: config.mdns.name || os.hostname(),
          version: VERSION,
          catalog: catalog.current,
          devices: devices.records(),
          pendingAdmission: deviceAdmission.records('pending').length,
          lastOutcome: sync.status().lastOutcome,
          lastSuccessAt: sync.status().lastSuccessAt,
          syncPeriodSeconds: sync.periodSeconds(),
          reportIntervalSeconds: config.upstream.reportIntervalSeconds,
        }, this.#clock.now()),
        onSync: (listener) => sync.onOutcome(listener),
        minIntervalMs: config.upstream.reportIntervalSeconds * 1000,
      }, log);
      await this.#startPart('site reporter', reporter);
      await this.#startPart('upstream sync', sync);
      const rollouts = new RolloutGuard(catalog, devices, metrics, log, this.#clock);
      await this.#startPart('rollout guard', rollouts);
      metrics.observe({
        fleet: () => fleetCounts(devices.records(), catalog.current, this.#clock.now().getTime()),
        models: () => catalog.current.models.size,
        cache: () => ({ bytes: blobs.totalBytes, blobs: blobs.count }),
        deltas: () => deltas.status(),
        longPolls: () => answers.waiting,
        dirs: { state: config.paths.state, cache: config.paths.cache },
        upstreamConfigured: () => sync.configured,
        lastSyncSuccess: () => sync.status().lastSuccessAt,
        connections: () => this.#http?.connections ?? 0,
      });
      const listener = createRequestListener({
        config, log, trust, auth, catalog, admission, blobs, hotBlobs, devices, deviceAdmission, answers, deltas, collector, sync, metrics, database, discovery, rollouts,
        tls: () => this.#tlsStatus(),
        siteReport: () => (config.upstream.report ? reporter.status() : null),
        configFile: this.#configFile,
        clock: this.#clock,
        gatewayId: id,
        startedAt: this.#clock.now(),
      });
      const tls = this.#tls;
      this.#http = new HttpServer(listener, {
        ...config.http,
        tls: tls && { port: config.tls.port, cert: tls.cert, key: tls.key },
        onDrain: () => void answers.stop(),
      }, log);
      await this.#startPart('http server', this.#http);
      if (config.mdns.enabled) {
        const http = this.#http;
        advertiser = new Advertiser({
          ...config.mdns,
          httpHost: config.http.host,
          gatewayId: id,
          port: () => http.address.port,
          tlsPort: () => http.tlsAddress?.port ?? null,
          revision: () => catalog.current.revision,
          onRevisionChange: (listener) => catalog.onChange(listener),
        }, log);
        // Last to start, first to stop: the goodbye goes out while the API still answers.
        await this.#startPart('mdns advertiser', advertiser);
      }
      if (config.inbox.dir !== null) {
        await this.#startPart('inbox', new Inbox(config.inbox as InboxSettings, { admission, catalog, log, clock: this.#clock }));
      }
      this.#live = { trust, auth, answers, deltas, sync };
      if (this.#reload) {
        await this.#startPart('config reloader', new ConfigReloader({
          file: this.#configFile ?? undefined,
          load: this.#reload,
          running: config,
          apply: (next, keys) => this.#applyLive(next, keys),
          refresh: () => this.#refreshCredentials(),
          log,
        }));
      }
    } catch (error) {
      await this.stop();
      throw error;
    }
    if (config.auth.tokens.length === 0) {
      log.warn('no tokens configured (auth.tokens is empty): the admin API refuses every push and change until tokens are added to the config file');
    }
    log.info({
      state: config.paths.state,
      cache: config.paths.cache,
      blobs: blobDirsOf(config.paths),
      revision: catalog.current.revision,
      trustedKeys: trust.keyIds,
      requireSignatures: config.trust.requireSignatures,
      tls: this.#tlsStatus(),
    }, 'gateway ready');
  }

  /**
   * Makes reloaded keys take effect (config-reloader.ts lists which). Everything is checked
   * before anything changes, so a refused reload leaves the running configuration whole.
   * The running config is this controller's: parts read the live values they need through
   * the getters wired in start() (admission, disk space, sync); tokens, trust keys and poll
   * timing live in their parts and are replaced there. The HTTP routes still read the
   * config object itself at each request, which is why it is changed in place.
   */
  #applyLive(next: Config, keys: string[]): void {
    const live = this.#live;
    if (!live) return;
    const changed = (prefix: string) => keys.some((key) => key.startsWith(prefix));
    const trust = changed('trust.') ? new TrustPolicy(next.trust) : undefined;
    const credentials = changed('tls.') && this.#tls ? gatewayCredentials(next.tls, next.paths.state, localHostName()) : undefined;
    const running = this.#config as unknown as Record<string, Record<string, unknown>>;
    for (const key of keys) {
      const [section, leaf] = key.split('.') as [string, string];
      running[section]![leaf] = (next as unknown as Record<string, Record<string, unknown>>)[section]![leaf];
    }
    if (trust) live.trust.adopt(trust);
    if (credentials) this.#adoptCredentials(credentials);
    if (changed('auth.') || keys.includes('devices.token')) live.auth.update(this.#config.auth, this.#config.devices);
    if (keys.includes('devices.pollIntervalSeconds') || keys.includes('devices.pollJitterSeconds')) {
      live.answers.setTiming({ intervalSeconds: this.#config.devices.pollIntervalSeconds, jitterSeconds: this.#config.devices.pollJitterSeconds });
    }
    if (keys.includes('log.level')) this.#log.level = this.#config.log.level;
    if (changed('deltas.') || keys.includes('cache.deltaBytes')) {
      void live.deltas.reconfigured().catch((error: unknown) => this.#log.error({ err: error }, 'could not apply the new delta settings'));
    }
    if (changed('upstream.')) {
      // The schedule and the store are read when the sync part starts: start it again.
      const sync = live.sync;
      void sync.stop().then(() => sync.start()).catch((error: unknown) => this.#log.error({ err: error }, 'upstream sync did not restart after a reload'));
    }
  }

  /**
   * After every reload: a certificate renewed in place (same tls.certFile, new content) is
   * served from now on. One that does not load is logged and the running one stays.
   */
  #refreshCredentials(): void {
    if (!this.#tls) return;
    try {
      this.#adoptCredentials(gatewayCredentials(this.#config.tls, this.#config.paths.state, localHostName()));
    } catch (error) {
      if (!(error instanceof ConfigError)) throw error;
      this.#log.error({ reason: error.message }, `the TLS certificate was not reloaded; the running one stays: ${error.message}`);
    }
  }

  #adoptCredentials(next: TlsCredentials): void {
    const running = this.#tls;
    if (!running || (next.cert === running.cert && next.key === running.key)) return;
    this.#tls = next;
    this.#http?.setCredentials(next);
    if (next.pin === running.pin) {
      this.#log.info({ certFile: next.certFile, pin: next.pin }, 'TLS certificate reloaded: new connections get it (same key, same pin)');
    } else {
      this.#log.warn({ certFile: next.certFile, pin: next.pin, previousPin: running.pin }, 'TLS certificate reloaded with another key: devices pinned to the old pin refuse this gateway until they are given the new one');
    }
  }

  /** What /healthz says of HTTPS: where, and the pin to check it by. */
  #tlsStatus(): { port: number; fingerprint: string } | null {
    const address = this.#http?.tlsAddress;
    return address && this.#tls ? { port: address.port, fingerprint: this.#tls.pin } : null;
  }

  /** Where the HTTP API listens (after start): plain HTTP, or HTTPS when plain HTTP is off. */
  get address(): { address: string; port: number } {
    if (!this.#http) throw new Error('the gateway is not started');
    return this.#http.address;
  }

  /** Where HTTPS listens (after start); null when tls.enabled is false. */
  get tlsAddress(): { address: string; port: number } | null {
    if (!this.#http) throw new Error('the gateway is not started');
    return this.#http.tlsAddress;
  }

  async stop(): Promise<void> {
    while (this.#started.length > 0) {
      const { name, part } = this.#started.pop()!;
      try {
        await part.stop();
      } catch (error) {
        this.#log.error({ err: error, part: name }, 'part failed to stop cleanly');
      }
    }
    this.#http = undefined;
  }

  async #startPart(name: string, part: Part): Promise<void> {
    await part.start();
    this.#started.push({ name, part });
  }
}

/** The store a manifest's s3:// address is in: `s3://bucket/site-a/manifest.json` → `s3://bucket/site-a`. */
function storeOf(manifestUrl: string): string {
  return manifestUrl.slice(0, manifestUrl.lastIndexOf('/'));
}

/** A stable random id for this gateway, made on first start and kept in the database. */
async function gatewayIdOf(database: Database): Promise<string> {
  const meta = database.table<string>('meta');
  const existing = await meta.get('gatewayId');
  if (existing) return existing;
  const id = randomBytes(8).toString('hex');
  await meta.put('gatewayId', id, { sync: true } as Record<string, unknown>);
  return id;
}
