// The mDNS rules of the gateway's advertisement (RFC 6762, RFC 6763), apart from sockets and
// timers: which name to use, probing for it and giving way on a conflict, which answer a query
// gets and where it goes, when to announce, re-announce and say goodbye. Every input carries
// the time (`now`, milliseconds on a monotonic clock); every output is an action the socket
// layer (advertiser.ts) executes: send a packet, wake the responder at a time, or tell what
// happened (for the log). Nothing here reads a clock, a socket or a random source.

import {
  answerQuery, asRecord, decodeTxt, goodbyesOf, instanceFqdn, recordKey, recordsOf, sameName, SERVICE_TYPE, txtBytes,
  type DnsPacket, type DnsRecord, type SrvData,
} from './dns-records.ts';

export const MDNS_PORT = 5353;
const PROBE_INTERVAL_MS = 250;
const PROBES = 3;
/** RFC 6762 section 6: a record is multicast at most once a second, in answer to a probe every 250 ms. */
const MULTICAST_SPACING_MS = 1000;
const PROBE_ANSWER_SPACING_MS = 250;
/** RFC 6762 section 8.3: the announcement goes out twice, a second apart, in case one is lost. */
const ANNOUNCE_REPEAT_MS = 1000;
/** RFC 6762 section 8.1: after 15 conflicts in 10 s, wait 5 s before probing again. */
const CONFLICT_WINDOW_MS = 10_000;
const CONFLICT_BURST = 15;
const CONFLICT_BACKOFF_MS = 5000;
/** RFC 6762 section 6.7: answers to legacy unicast queries carry at most 10 s. */
const LEGACY_TTL = 10;
/** RFC 6762 section 18.4: the authoritative-answer bit, set in every mDNS response. */
const AUTHORITATIVE = 1 << 10;

export interface Peer {
  address: string;
  port: number;
}

export interface Question {
  name: string;
  type: string;
  class?: string;
}

/** A packet to send, in the shape multicast-dns (dns-packet) encodes. */
export type OutgoingPacket =
  | { type: 'query'; questions: Question[]; authorities: DnsRecord[] }
  | { type: 'response'; flags: number; id?: number; questions?: Question[]; answers: DnsRecord[]; additionals: DnsRecord[] };

export type UpdateCause = 'revision' | 'addresses' | 'reconnected';

export type Action =
  /** Send `packet` to the mDNS group, or directly to one peer. */
  | { kind: 'send'; to: 'group' | Peer; packet: OutgoingPacket }
  /** Call wake() at `at`. The last step's wake replaces any earlier one; a step without one leaves nothing to wake for. */
  | { kind: 'wake'; at: number }
  | { kind: 'announced'; reason: 'start' | 'update'; cause?: UpdateCause; withoutAddress: boolean }
  | { kind: 'renamed'; from: string; to: string; reason: string }
  | { kind: 'addresses-changed'; from: string[]; to: string[] }
  | { kind: 'reconnected'; rejoined: string[] }
  | { kind: 'withdrawn' };

export type ResponderState = 'stopped' | 'probing' | 'announced' | 'failed';

export interface ResponderSettings {
  /** Configured instance name; '' means `modelferry on <hostname>`. */
  name: string;
  hostname: string;
  /** `<hostname>.local`, the SRV target and the name of the address records. */
  host: string;
  port: number;
  /** The port HTTPS listens on; null when it does not. */
  tlsPort: number | null;
  gatewayId: string;
  priority: number;
  revision: string;
  /** The machine's addresses the API answers on (host-addresses.ts). */
  addresses: string[];
  /** Updates are announced at most this often; later ones coalesce. */
  minAnnounceIntervalMs: number;
  /** Responses of any kind per second, whatever arrives (a flood of queries is not a flood of answers). */
  maxResponsesPerSecond: number;
  /** An integer in [0, below): spreads the first probe (RFC 6762 section 8.1). */
  random: (below: number) => number;
}

