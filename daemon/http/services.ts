import type { DeviceAdmission } from '../identity/device-admission.ts';
import type { Catalog } from '../catalog/catalog.ts';
import type { Admission } from '../admission/admission.ts';
import type { Config } from '../config/schema.ts';
import type { DeltaStore } from '../deltas/delta-store.ts';
import type { DeviceRegistry } from '../devices/device-registry.ts';
import type { DiscoveryStatus } from '../discovery/advertiser.ts';
import type { PollAnswers } from '../devices/poll-answers.ts';
import type { Logger } from '../log.ts';
import type { Metrics } from '../metrics.ts';
import type { RolloutGuard } from '../rollouts/rollout-guard.ts';
import type { Clock } from '../clock.ts';
import type { TrustPolicy } from '../signing/trust.ts';
import type { BlobCollector } from '../gc/blob-collector.ts';
import type { BlobStore } from '../store/blob-store.ts';
import type { HotBlobs } from '../store/hot-blobs.ts';
import type { Database } from '../store/database.ts';
import type { ReporterStatus } from '../site-reports/site-reporter.ts';
import type { UpstreamSync } from '../sync/upstream-sync.ts';
import type { TokenAuth } from './auth.ts';

/** What the routes read and change: the gateway's parts, already started. */
export interface Services {
  config: Config;
  log: Logger;
  gatewayId: string;
  startedAt: Date;
  catalog: Catalog;
  /** The one way models enter the catalog (the inbox and the sync use the same). */
  admission: Admission;
  blobs: BlobStore;
  hotBlobs: HotBlobs;
  collector: BlobCollector;
  sync: UpstreamSync;
  devices: DeviceRegistry;
  /** Which devices are served, by their keys (devices.admission). */
  deviceAdmission: DeviceAdmission;
  answers: PollAnswers;
  /** Deltas between blobs, made and kept for devices that apply them. */
  deltas: DeltaStore;
  trust: TrustPolicy;
  auth: TokenAuth;
  metrics: Metrics;
  database: Database;
  /** The config file the daemon runs on (for backups), or null on the embedded default. */
  configFile: string | null;
  /** What the gateway advertises on the LAN (mDNS), under which name, on which addresses. */
  discovery: () => DiscoveryStatus;
  rollouts: RolloutGuard;
  clock: Clock;
  /** The site report's writes into the store (upstream.report); null when reports are off. */
  siteReport: () => ReporterStatus | null;
  /** HTTPS as /healthz shows it: its port and the pin of its certificate; null when off. */
  tls: () => { port: number; fingerprint: string } | null;
}

/** JSON bodies of the admin API are small documents; nothing legitimate comes near this. */
export const JSON_BODY_LIMIT = 64 * 1024;
