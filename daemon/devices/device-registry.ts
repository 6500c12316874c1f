import { isDeepStrictEqual } from 'node:util';
import type { Capabilities, DeviceReport } from '../contract/device-report.ts';
import { systemClock, type Clock } from '../clock.ts';
import type { Logger } from '../log.ts';
import { READ_ONCE, type Database, type Table } from '../store/database.ts';

export interface DeviceRecord {
  mac: string;
  firstSeen: string;
  lastSeen: string;
  address: string | null;
  /** The last report, without its capabilities (those are kept apart, below). */
  report: (Omit<DeviceReport, 'capabilities'> & { at: string }) | null;
  /** The last capabilities the device reported; absent when it never did. */
  capabilities?: (Capabilities & { at: string }) | null;
}

/** What a report changed, for those who recompute answers or watch rollouts. */
export interface ReportChange {
  mac: string;
  record: DeviceRecord;
  /** The capabilities or the running sha256 changed: what the device may be offered can change. */
  offerInputs: boolean;
}

/**
 * What the gateway knows of each device: when it last polled, from where, and what it last
 * reported. Held in memory and written in one batch every `seenFlushSeconds` (and at stop),
 * so a fleet polling every few seconds does not wear out an SD card.
 */
export class DeviceRegistry {
  readonly #db: Database;
  readonly #log: Logger;
  readonly #flushMs: number;
  readonly #devices = new Map<string, DeviceRecord>();
  readonly #dirty = new Set<string>();
  readonly #listeners = new Set<(change: ReportChange) => void>();
  #table: Table<DeviceRecord> | undefined;
  #timer: NodeJS.Timeout | undefined;
  #flushing: Promise<void> = Promise.resolve();

  readonly #clock: Clock;

  constructor(db: Database, log: Logger, flushSeconds: number, clock: Clock = systemClock) {
    this.#db = db;
    this.#clock = clock;
    this.#log = log;
    this.#flushMs = flushSeconds * 1000;
  }

  async start(): Promise<void> {
    this.#table = this.#db.table<DeviceRecord>('devices');
    for await (const [mac, record] of this.#table.iterator(READ_ONCE)) this.#devices.set(mac, record);
    this.#timer = setInterval(() => void this.flush(), this.#flushMs);
    this.#timer.unref();
  }

  async stop(): Promise<void> {
    clearInterval(this.#timer);
    await this.flush();
  }

  get(mac: string): DeviceRecord | undefined {
    return this.#devices.get(mac);
  }

  list(): DeviceRecord[] {
    return [...this.#devices.values()].sort((a, b) => a.mac.localeCompare(b.mac));
  }

  /** Every record, in no particular order (cheaper than list() for counting). */
  records(): IterableIterator<DeviceRecord> {
    return this.#devices.values();
  }

  get size(): number {
    return this.#devices.size;
  }

  /** `address` as the socket gives it; IPv4-mapped IPv6 addresses are shown as IPv4. */
  seen(mac: string, socketAddress: string | undefined | null, now = this.#clock.now()): DeviceRecord {
    const at = now.toISOString();
    const address = socketAddress ? socketAddress.replace(/^::ffff:/, '') : null;
    let record = this.#devices.get(mac);
    if (!record) {
      record = { mac, firstSeen: at, lastSeen: at, address, report: null };
      this.#devices.set(mac, record);
    } else {
      record.lastSeen = at;
      record.address = address;
    }
    this.#dirty.add(mac);
    return record;
  }

  report(mac: string, socketAddress: string | undefined | null, report: DeviceReport, now = this.#clock.now()): void {
    const record = this.seen(mac, socketAddress, now);
    const { capabilities, ...rest } = report;
    const runningChanged = record.report?.sha256 !== rest.sha256;
    record.report = { ...rest, at: now.toISOString() };
    let capabilitiesChanged = false;
    if (capabilities) {
      const { at: _, ...previous } = record.capabilities ?? { at: '' };
      capabilitiesChanged = !record.capabilities || !isDeepStrictEqual(previous, capabilities);
      if (capabilitiesChanged) record.capabilities = { ...capabilities, at: now.toISOString() };
      // Sent after boot and when the firmware changes: rare, and worth keeping at once.
      if (capabilitiesChanged) void this.flush();
    }
    const change: ReportChange = { mac, record, offerInputs: runningChanged || capabilitiesChanged };
    for (const listener of this.#listeners) listener(change);
  }

  /** Called after every report is recorded. */
  onReport(listener: (change: ReportChange) => void): () => void {
    this.#listeners.add(listener);
    return () => this.#listeners.delete(listener);
  }

  /** Writes every changed record in one batch; concurrent calls share one write. */
  flush(): Promise<void> {
    this.#flushing = this.#flushing.then(async () => {
      if (this.#dirty.size === 0 || !this.#table) return;
      const macs = [...this.#dirty];
      this.#dirty.clear();
      try {
        await this.#table.batch(macs.map((mac) => ({ type: 'put' as const, key: mac, value: this.#devices.get(mac)! })));
      } catch (error) {
        for (const mac of macs) this.#dirty.add(mac);
        this.#log.error({ err: error }, 'could not write device records; will retry');
      }
    });
    return this.#flushing;
  }
}
