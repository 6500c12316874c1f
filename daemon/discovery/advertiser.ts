import { randomInt } from 'node:crypto';
import dgram from 'node:dgram';
import { EventEmitter } from 'node:events';
import os from 'node:os';
import { Bonjour } from 'bonjour-service';
import type { Logger } from '../log.ts';
import {
  answerQuery, asRecord, decodeTxt, goodbyesOf, instanceFqdn, recordKey, recordsOf, sameName, SERVICE_TYPE, txtBytes,
  type Advertisement, type DnsPacket, type DnsRecord, type SrvData,
} from './dns-records.ts';
import { hostAddresses, listeningAddresses, localHostName } from './host-addresses.ts';

export interface AdvertiserOptions {
  /** Configured instance name; '' means `modelferry on <hostname>`. */
  name: string;
  priority: number;
  /** How often the machine's addresses are compared with the advertised ones. */
  addressCheckSeconds: number;
  /** Updates (catalog revision, addresses) are announced at most this often; later ones coalesce. */
  minAnnounceIntervalSeconds: number;
  /** Responses of any kind per second, whatever arrives (a flood of queries is not a flood of answers). */
  maxResponsesPerSecond: number;
  gatewayId: string;
  /** The port the HTTP API listens on (HTTPS's when plain HTTP is off). */
  port: () => number;
  /** The port HTTPS listens on; null when it does not. */
  tlsPort: () => number | null;
  /** The catalog revision now, and a way to hear when it changes. */
  revision: () => string;
  onRevisionChange: (listener: () => void) => () => void;
  /** The address the HTTP API listens on (`http.host`): only addresses it answers on are advertised. */
  httpHost: string;
}

export type AdvertiserState = 'stopped' | 'probing' | 'announced' | 'failed';

export interface AdvertiserStatus {
  state: AdvertiserState;
  /** The instance name in use (after any renaming). */
  name: string;
  configuredName: string;
  service: string;
  host: string;
  port: number;
  addresses: string[];
  txt: Record<string, string>;
  renames: number;
  announcements: number;
  error?: string;
}

/** What /healthz and the status page say about discovery. */
export type DiscoveryStatus = { enabled: false } | ({ enabled: true } & AdvertiserStatus);

/** The part of multicast-dns (the socket under bonjour-service) the advertiser uses. */
interface MulticastDns extends EventEmitter {
  respond(packet: { answers: DnsRecord[]; additionals?: DnsRecord[] }, rinfo: { address: string; port: number } | undefined, cb: (error?: Error | null) => void): void;
  send(packet: object, rinfo: { address: string; port: number }, cb: (error?: Error | null) => void): void;
  query(packet: { questions: Array<{ name: string; type: string }>; authorities?: DnsRecord[] }, cb: (error?: Error | null) => void): void;
}

interface RemoteInfo {
  address: string;
  port: number;
}

const MDNS_PORT = 5353;
const MDNS_GROUP = '224.0.0.251';
const PROBE_INTERVAL_MS = 250;
const PROBES = 3;
/** RFC 6762 section 6: a record is multicast at most once a second, in answer to a probe every 250 ms. */
const MULTICAST_SPACING_MS = 1000;
const PROBE_ANSWER_SPACING_MS = 250;
/** RFC 6762 section 8.1: after 15 conflicts in 10 s, wait 5 s before probing again. */
const CONFLICT_WINDOW_MS = 10_000;
const CONFLICT_BURST = 15;
const CONFLICT_BACKOFF_MS = 5000;
/** RFC 6762 section 6.7: answers to legacy unicast queries carry at most 10 s. */
const LEGACY_TTL = 10;
const GOODBYE_TIMEOUT_MS = 1000;

