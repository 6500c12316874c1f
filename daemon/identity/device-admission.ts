import { createPublicKey, randomBytes, timingSafeEqual, verify, type KeyObject } from 'node:crypto';
import { deviceAuthMessage, type AdmissionPolicy } from '../contract/device-auth.ts';
import { fail } from '../errors.ts';
import type { Clock } from '../clock.ts';
import type { Logger } from '../log.ts';
import type { Metrics } from '../metrics.ts';
import { READ_ONCE, type Database, type Table } from '../store/database.ts';

/** What the inventory shows per device. */
export type AdmissionState = 'open' | 'pending' | 'accepted' | 'rejected' | 'pinned';

/** One MAC's key and standing, kept in the database. */
export interface AdmissionRecord {
  mac: string;
  /** The device's Ed25519 public key: 32 bytes, base64. */
  publicKey: string;
  state: Exclude<AdmissionState, 'open'>;
  /** When the key was first seen (or preauthorized), ISO 8601. */
  since: string;
  /** Under pinned: another key this MAC offered since, refused; `accept` adopts it. */
  offeredKey?: string;
}

export interface AdmissionOptions {
  /** Read at each request: a reload changes it. */
  policy: () => AdmissionPolicy;
  /** How long a device token lasts. */
  tokenSeconds: () => number;
  /** Pending devices kept at most; past it the oldest pending one is forgotten. */
  maxPending: () => number;
  /** Sessions (device tokens) held at most; past it the one expiring first goes. */
  maxSessions: () => number;
}

/** How long a challenge may be answered: a device signs it at once. */
const CHALLENGE_SECONDS = 60;
/** Challenges outstanding at most (each 32 bytes and a MAC); the oldest goes first. */
const MAX_CHALLENGES = 4096;

/** An Ed25519 public key from its 32 raw bytes (base64), or undefined if it is not one. */
function parseDeviceKey(base64: string): KeyObject | undefined {
  const raw = Buffer.from(base64, 'base64');
  if (raw.length !== 32 || raw.toString('base64') !== base64) return undefined;
  try {
    return createPublicKey({ key: { kty: 'OKP', crv: 'Ed25519', x: raw.toString('base64url') }, format: 'jwk' });
  } catch {
    return undefined;
  }
}

interface Session {
  mac: string;
  expires: number;
}

/**
 * Device identity: each device has its own Ed25519 key pair and proves it by signing a
 * challenge, which yields a short-lived bearer token for its own MAC (as Mender's device
 * auth does). Verifying once per token keeps the signature off the poll path: a poll costs
 * one map lookup. Challenges are single-use, so a recorded exchange cannot be replayed;
 * tokens live in memory only, so a restart asks every device to prove its key again.
 */
export class DeviceAdmission {
  readonly #database: Database;
  readonly #options: AdmissionOptions;
  readonly #metrics: Metrics;
  readonly #log: Logger;
  readonly #clock: Clock;
  #table: Table<AdmissionRecord> | undefined;
  readonly #records = new Map<string, AdmissionRecord>();
  readonly #challenges = new Map<string, { mac: string; expires: number }>();
  readonly #sessions = new Map<string, Session>();

  constructor(parts: { database: Database; metrics: Metrics; log: Logger; clock: Clock }, options: AdmissionOptions) {
    this.#database = parts.database;
    this.#metrics = parts.metrics;
    this.#log = parts.log;
    this.#clock = parts.clock;
    this.#options = options;
  }