export interface ResponderStatus {
  state: ResponderState;
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

/**
 * The advertisement of one gateway as `_modelferry._tcp`. Unlike bonjour-service's own
 * publish(), it announces a new revision or address instead of repeating the records it took
 * at start, renames on a name conflict instead of stopping, and answers a query in one packet
 * with everything a resolver needs (dns-records.ts).
 */
export class Responder {
  readonly #settings: ResponderSettings;
  #state: ResponderState = 'stopped';
  #error: string | undefined;
  readonly #baseName: string;
  #instance: string;
  #revision: string;
  #addresses: string[];
  /** What is advertised, or proposed while probing. */
  #records: DnsRecord[] = [];
  /** Records announced before the last update and not in it: sent once more with TTL 0. */
  #retired: DnsRecord[] = [];
  #renames = 0;
  #announcements = 0;
  #conflicts: number[] = [];
  readonly #lastMulticast = new Map<string, number>();
  #lastAnnounceAt = -Infinity;
  #responseBudget = 0;
  #budgetAt = -Infinity;
  #probesSent = 0;
  #probeAt: number | undefined;
  #repeatAt: number | undefined;
  #update: { at: number; cause: UpdateCause; force: boolean } | undefined;

  constructor(settings: ResponderSettings) {
    this.#settings = settings;
    this.#baseName = instanceName(settings.name, settings.hostname);
    this.#instance = this.#baseName;
    this.#revision = settings.revision;
    this.#addresses = [...settings.addresses];
  }

  get state(): ResponderState {
    return this.#state;
  }

  /** Starts probing for the configured name. */
  start(now: number): Action[] {
    return this.#withWake(this.#probe(now));
  }

