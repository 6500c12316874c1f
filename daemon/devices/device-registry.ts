import { isDeepStrictEqual } from 'node:util';
import type { Capabilities, DeviceReport } from '../contract/device-report.ts';
import { systemClock, type Clock } from '../clock.ts';
import type { Logger } from '../log.ts';
import { READ_ONCE, type BatchOperation, type Database, type Table } from '../store/database.ts';
import { AddressRateLimit } from './address-rate-limit.ts';
import { SharedLists } from './shared-lists.ts';

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

export interface DeviceLimits {
  seenFlushSeconds: number;
  /** Records kept at most; past it the least recently seen unnamed ones are evicted. */
  maxKnown: number;
  /** New MACs one client address may introduce per minute. */
  newPerAddressPerMinute: number;
}

/**
 * What a poll or report did to the registry: the device's record, nothing (a MAC that
 * neither the catalog names nor resolves to a model, or no room), or a refusal because
 * this address introduced too many new MACs lately.
 */
export type SeenOutcome =
  | { kind: 'recorded'; record: DeviceRecord }
  | { kind: 'ignored' }
  | { kind: 'rate_limited'; retryAfterSeconds: number };

/**
 * What the gateway knows of each device: when it last polled, from where, and what it last
 * reported. Held in memory and written in one batch every `seenFlushSeconds` (and at stop),
 * so a fleet polling every few seconds does not wear out an SD card.
 *
 * Anyone on the LAN can poll with any MAC, so records are bounded: one is made only for a
 * MAC the catalog names (its own assignment, a group) or that resolves to a model, a client
 * address may introduce only so many new MACs a minute, and past `maxKnown` the least
 * recently seen records the catalog does not name make room.
 */
export class DeviceRegistry {
  readonly #db: Database;
  readonly #log: Logger;
  readonly #limits: DeviceLimits;
  readonly #named: (mac: string) => boolean;
  /** In least-recently-seen-first order: a record moves to the end when seen. */
  readonly #devices = new Map<string, DeviceRecord>();
  /** The MACs in canonical (= numeric) order, for paging the inventory without sorting. */
  #sorted: string[] = [];
  /** Changed since the last flush: last seen and address only (polls), the facts (creation, reports), capabilities. */
  readonly #dirtySeen = new Set<string>();
  readonly #dirtyFacts = new Set<string>();
  readonly #dirtyCapabilities = new Set<string>();
  readonly #evicted = new Set<string>();
  readonly #introductions: AddressRateLimit;
  readonly #listeners = new Set<(change: ReportChange) => void>();
  readonly #lists = new SharedLists();
  readonly #clock: Clock;
  #tables: DeviceTables | undefined;
  #timer: NodeJS.Timeout | undefined;
  #flushing: Promise<void> = Promise.resolve();
  #fullWarned = false;

  /** `named` says whether the catalog names a MAC (assignment or group): such records are never evicted. */
  constructor(db: Database, log: Logger, limits: DeviceLimits, named: (mac: string) => boolean, clock: Clock = systemClock) {
    this.#db = db;
    this.#clock = clock;
    this.#log = log;
    this.#limits = limits;
    this.#named = named;
    this.#introductions = new AddressRateLimit(limits.newPerAddressPerMinute);
  }