/**
 * Advertises the gateway as `_modelferry._tcp` on the LAN (DESIGN.md section 6), on the
 * mDNS socket of bonjour-service. Its own publish() is not used because it cannot do what
 * a gateway needs: it re-sends the records it took at publish time for an hour (so a new
 * `rev` or address would be contradicted by the old one), stops for good on a name
 * conflict, answers an SRV query without addresses and a many-question query with one
 * packet per question. So this part keeps the records, probes for its name, renames on a
 * conflict, answers queries in one packet with everything a resolver needs, re-announces
 * when the revision or the addresses change, and says goodbye on stop.
 */
export class Advertiser {
  readonly #options: AdvertiserOptions;
  readonly #log: Logger;
  #bonjour: Bonjour | undefined;
  #mdns: MulticastDns | undefined;
  #socket: dgram.Socket | undefined;
  #state: AdvertiserState = 'stopped';
  #error: string | undefined;
  #instance = '';
  #baseName = '';
  #host = '';
  #addresses: string[] = [];
  #records: DnsRecord[] = [];
  /** Records announced before the last update and not in it: sent once more with TTL 0. */
  #retired: DnsRecord[] = [];
  #renames = 0;
  #announcements = 0;
  #conflicts: number[] = [];
  readonly #lastMulticast = new Map<string, number>();
  #lastAnnounceAt = 0;
  #responseBudget = 0;
  #budgetAt = 0;
  readonly #timers = new Set<NodeJS.Timeout>();
  #updateTimer: NodeJS.Timeout | undefined;
  #repeatTimer: NodeJS.Timeout | undefined;
  #probeGeneration = 0;
  #unsubscribe: (() => void) | undefined;
  #addressTimer: NodeJS.Timeout | undefined;

  constructor(options: AdvertiserOptions, log: Logger) {
    this.#options = options;
    this.#log = log;
  }