  /** Withdraws the advertisement: goodbyes if it was announced, and nothing after. */
  stop(): Action[] {
    const wasAnnounced = this.#state === 'announced';
    this.#state = 'stopped';
    this.#clearDeadlines();
    if (!wasAnnounced) return [];
    return [this.#toGroup({ answers: goodbyesOf([...this.#records, ...this.#retired]) }), { kind: 'withdrawn' }];
  }

  /** The socket failed: nothing is advertised, nothing more is sent. */
  failed(message: string): void {
    this.#state = 'failed';
    this.#error = message;
    this.#clearDeadlines();
  }

  /** A packet that arrived from `from`. Whatever it holds, nothing is thrown. */
  receive(packet: DnsPacket, from: Peer, now: number): Action[] {
    if (packet === null || typeof packet !== 'object') return this.#withWake([]);
    if (packet.type === 'query') return this.#withWake(this.#onQuery(packet, from, now));
    if (packet.type === 'response') return this.#withWake(this.#onResponse(packet, now));
    return this.#withWake([]);
  }

  /** Time passed: whatever was due by `now` happens. */
  wake(now: number): Action[] {
    const actions: Action[] = [];
    for (;;) {
      const due = this.#nextDeadline();
      if (due === undefined || due.at > now) break;
      if (due.what === 'probe') {
        this.#probeAt = undefined;
        actions.push(...this.#probeStep(now));
      } else if (due.what === 'repeat') {
        this.#repeatAt = undefined;
        actions.push(...this.#repeatAnnouncement(now));
      } else {
        const update = this.#update!;
        this.#update = undefined;
        actions.push(...this.#applyUpdate(update.cause, update.force, now));
      }
    }
    return this.#withWake(actions);
  }

  /** The catalog has a new revision: the TXT record changes. */
  revisionChanged(revision: string, now: number): Action[] {
    this.#revision = revision;
    return this.#withWake(this.#scheduleUpdate('revision', false, now));
  }

  /**
   * The machine's addresses, read again; `rejoined` are those on which the mDNS group had to
   * be joined again (an interface that went away and came back with the same address).
   */
  addressesRead(addresses: string[], rejoined: string[], now: number): Action[] {
    if (addresses.join(',') !== this.#addresses.join(',')) {
      const from = this.#addresses;
      this.#addresses = [...addresses];
      return this.#withWake([{ kind: 'addresses-changed', from, to: [...addresses] }, ...this.#scheduleUpdate('addresses', false, now)]);
    }
    if (rejoined.length > 0) {
      // Same records, but whoever listens on the interface that came back has not heard them.
      return this.#withWake([{ kind: 'reconnected', rejoined: [...rejoined] }, ...this.#scheduleUpdate('reconnected', true, now)]);
    }
    return this.#withWake([]);
  }

  status(): ResponderStatus {
    const status: ResponderStatus = {
      state: this.#state,
      name: this.#instance,
      configuredName: this.#baseName,
      service: SERVICE_TYPE.replace(/\.local$/, ''),
      host: this.#settings.host,
      port: this.#settings.port,
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
    const { tlsPort } = this.#settings;
    return {
      txtvers: '1',
      api: '/v1',
      id: this.#settings.gatewayId,
      prio: String(this.#settings.priority),
      rev: this.#revision,
      tls: tlsPort === null ? '0' : '1',
      ...(tlsPort === null ? {} : { tlsport: String(tlsPort) }),
    };
  }

  #build(): DnsRecord[] {
    return recordsOf({
      instance: this.#instance, host: this.#settings.host, port: this.#settings.port, txt: this.#txt(), addresses: this.#addresses,
    });
  }

  #ownRecords(): DnsRecord[] {
    const fqdn = instanceFqdn(this.#instance);
    return this.#records.filter((record) => sameName(record.name, fqdn));
  }

  // --- time ---

  #nextDeadline(): { at: number; what: 'probe' | 'repeat' | 'update' } | undefined {
    // On a tie, the first here: an update announces, and so replaces the repeat of the last one.
    const candidates = [
      { at: this.#probeAt, what: 'probe' as const },
      { at: this.#update?.at, what: 'update' as const },
      { at: this.#repeatAt, what: 'repeat' as const },
    ].filter((candidate): candidate is { at: number; what: 'probe' | 'repeat' | 'update' } => candidate.at !== undefined);
    let next = candidates[0];
    for (const candidate of candidates) if (next && candidate.at < next.at) next = candidate;
    return next;
  }

  #clearDeadlines(): void {
    this.#probeAt = undefined;
    this.#repeatAt = undefined;
    this.#update = undefined;
  }

  #withWake(actions: Action[]): Action[] {
    const next = this.#nextDeadline();
    return next ? [...actions, { kind: 'wake', at: next.at }] : actions;
  }

  // --- probing and naming (RFC 6762 sections 8 and 9) ---

  #probe(now: number): Action[] {
    this.#state = 'probing';
    this.#records = this.#build();
    this.#repeatAt = undefined;
    this.#update = undefined;
    this.#conflicts = this.#conflicts.filter((at) => now - at < CONFLICT_WINDOW_MS);
    const backoff = this.#conflicts.length >= CONFLICT_BURST ? CONFLICT_BACKOFF_MS : 0;
    this.#probesSent = 0;
    this.#probeAt = now + backoff + this.#settings.random(PROBE_INTERVAL_MS);
    return [];
  }

  #probeStep(now: number): Action[] {
    if (this.#probesSent === PROBES) return this.#announce('start', undefined, now);
    this.#probesSent++;
    this.#probeAt = now + PROBE_INTERVAL_MS;
    // Our proposed records go in the authority section, so two gateways probing the same
    // name at the same moment can tell which of them keeps it.
    return [{
      kind: 'send', to: 'group',
      packet: { type: 'query', questions: [{ name: instanceFqdn(this.#instance), type: 'ANY' }], authorities: this.#ownRecords() },
    }];
  }

  #rename(reason: string, now: number): Action[] {
    const from = this.#instance;
    this.#renames++;
    this.#conflicts.push(now);
    this.#instance = numberedName(this.#baseName, this.#renames + 1);
    this.#retired = [];
    return [{ kind: 'renamed', from, to: this.#instance, reason }, ...this.#probe(now)];
  }

  /**
   * Records another host sent for our instance name that differ from ours; our own packets
   * (looped back, or sent before a revision change) carry our gateway id.
   */
  #conflicting(records: unknown): DnsRecord[] {
    const fqdn = instanceFqdn(this.#instance);
    const ours = this.#ownRecords().map(recordKey);
    const conflicting: DnsRecord[] = [];
    for (const value of listOf(records)) {
      const record = asRecord(value);
      if (!record || record.ttl === 0 || !sameName(record.name, fqdn)) continue;
      if (record.type === 'TXT') {
        if (decodeTxt(record.data).id !== this.#settings.gatewayId) conflicting.push(record);
      } else if (record.type === 'SRV') {
        if (!ours.includes(recordKey(record))) conflicting.push(record);
      }
    }
    return conflicting;
  }

  /** RFC 6762 section 8.2, simplified to the TXT (or SRV) data: the lexicographically later one keeps the name. */
  #weLose(theirs: DnsRecord[]): boolean {
    const compare = (type: 'TXT' | 'SRV') => {
      const mine = this.#ownRecords().find((record) => record.type === type);
      const other = theirs.find((record) => record.type === type);
      if (!mine || !other) return undefined;
      return Buffer.compare(rdataBytes(mine), rdataBytes(other));
    };
    return (compare('TXT') ?? compare('SRV') ?? 0) < 0;
  }

  // --- answering ---

  #onResponse(packet: DnsPacket, now: number): Action[] {
    if (this.#state !== 'probing' && this.#state !== 'announced') return [];
    const theirs = this.#conflicting([...listOf(packet.answers), ...listOf(packet.additionals)]);
    if (theirs.length === 0) return [];
    if (this.#state === 'probing') return this.#rename('another host answered for the name', now);
    if (this.#weLose(theirs)) return this.#rename('another host announced the same name', now);
    // We keep the name: say so, so that caches hold our records rather than theirs.
    return this.#multicast(this.#ownRecords(), { spacingMs: MULTICAST_SPACING_MS, now });
  }

  #onQuery(packet: DnsPacket, from: Peer, now: number): Action[] {
    if (this.#state === 'probing') {
      // A simultaneous probe for the same name: the one whose data sorts first gives way.
      const theirs = this.#conflicting(packet.authorities);
      return theirs.length > 0 && this.#weLose(theirs) ? this.#rename('another host is probing for the same name', now) : [];
    }
    if (this.#state !== 'announced') return [];
    const { answers, additionals } = answerQuery(packet, this.#records);
    if (answers.length === 0) return [];

    if (from.port !== MDNS_PORT) {
      // A legacy unicast query (a plain DNS resolver): answer it directly, as DNS does.
      if (!this.#takeBudget(now)) return [];
      const short = (records: DnsRecord[]) => records.map((record) => ({ ...record, ttl: Math.min(record.ttl, LEGACY_TTL), flush: false }));
      // Only the questions we answer are echoed: they name our records, so they encode.
      const questions = listOf(packet.questions).flatMap((question) => {
        const name = (question as { name?: unknown } | null)?.name;
        return typeof name === 'string' && answers.some((record) => sameName(record.name, name))
          ? [{ name, type: String((question as { type?: unknown }).type), class: 'IN' }] : [];
      });
      return [{
        kind: 'send', to: { address: from.address, port: from.port },
        packet: {
          type: 'response', id: isDnsId(packet.id) ? packet.id : 0, flags: AUTHORITATIVE, questions,
          answers: short(answers), additionals: short(additionals),
        },
      }];
    }
    const isProbe = listOf(packet.authorities).length > 0;
    const sent = this.#multicast(answers, { spacingMs: isProbe ? PROBE_ANSWER_SPACING_MS : MULTICAST_SPACING_MS, additionals, now });
    if (sent.length > 0 || !this.#takeBudget(now)) return sent;
    // Multicast a moment ago, but this querier may have started listening since (or asked
    // for a unicast answer, the QU bit): it gets the answer directly.
    return [{ kind: 'send', to: { address: from.address, port: from.port }, packet: response({ answers, additionals }) }];
  }

  #takeBudget(now: number): boolean {
    if (now - this.#budgetAt >= 1000) {
      this.#budgetAt = now;
      this.#responseBudget = this.#settings.maxResponsesPerSecond;
    }
    if (this.#responseBudget <= 0) return false;
    this.#responseBudget--;
    return true;
  }

  /**
   * Multicasts the records not multicast within `spacingMs` (all of them when spacingMs is
   * 0), within the response budget unless `force`.
   */
  #multicast(records: DnsRecord[], options: { spacingMs: number; now: number; force?: boolean; additionals?: DnsRecord[] }): Action[] {
    const { now } = options;
    const due = records.filter((record) => now - (this.#lastMulticast.get(recordKey(record)) ?? -Infinity) >= options.spacingMs);
    if (due.length === 0 || (!options.force && !this.#takeBudget(now))) return [];
    for (const record of due) this.#lastMulticast.set(recordKey(record), now);
    return [this.#toGroup({ answers: due, additionals: options.additionals ?? [] })];
  }

  #toGroup(packet: { answers: DnsRecord[]; additionals?: DnsRecord[] }): Action {
    return { kind: 'send', to: 'group', packet: response(packet) };
  }

  // --- announcing and updates ---

  #announce(reason: 'start' | 'update', cause: UpdateCause | undefined, now: number): Action[] {
    this.#state = 'announced';
    this.#records = this.#build();
    // Each revision is a new TXT record: forget when old ones went out, or this map would grow forever.
    const current = new Set(this.#records.map(recordKey));
    for (const key of this.#lastMulticast.keys()) if (!current.has(key)) this.#lastMulticast.delete(key);
    this.#lastAnnounceAt = now;
    this.#announcements++;
    this.#repeatAt = now + ANNOUNCE_REPEAT_MS;
    return [...this.#multicastAnnouncement(now), { kind: 'announced', reason, cause, withoutAddress: this.#addresses.length === 0 }];
  }

  #multicastAnnouncement(now: number): Action[] {
    return this.#multicast([...this.#records, ...goodbyesOf(this.#retired)], { spacingMs: 0, force: true, now });
  }

  #repeatAnnouncement(now: number): Action[] {
    const sent = this.#multicastAnnouncement(now);
    this.#retired = [];
    return sent;
  }

  /**
   * A change to announce: at once, or when the minimum interval since the last announcement
   * has passed. Without `force`, only when the records did change. While probing, the
   * announcement that ends the probe carries it.
   */
  #scheduleUpdate(cause: UpdateCause, force: boolean, now: number): Action[] {
    if (this.#state === 'probing') {
      this.#records = this.#build();
      return [];
    }
    if (this.#state !== 'announced' || this.#update) return [];
    this.#update = { at: Math.max(now, this.#lastAnnounceAt + this.#settings.minAnnounceIntervalMs), cause, force };
    return [];
  }

  #applyUpdate(cause: UpdateCause, force: boolean, now: number): Action[] {
    const before = new Set(this.#records.map(recordKey));
    const next = this.#build();
    const nextKeys = new Set(next.map(recordKey));
    // Address records and the old TXT that are gone are withdrawn in the same packet.
    const gone = this.#records.filter((record) => !nextKeys.has(recordKey(record)) && record.type !== 'TXT');
    this.#retired = [...this.#retired.filter((record) => !nextKeys.has(recordKey(record))), ...gone];
    if (!force && gone.length === 0 && next.every((record) => before.has(recordKey(record)))) return [];
    return this.#announce('update', cause, now);
  }
}

function response(packet: { answers: DnsRecord[]; additionals?: DnsRecord[] }): OutgoingPacket {
  return { type: 'response', flags: AUTHORITATIVE, answers: packet.answers, additionals: packet.additionals ?? [] };
}

function isDnsId(value: unknown): value is number {
  return Number.isInteger(value) && (value as number) >= 0 && (value as number) <= 0xffff;
}

/** A field of a decoded (possibly hostile) packet as a list: anything but an array is empty. */
function listOf(value: unknown): unknown[] {
  return Array.isArray(value) ? value : [];
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
