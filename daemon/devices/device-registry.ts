import type { DeviceReport } from '../contract/device-report.ts';
import type { Logger } from '../log.ts';
import { READ_ONCE, type Database, type Table } from '../store/database.ts';

export interface DeviceRecord {
  mac: string;
  firstSeen: string;
  lastSeen: string;
  address: string | null;
  report: (DeviceReport & { at: string }) | null;
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
  #table: Table<DeviceRecord> | undefined;
  #timer: NodeJS.Timeout | undefined;
  #flushing: Promise<void> = Promise.resolve();

  constructor(db: Database, log: Logger, flushSeconds: number) {
    this.#db = db;
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
  seen(mac: string, socketAddress: string | undefined | null, now?: Date): DeviceRecord {
    const at = now ? now.toISOString() : isoNow();
    const address = !socketAddress ? null : socketAddress.startsWith('::ffff:') ? socketAddress.slice(7) : socketAddress;
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

  report(mac: string, socketAddress: string | undefined | null, report: DeviceReport, now = new Date()): void {
    const record = this.seen(mac, socketAddress, now);
    record.report = { ...report, at: now.toISOString() };
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

// A poll storm records thousands of "last seen" a second: the time is formatted once per
// millisecond, not once per poll.
let isoAt = 0;
let iso = '';
function isoNow(): string {
  const now = Date.now();
  if (now !== isoAt) {
    isoAt = now;
    iso = new Date(now).toISOString();
  }
  return iso;
}