  async start(): Promise<void> {
    this.#host = localHostName();
    this.#baseName = instanceName(this.#options.name, os.hostname());
    this.#instance = this.#baseName;
    this.#addresses = this.#readAddresses();
    this.#records = this.#build();

    let socketError: Error | undefined;
    // Our own socket, handed to multicast-dns, so that group memberships can be renewed (#rejoin).
    this.#socket = dgram.createSocket({ type: 'udp4', reuseAddr: true });
    const bonjour = new Bonjour({ socket: this.#socket } as never, (error: Error) => this.#log.warn({ err: error }, 'mDNS send failed'));
    this.#bonjour = bonjour;
    const mdns = socketOf(bonjour);
    this.#mdns = mdns;
    await new Promise<void>((resolve) => {
      mdns.once('ready', resolve);
      mdns.once('error', (error: Error) => {
        socketError = error;
        resolve();
      });
    });
    // multicast-dns reports undecodable packets and membership trouble as warnings: hostile
    // or broken traffic on the LAN is logged at debug level, never thrown.
    mdns.on('warning', (error: Error) => this.#log.debug({ err: error }, 'mDNS packet ignored'));
    mdns.on('error', (error: Error) => this.#fail(error));
    if (socketError) {
      this.#fail(socketError);
      return;
    }
    mdns.on('query', (packet: DnsPacket, rinfo: RemoteInfo) => this.#guard(() => this.#onQuery(packet, rinfo)));
    mdns.on('response', (packet: DnsPacket, rinfo: RemoteInfo) => this.#guard(() => this.#onResponse(packet, rinfo)));

    this.#unsubscribe = this.#options.onRevisionChange(() => this.#update('revision'));
    this.#addressTimer = setInterval(() => this.#guard(() => this.#checkAddresses()), this.#options.addressCheckSeconds * 1000);
    this.#addressTimer.unref();
    this.#probe();
  }

  async stop(): Promise<void> {
    this.#unsubscribe?.();
    this.#unsubscribe = undefined;
    clearInterval(this.#addressTimer);
    for (const timer of this.#timers) clearTimeout(timer);
    this.#timers.clear();
    const mdns = this.#mdns;
    const wasAnnounced = this.#state === 'announced';
    this.#state = 'stopped';
    this.#probeGeneration++;
    if (mdns && wasAnnounced) {
      // Goodbyes: devices and browsers drop the gateway now instead of when the TTLs run out.
      await new Promise<void>((resolve) => {
        const timer = setTimeout(resolve, GOODBYE_TIMEOUT_MS);
        mdns.respond({ answers: goodbyesOf([...this.#records, ...this.#retired]) }, undefined, () => {
          clearTimeout(timer);
          resolve();
        });
      });
      this.#log.info({ name: this.#instance }, 'mDNS advertisement withdrawn');
    }
    const bonjour = this.#bonjour;
    this.#bonjour = undefined;
    this.#mdns = undefined;
    this.#socket = undefined;
    if (bonjour) await new Promise<void>((resolve) => bonjour.destroy(() => resolve()));
  }

  status(): AdvertiserStatus {
    const status: AdvertiserStatus = {
      state: this.#state,
      name: this.#instance,
      configuredName: this.#baseName,
      service: SERVICE_TYPE.replace(/\.local$/, ''),
      host: this.#host,
      port: this.#options.port(),
      addresses: [...this.#addresses],
      txt: this.#txt(),
      renames: this.#renames,
      announcements: this.#announcements,
    };
    if (this.#error !== undefined) status.error = this.#error;
    return status;
  }

  #txt(): Record<string, string> {
    // tls=1 and tlsport: HTTPS there, which a device checks by the pin it was built with
    // (never by anything in this record, which anyone on the LAN can forge).
    const tlsPort = this.#options.tlsPort();
    return {
      txtvers: '1',
      api: '/v1',
      id: this.#options.gatewayId,
      prio: String(this.#options.priority),
      rev: this.#options.revision(),
      tls: tlsPort === null ? '0' : '1',
      ...(tlsPort === null ? {} : { tlsport: String(tlsPort) }),
    };
  }

  #build(): DnsRecord[] {
    const ad: Advertisement = {
      instance: this.#instance, host: this.#host, port: this.#options.port(), txt: this.#txt(), addresses: this.#addresses,
    };
    return recordsOf(ad);
  }

  #readAddresses(): string[] {
    return listeningAddresses(this.#options.httpHost, hostAddresses());
  }

  #fail(error: Error): void {
    this.#state = 'failed';
    this.#error = error.message;
    this.#log.error({ err: error }, 'mDNS socket failed: the gateway is not advertised; devices need its URL configured');
  }

  /** Nothing a packet holds may throw out of an event handler and stop the daemon. */
  #guard(fn: () => void): void {
    try {
      fn();
    } catch (error) {
      this.#log.warn({ err: error }, 'mDNS packet handling failed');
    }
  }

  #later(ms: number, fn: () => void): NodeJS.Timeout {
    const timer = setTimeout(() => {
      this.#timers.delete(timer);
      this.#guard(fn);
    }, ms);
    this.#timers.add(timer);
    return timer;
  }

  // --- probing and naming (RFC 6762 sections 8 and 9) ---

  #probe(): void {
    const generation = ++this.#probeGeneration;
    this.#state = 'probing';
    this.#records = this.#build();
    const now = Date.now();
    this.#conflicts = this.#conflicts.filter((at) => now - at < CONFLICT_WINDOW_MS);
    const backoff = this.#conflicts.length >= CONFLICT_BURST ? CONFLICT_BACKOFF_MS : 0;
    let sent = 0;
    const step = () => {
      if (generation !== this.#probeGeneration) return;
      if (sent === PROBES) {
        this.#announce('start');
        return;
      }
      sent++;
      const fqdn = instanceFqdn(this.#instance);
      // Our proposed records go in the authority section, so two gateways probing the same
      // name at the same moment can tell which of them keeps it.
      const authorities = this.#records.filter((record) => sameName(record.name, fqdn));
      this.#mdns?.query({ questions: [{ name: fqdn, type: 'ANY' }], authorities }, () => undefined);
      this.#later(PROBE_INTERVAL_MS, step);
    };
    this.#later(backoff + randomInt(PROBE_INTERVAL_MS), step);
  }

  #rename(reason: string): void {
    const from = this.#instance;
    this.#renames++;
    this.#conflicts.push(Date.now());
    this.#instance = numberedName(this.#baseName, this.#renames + 1);
    this.#log.warn({ name: from, renamedTo: this.#instance, reason }, 'mDNS name in use on the LAN: advertising under another name');
    this.#retired = [];
    this.#probe();
  }

  /**
   * Records another host sent for our instance name that differ from ours; our own packets
   * (looped back, or sent before a revision change) carry our gateway id.
   */
  #conflicting(records: unknown[]): DnsRecord[] {
    const fqdn = instanceFqdn(this.#instance);
    const ours = this.#records.filter((record) => sameName(record.name, fqdn));
    const conflicting: DnsRecord[] = [];
    for (const value of records) {
      const record = asRecord(value);
      if (!record || record.ttl === 0 || !sameName(record.name, fqdn)) continue;
      if (record.type === 'TXT') {
        if (decodeTxt(record.data).id !== this.#options.gatewayId) conflicting.push(record);
      } else if (record.type === 'SRV') {
        if (!ours.some((own) => recordKey(own) === recordKey(record))) conflicting.push(record);
      }
    }
    return conflicting;
  }

  /** RFC 6762 section 8.2, simplified to the TXT (or SRV) data: the lexicographically later one keeps the name. */
  #weLose(theirs: DnsRecord[]): boolean {
    const fqdn = instanceFqdn(this.#instance);
    const compare = (type: 'TXT' | 'SRV') => {
      const mine = this.#records.find((record) => record.type === type && sameName(record.name, fqdn));
      const other = theirs.find((record) => record.type === type);
      if (!mine || !other) return undefined;
      return Buffer.compare(rdataBytes(mine), rdataBytes(other));
    };
    const order = compare('TXT') ?? compare('SRV') ?? 0;
    return order < 0;
  }

  #onResponse(packet: DnsPacket, _rinfo: RemoteInfo): void {
    if (this.#state !== 'probing' && this.#state !== 'announced') return;
    const theirs = this.#conflicting([...(packet.answers ?? []), ...(packet.additionals ?? [])]);
    if (theirs.length === 0) return;
    if (this.#state === 'probing') {
      this.#rename('another host answered for the name');
    } else if (this.#weLose(theirs)) {
      this.#rename('another host announced the same name');
    } else {
      // We keep the name: say so, so that caches hold our records rather than theirs.
      this.#multicast(this.#records.filter((record) => sameName(record.name, instanceFqdn(this.#instance))), { spacingMs: MULTICAST_SPACING_MS });
    }
  }

  #onQuery(packet: DnsPacket, rinfo: RemoteInfo): void {
    if (this.#state === 'probing') {
      // A simultaneous probe for the same name: the one whose data sorts first gives way.
      const theirs = this.#conflicting(packet.authorities ?? []);
      if (theirs.length > 0 && this.#weLose(theirs)) this.#rename('another host is probing for the same name');
      return;
    }
    if (this.#state !== 'announced') return;
    const { answers, additionals } = answerQuery(packet, this.#records);
    if (answers.length === 0) return;
    const isProbe = Array.isArray(packet.authorities) && packet.authorities.length > 0;

    if (rinfo.port !== MDNS_PORT) {
      // A legacy unicast query (a plain DNS resolver): answer it directly, as DNS does.
      if (!this.#takeBudget()) return;
      const short = (records: DnsRecord[]) => records.map((record) => ({ ...record, ttl: Math.min(record.ttl, LEGACY_TTL), flush: false }));
      // Only the questions we answer are echoed: they name our records, so they encode.
      const questions = (packet.questions ?? []).flatMap((question) => answers.some((record) => typeof question.name === 'string' && sameName(record.name, question.name))
        ? [{ name: question.name as string, type: String(question.type), class: 'IN' }] : []);
      this.#mdns?.send({
        type: 'response', id: typeof packet.id === 'number' ? packet.id : 0, flags: 1 << 10, questions,
        answers: short(answers), additionals: short(additionals),
      }, { address: rinfo.address, port: rinfo.port }, () => undefined);
      return;
    }
    const sent = this.#multicast(answers, { spacingMs: isProbe ? PROBE_ANSWER_SPACING_MS : MULTICAST_SPACING_MS, additionals });
    if (!sent && this.#takeBudget()) {
      // Multicast a moment ago, but this querier may have started listening since (or asked
      // for a unicast answer, the QU bit): it gets the answer directly.
      this.#mdns?.respond({ answers, additionals }, { address: rinfo.address, port: rinfo.port }, () => undefined);
    }
  }

  #takeBudget(): boolean {
    const now = Date.now();
    if (now - this.#budgetAt >= 1000) {
      this.#budgetAt = now;
      this.#responseBudget = this.#options.maxResponsesPerSecond;
    }
    if (this.#responseBudget <= 0) return false;
    this.#responseBudget--;
    return true;
  }

  /**
   * Multicasts the records not multicast within `spacingMs` (all of them when spacingMs is
   * 0), within the response budget unless `force`. Returns whether anything was sent.
   */
  #multicast(records: DnsRecord[], options: { spacingMs: number; force?: boolean; additionals?: DnsRecord[] }): boolean {
    const now = Date.now();
    const due = records.filter((record) => now - (this.#lastMulticast.get(recordKey(record)) ?? 0) >= options.spacingMs);
    if (due.length === 0 || (!options.force && !this.#takeBudget())) return false;
    for (const record of due) this.#lastMulticast.set(recordKey(record), now);
    this.#mdns?.respond({ answers: due, additionals: options.additionals ?? [] }, undefined, () => undefined);
    return true;
  }

  // --- announcing and updates ---

  #announce(reason: 'start' | 'update'): void {
    this.#state = 'announced';
    this.#records = this.#build();
    // Each revision is a new TXT record: forget when old ones went out, or this map would grow forever.
    const current = new Set(this.#records.map(recordKey));
    for (const key of this.#lastMulticast.keys()) if (!current.has(key)) this.#lastMulticast.delete(key);
    this.#lastAnnounceAt = Date.now();
    this.#announcements++;
    const send = () => {
      this.#multicast([...this.#records, ...goodbyesOf(this.#retired)], { spacingMs: 0, force: true });
    };
    send();
    if (this.#addresses.length === 0) {
      this.#log.warn({ httpHost: this.#options.httpHost }, 'mDNS: no address of this machine that devices could reach the API on; the service is advertised without one');
    }
    if (reason === 'start') {
      this.#log.info({ name: this.#instance, type: SERVICE_TYPE, host: this.#host, port: this.#options.port(), addresses: this.#addresses, txt: this.#txt() }, 'mDNS advertisement announced');
    } else {
      this.#log.debug({ name: this.#instance, addresses: this.#addresses, rev: this.#txt().rev }, 'mDNS advertisement updated');
    }
    // RFC 6762 section 8.3: announced twice, a second apart, in case one is lost.
    if (this.#repeatTimer) {
      clearTimeout(this.#repeatTimer);
      this.#timers.delete(this.#repeatTimer);
    }
    this.#repeatTimer = this.#later(MULTICAST_SPACING_MS, () => {
      this.#repeatTimer = undefined;
      if (this.#state !== 'announced') return;
      send();
      this.#retired = [];
    });
  }

  /**
   * A change to announce: at once, or when the minimum interval since the last one has
   * passed. Without `force`, only when the records did change.
   */
  #update(reason: string, force = false): void {
    if (this.#state === 'probing') {
      this.#records = this.#build();
      return;
    }
    if (this.#state !== 'announced' || this.#updateTimer) return;
    const wait = Math.max(0, this.#lastAnnounceAt + this.#options.minAnnounceIntervalSeconds * 1000 - Date.now());
    this.#updateTimer = this.#later(wait, () => {
      this.#updateTimer = undefined;
      if (this.#state !== 'announced') return;
      const before = new Set(this.#records.map(recordKey));
      const next = this.#build();
      const nextKeys = new Set(next.map(recordKey));
      // Address records and the old TXT that are gone are withdrawn in the same packet.
      const gone = this.#records.filter((record) => !nextKeys.has(recordKey(record)) && record.type !== 'TXT');
      this.#retired = [...this.#retired.filter((record) => !nextKeys.has(recordKey(record))), ...gone];
      if (!force && next.every((record) => before.has(recordKey(record))) && gone.length === 0) return;
      this.#log.debug({ reason }, 'mDNS update');
      this.#announce('update');
    });
  }

  #checkAddresses(): void {
    const rejoined = this.#rejoin();
    const now = this.#readAddresses();
    if (now.join(',') !== this.#addresses.join(',')) {
      this.#log.info({ from: this.#addresses, to: now }, 'machine addresses changed: re-announcing');
      this.#addresses = now;
      this.#update('addresses');
    } else if (rejoined.length > 0) {
      this.#log.info({ addresses: rejoined }, 'network interface came back: re-announcing');
      this.#update('reconnected', true);
    }
  }

  /**
   * Joins the mDNS group on every IPv4 interface again. An interface that went away and
   * came back (a Wi-Fi adapter reconnecting) has the same address but lost the membership,
   * and multicast-dns, which keys memberships by address, never renews it: the gateway
   * would stop hearing queries. Returns the addresses where joining was needed.
   */
  #rejoin(): string[] {
    const socket = this.#socket;
    if (!socket || this.#state === 'failed') return [];
    const joined: string[] = [];
    for (const list of Object.values(os.networkInterfaces())) {
      const ipv4 = list?.find((info) => info.family === 'IPv4');
      if (!ipv4) continue;
      try {
        socket.addMembership(MDNS_GROUP, ipv4.address);
        if (!ipv4.internal) joined.push(ipv4.address);
      } catch {
        // EADDRINUSE: still a member, as it should be.
      }
    }
    return joined;
  }
}

/** `modelferry on <hostname>`, or the configured name; dots are label separators in DNS. */
export function instanceName(configured: string, hostname: string): string {
  const name = configured.trim() !== '' ? configured.trim() : `modelferry on ${hostname.split('.')[0]}`;
  return truncateBytes(name.replace(/\./g, '-'), 63);
}

/** `name (n)`, kept within a DNS label's 63 bytes. */
export function numberedName(base: string, n: number): string {
  const suffix = ` (${n})`;
  return truncateBytes(base, 63 - Buffer.byteLength(suffix)) + suffix;
}

function truncateBytes(text: string, max: number): string {
  let result = text;
  while (Buffer.byteLength(result) > max) result = result.slice(0, -1);
  return result;
}

function rdataBytes(record: DnsRecord): Buffer {
  if (record.type === 'TXT') return txtBytes(record.data);
  if (record.type === 'SRV') {
    const srv: SrvData = record.data;
    const head = Buffer.alloc(6);
    head.writeUInt16BE(srv.priority ?? 0, 0);
    head.writeUInt16BE(srv.weight ?? 0, 2);
    head.writeUInt16BE(srv.port, 4);
    return Buffer.concat([head, Buffer.from(srv.target.toLowerCase())]);
  }
  return Buffer.from(String(record.data));
}

/**
 * bonjour-service keeps its multicast-dns socket private; the advertiser needs it to answer
 * and announce. Checked here, so a library change fails at start, loudly.
 */
function socketOf(bonjour: Bonjour): MulticastDns {
  const mdns = (bonjour as unknown as { server?: { mdns?: unknown } }).server?.mdns;
  if (!(mdns instanceof EventEmitter) || typeof (mdns as MulticastDns).respond !== 'function') {
    throw new Error('bonjour-service no longer exposes its mDNS socket as server.mdns');
  }
  return mdns as MulticastDns;
}