  async start(): Promise<void> {
    this.#table = this.#database.table<AdmissionRecord>('admission');
    for await (const [mac, record] of this.#table.iterator(READ_ONCE)) this.#records.set(mac, record);
  }

  async stop(): Promise<void> {
    this.#sessions.clear();
    this.#challenges.clear();
  }

  get policy(): AdmissionPolicy {
    return this.#options.policy();
  }

  /** A new single-use challenge for `mac`. */
  challenge(mac: string): { challenge: string; expiresInSeconds: number } {
    const now = this.#clock.now().getTime();
    if (this.#challenges.size >= MAX_CHALLENGES) this.#challenges.delete(this.#challenges.keys().next().value!);
    const challenge = randomBytes(32).toString('base64');
    this.#challenges.set(challenge, { mac, expires: now + CHALLENGE_SECONDS * 1000 });
    return { challenge, expiresInSeconds: CHALLENGE_SECONDS };
  }

  /**
   * A device token for `mac` once it proved `publicKey` by signing `challenge`, and the
   * policy admits that key. Refusals throw with their code; a refusal changes nothing but
   * what it records about the key (pending, offered).
   */
  async token(mac: string, proof: { publicKey: string; challenge: string; signature: string }): Promise<{ token: string; expiresInSeconds: number; admission: AdmissionState }> {
    const now = this.#clock.now();
    const issued = this.#challenges.get(proof.challenge);
    // Single use: a replayed exchange finds its challenge gone.
    this.#challenges.delete(proof.challenge);
    if (!issued || issued.mac !== mac || issued.expires < now.getTime()) {
      this.#refused(mac, 'challenge');
      fail('device_auth_failed', 'the challenge is unknown, already used, expired or for another MAC: ask for a new one (POST /v1/devices/{mac}/challenge)');
    }
    const key = parseDeviceKey(proof.publicKey);
    if (!key) fail('invalid_body', 'publicKey must be base64 of a 32-byte Ed25519 public key');
    const signature = Buffer.from(proof.signature, 'base64');
    if (signature.length !== 64 || !verify(null, deviceAuthMessage(mac, proof.challenge), key, signature)) {
      this.#refused(mac, 'signature');
      fail('device_auth_failed', 'the signature does not verify with the public key over modelferry-device-v1:<mac>:<challenge>');
    }
    const admission = await this.#admit(mac, proof.publicKey, now);
    const tokenSeconds = this.#options.tokenSeconds();
    return { token: this.#openSession(mac, now.getTime() + tokenSeconds * 1000), expiresInSeconds: tokenSeconds, admission };
  }

  /** The policy's verdict on a key that was proven; throws when it does not admit it. */
  async #admit(mac: string, publicKey: string, now: Date): Promise<AdmissionState> {
    const policy = this.policy;
    if (policy === 'open') return 'open';
    const record = this.#records.get(mac);
    if (!record) {
      if (policy === 'pinned') {
        await this.#put({ mac, publicKey, state: 'pinned', since: now.toISOString() });
        this.#log.info({ mac }, 'device key pinned on first use');
        return 'pinned';
      }
      this.#boundPending();
      await this.#put({ mac, publicKey, state: 'pending', since: now.toISOString() });
      this.#log.warn({ mac }, 'a new device waits for an operator to accept it (modelferry devices accept)');
      fail('device_pending', `device ${mac} is pending: an operator must accept it (modelferry devices accept ${mac}) or preauthorize its key`, { 'Retry-After': '60' });
    }
    if (!sameKey(record.publicKey, publicKey)) {
      if (record.state === 'pinned' && record.offeredKey !== publicKey) await this.#put({ ...record, offeredKey: publicKey });
      this.#refused(mac, 'key_mismatch');
      this.#log.warn({ mac, state: record.state }, 'a device offered a key other than the one this gateway knows for its MAC: refused');
      fail('device_auth_failed', `${mac} is known with another key; if the device was reflashed, an operator can accept its new key (modelferry devices accept ${mac})`);
    }
    if (record.state === 'rejected') {
      this.#refused(mac, 'rejected');
      fail('device_rejected', `device ${mac} was rejected by an operator`);
    }
    if (record.state === 'pending') fail('device_pending', `device ${mac} is still pending: an operator must accept it (modelferry devices accept ${mac})`, { 'Retry-After': '60' });
    return record.state;
  }

  /**
   * True when `header` carries a live device token for `mac` (any MAC when undefined: an
   * artifact is not per device). Under `open` no token is needed and this is not asked.
   */
  admits(header: string | undefined, mac: string | undefined): boolean {
    const token = bearerOf(header);
    if (token === undefined) return false;
    const session = this.#sessions.get(token);
    if (!session) return false;
    if (session.expires < this.#clock.now().getTime()) {
      this.#sessions.delete(token);
      return false;
    }
    return mac === undefined || session.mac === mac;
  }

  admissionOf(mac: string): AdmissionState {
    return this.policy === 'open' ? 'open' : this.#records.get(mac)?.state ?? 'pending';
  }

  records(state?: AdmissionRecord['state']): AdmissionRecord[] {
    return [...this.#records.values()].filter((record) => state === undefined || record.state === state);
  }

  /** An operator accepts `mac`: its pending key, or under pinned the new key it offered. */
  async accept(mac: string): Promise<AdmissionRecord> {
    const record = this.#records.get(mac);
    if (!record) fail('device_not_found', `no device ${mac} has offered a key to this gateway; preauthorize it instead`);
    const accepted: AdmissionRecord = { mac, publicKey: record.offeredKey ?? record.publicKey, state: 'accepted', since: this.#clock.now().toISOString() };
    await this.#put(accepted);
    this.#endSessions(mac);
    this.#log.info({ mac }, 'device accepted');
    return accepted;
  }

  /** An operator rejects `mac`: its tokens end now, and it gets 403 from here on. */
  async reject(mac: string): Promise<AdmissionRecord> {
    const record = this.#records.get(mac);
    if (!record) fail('device_not_found', `no device ${mac} has offered a key to this gateway`);
    const rejected: AdmissionRecord = { mac, publicKey: record.publicKey, state: 'rejected', since: this.#clock.now().toISOString() };
    await this.#put(rejected);
    this.#endSessions(mac);
    this.#log.warn({ mac }, 'device rejected');
    return rejected;
  }

  /** MACs with their keys, from a manufacturing list: accepted at once, whatever was known. */
  async preauthorize(entries: Array<{ mac: string; publicKey: string }>): Promise<number> {
    for (const { mac, publicKey } of entries) {
      if (!parseDeviceKey(publicKey)) fail('invalid_body', `the key for ${mac} is not base64 of a 32-byte Ed25519 public key`);
    }
    const since = this.#clock.now().toISOString();
    const batch = entries.map(({ mac, publicKey }) => ({ type: 'put' as const, key: mac, value: { mac, publicKey, state: 'accepted' as const, since } }));
    await this.#table!.batch(batch, { sync: true } as Record<string, unknown>);
    for (const { key, value } of batch) {
      if (this.#records.get(key)?.publicKey !== value.publicKey) this.#endSessions(key);
      this.#records.set(key, value);
    }
    this.#log.info({ devices: entries.length }, 'devices preauthorized');
    return entries.length;
  }

  #openSession(mac: string, expires: number): string {
    if (this.#sessions.size >= this.#options.maxSessions()) {
      // Tokens are issued in order of expiry (one lifetime for all): the first is the oldest.
      this.#sessions.delete(this.#sessions.keys().next().value!);
    }
    const token = randomBytes(24).toString('base64url');
    this.#sessions.set(token, { mac, expires });
    return token;
  }

  #endSessions(mac: string): void {
    for (const [token, session] of this.#sessions) if (session.mac === mac) this.#sessions.delete(token);
  }

  #boundPending(): void {
    const pending = this.records('pending').sort((a, b) => a.since.localeCompare(b.since));
    for (const oldest of pending.slice(0, Math.max(0, pending.length - this.#options.maxPending() + 1))) {
      this.#records.delete(oldest.mac);
      void this.#table!.del(oldest.mac);
    }
  }

  async #put(record: AdmissionRecord): Promise<void> {
    await this.#table!.put(record.mac, record, { sync: true } as Record<string, unknown>);
    this.#records.set(record.mac, record);
  }

  #refused(mac: string, reason: 'challenge' | 'signature' | 'key_mismatch' | 'rejected'): void {
    this.#metrics.deviceAuthRefusals.inc({ reason });
    if (reason !== 'key_mismatch') this.#log.info({ mac, reason }, 'device authentication refused');
  }
}

function sameKey(a: string, b: string): boolean {
  const x = Buffer.from(a, 'base64');
  const y = Buffer.from(b, 'base64');
  return x.length === y.length && timingSafeEqual(x, y);
}

export function bearerOf(header: string | undefined): string | undefined {
  const match = /^Bearer\s+(\S+)\s*$/i.exec(header ?? '');
  return match?.[1];
}