  async start(): Promise<void> {
    const tables: DeviceTables = {
      facts: this.#db.table<StoredFacts>('devices'),
      seen: this.#db.table<string>('seen', 'utf8'),
      capabilities: this.#db.table<DeviceRecord['capabilities']>('capabilities'),
    };
    this.#tables = tables;
    const seen = new Map<string, string>();
    for await (const [mac, value] of tables.seen.iterator(READ_ONCE)) seen.set(mac, value);
    const capabilities = new Map<string, DeviceRecord['capabilities']>();
    for await (const [mac, value] of tables.capabilities.iterator(READ_ONCE)) capabilities.set(mac, value);
    const loaded: DeviceRecord[] = [];
    for await (const stored of tables.facts.values(READ_ONCE)) {
      const record = fromStored(stored, seen.get(stored.mac), capabilities.get(stored.mac));
      if (record.capabilities) record.capabilities = this.#shared(record.capabilities);
      // Written before last seen and capabilities had tables of their own: moved at the next flush.
      if ('lastSeen' in stored || 'capabilities' in stored) {
        this.#dirtySeen.add(record.mac);
        this.#dirtyFacts.add(record.mac);
        if (record.capabilities !== undefined) this.#dirtyCapabilities.add(record.mac);
      }
      loaded.push(record);
    }
    loaded.sort((a, b) => a.lastSeen.localeCompare(b.lastSeen));
    for (const record of loaded) this.#devices.set(record.mac, record);
    this.#sorted = [...this.#devices.keys()].sort();
    // A lowered maxKnown takes effect at start.
    while (this.#devices.size > this.#limits.maxKnown && this.#evictOne()) { /* evicting */ }
    this.#timer = setInterval(() => void this.flush(), this.#limits.seenFlushSeconds * 1000);
    this.#timer.unref();
  }

  async stop(): Promise<void> {
    clearInterval(this.#timer);
    await this.flush();
  }

  get(mac: string): DeviceRecord | undefined {
    return this.#devices.get(mac);
  }

  /** Up to `limit` records with a MAC after `after` (all when null), in MAC order. */
  page(limit: number, after: string | null): { records: DeviceRecord[]; next: string | null } {
    let start = after === null ? 0 : upperBound(this.#sorted, after);
    const records: DeviceRecord[] = [];
    for (; start < this.#sorted.length && records.length < limit; start++) records.push(this.#devices.get(this.#sorted[start]!)!);
    return { records, next: start < this.#sorted.length ? records.at(-1)!.mac : null };
  }

  /** Every record, in no particular order. */
  records(): IterableIterator<DeviceRecord> {
    return this.#devices.values();
  }

  get size(): number {
    return this.#devices.size;
  }

  /**
   * A poll or report from `mac`. `resolves`: whether a model resolves for it now.
   * `address` as the socket gives it; IPv4-mapped IPv6 addresses are kept as IPv4.
   */
  seen(mac: string, socketAddress: string | undefined | null, resolves: boolean, now = this.#clock.now()): SeenOutcome {
    const at = now.toISOString();
    const address = socketAddress ? socketAddress.replace(/^::ffff:/, '') : null;
    let record = this.#devices.get(mac);
    if (record) {
      record.lastSeen = at;
      record.address = address;
      this.#devices.delete(mac);
      this.#devices.set(mac, record);
    } else {
      if (!resolves && !this.#named(mac)) return { kind: 'ignored' };
      const allowed = this.#introductions.take(address ?? '', now.getTime());
      if (!allowed.ok) return { kind: 'rate_limited', retryAfterSeconds: allowed.retryAfterSeconds };
      if (this.#devices.size >= this.#limits.maxKnown && !this.#evictOne()) {
        if (!this.#fullWarned) this.#log.warn({ maxKnown: this.#limits.maxKnown }, 'devices.maxKnown reached and every record is named by the catalog; new devices are not recorded');
        this.#fullWarned = true;
        return { kind: 'ignored' };
      }
      record = { mac, firstSeen: at, lastSeen: at, address, report: null };
      this.#devices.set(mac, record);
      this.#sorted.splice(upperBound(this.#sorted, mac), 0, mac);
      this.#evicted.delete(mac);
      this.#dirtyFacts.add(mac);
    }
    this.#dirtySeen.add(mac);
    return { kind: 'recorded', record };
  }

  report(mac: string, socketAddress: string | undefined | null, resolves: boolean, report: DeviceReport, now = this.#clock.now()): SeenOutcome {
    const outcome = this.seen(mac, socketAddress, resolves, now);
    if (outcome.kind !== 'recorded') return outcome;
    const { record } = outcome;
    const { capabilities, ...rest } = report;
    const runningChanged = record.report?.sha256 !== rest.sha256;
    record.report = { ...rest, at: now.toISOString() };
    this.#dirtyFacts.add(mac);
    let capabilitiesChanged = false;
    if (capabilities) {
      const { at: _, ...previous } = record.capabilities ?? { at: '' };
      capabilitiesChanged = !record.capabilities || !isDeepStrictEqual(previous, capabilities);
      if (capabilitiesChanged) {
        record.capabilities = this.#shared({ ...capabilities, at: now.toISOString() });
        this.#dirtyCapabilities.add(mac);
        // Sent after boot and when the firmware changes: rare, and worth keeping at once.
        void this.flush();
      }
    }
    const change: ReportChange = { mac, record, offerInputs: runningChanged || capabilitiesChanged };
    for (const listener of this.#listeners) listener(change);
    return outcome;
  }

  /** Called after every report is recorded. */
  onReport(listener: (change: ReportChange) => void): () => void {
    this.#listeners.add(listener);
    return () => this.#listeners.delete(listener);
  }

  /**
   * Writes what changed (and removes evicted records) in one batch; concurrent calls share
   * one write. A poll changes only last seen and address, kept apart from the report and
   * the capabilities (up to 64 KiB) in a few bytes, so a fleet polling all day writes
   * little more than the MACs it saw.
   */
  flush(): Promise<void> {
    this.#flushing = this.#flushing.then(async () => {
      const tables = this.#tables;
      if (!tables) return;
      const taken = { seen: [...this.#dirtySeen], facts: [...this.#dirtyFacts], capabilities: [...this.#dirtyCapabilities], evicted: [...this.#evicted] };
      if (taken.seen.length + taken.facts.length + taken.capabilities.length + taken.evicted.length === 0) return;
      for (const set of [this.#dirtySeen, this.#dirtyFacts, this.#dirtyCapabilities, this.#evicted]) set.clear();
      const record = (mac: string) => this.#devices.get(mac)!;
      try {
        // Unsynced on purpose: last-seen times are not acknowledged to anyone, and an fsync
        // per period would be the SD-card wear the coalescing exists to avoid.
        const operations: BatchOperation[] = [
          ...taken.evicted.flatMap((mac) => [tables.facts, tables.seen, tables.capabilities].map((sublevel) => ({ type: 'del' as const, sublevel, key: mac }))),
          ...taken.facts.map((mac) => ({ type: 'put' as const, sublevel: tables.facts, key: mac, value: factsOf(record(mac)) })),
          ...taken.seen.map((mac) => ({ type: 'put' as const, sublevel: tables.seen, key: mac, value: seenOf(record(mac)) })),
          ...taken.capabilities.map((mac) => ({ type: 'put' as const, sublevel: tables.capabilities, key: mac, value: record(mac).capabilities })),
        ];
        await this.#db.level.batch(operations);
      } catch (error) {
        for (const mac of taken.seen) if (this.#devices.has(mac)) this.#dirtySeen.add(mac);
        for (const mac of taken.facts) if (this.#devices.has(mac)) this.#dirtyFacts.add(mac);
        for (const mac of taken.capabilities) if (this.#devices.has(mac)) this.#dirtyCapabilities.add(mac);
        for (const mac of taken.evicted) if (!this.#devices.has(mac)) this.#evicted.add(mac);
        this.#log.error({ err: error }, 'could not write device records; will retry');
      }
    });
    return this.#flushing;
  }

  /** The capabilities with their operator and delegate lists shared with other devices of the same firmware. */
  #shared(capabilities: Capabilities & { at: string }): Capabilities & { at: string } {
    return { ...capabilities, operators: this.#lists.share(capabilities.operators), delegates: this.#lists.share(capabilities.delegates) };
  }

  /** Forgets the least recently seen record the catalog does not name; false when there is none. */
  #evictOne(): boolean {
    for (const mac of this.#devices.keys()) {
      if (this.#named(mac)) continue;
      this.#devices.delete(mac);
      this.#sorted.splice(upperBound(this.#sorted, mac) - 1, 1);
      for (const set of [this.#dirtySeen, this.#dirtyFacts, this.#dirtyCapabilities]) set.delete(mac);
      this.#evicted.add(mac);
      return true;
    }
    return false;
  }
}

/** What a device record keeps in the `devices` table: what changes only when it reports. */
type StoredFacts = Pick<DeviceRecord, 'mac' | 'firstSeen' | 'report'>;

interface DeviceTables {
  facts: Table<StoredFacts>;
  /** `<last seen, ms since the epoch> <address>`: a poll's whole change, in about 30 bytes. */
  seen: Table<string>;
  capabilities: Table<DeviceRecord['capabilities']>;
}

function factsOf(record: DeviceRecord): StoredFacts {
  return { mac: record.mac, firstSeen: record.firstSeen, report: record.report };
}

function seenOf(record: DeviceRecord): string {
  return `${Date.parse(record.lastSeen)} ${record.address ?? ''}`;
}

/** A record from its stored parts; records written before the split carry everything themselves. */
function fromStored(stored: StoredFacts & Partial<DeviceRecord>, seen: string | undefined, capabilities: DeviceRecord['capabilities'] | undefined): DeviceRecord {
  const record: DeviceRecord = { mac: stored.mac, firstSeen: stored.firstSeen, lastSeen: stored.lastSeen ?? stored.firstSeen, address: stored.address ?? null, report: stored.report };
  if (seen !== undefined) {
    const space = seen.indexOf(' ');
    record.lastSeen = new Date(Number(seen.slice(0, space))).toISOString();
    record.address = seen.slice(space + 1) || null;
  }
  const kept = capabilities ?? stored.capabilities;
  if (kept !== undefined) record.capabilities = kept;
  return record;
}

/** The index of the first element greater than `value` in a sorted array. */
function upperBound(sorted: readonly string[], value: string): number {
  let low = 0;
  let high = sorted.length;
  while (low < high) {
    const mid = (low + high) >>> 1;
    if (sorted[mid]! <= value) low = mid + 1;
    else high = mid;
  }
  return low;
}
