// The DNS-SD records the gateway owns and how it answers a query with them. Pure functions:
// the advertiser (advertiser.ts) sends what these return.
//
// Packets are in the shape multicast-dns (under bonjour-service) decodes and encodes
// (dns-packet): TXT data is a list of strings or buffers, SRV data an object.

export const SERVICE_TYPE = '_modelferry._tcp.local';
const SERVICES_META = '_services._dns-sd._udp.local';

// RFC 6762 section 10: records naming a host (SRV, A, AAAA) live 120 s, others 75 minutes.
const HOST_TTL = 120;
const OTHER_TTL = 4500;

export interface SrvData {
  port: number;
  target: string;
  priority?: number;
  weight?: number;
}

export type TxtData = Array<string | Buffer> | string | Buffer;

export type DnsRecord =
  | { name: string; type: 'PTR'; ttl: number; flush?: boolean; data: string }
  | { name: string; type: 'SRV'; ttl: number; flush?: boolean; data: SrvData }
  | { name: string; type: 'TXT'; ttl: number; flush?: boolean; data: TxtData }
  | { name: string; type: 'A' | 'AAAA'; ttl: number; flush?: boolean; data: string };

/** What dns-packet decodes; fields of hostile packets may be anything, so all are checked. */
export interface DnsPacket {
  id?: number;
  type?: string;
  flags?: number;
  questions?: Array<{ name?: unknown; type?: unknown; class?: unknown }>;
  answers?: unknown[];
  authorities?: unknown[];
  additionals?: unknown[];
}

export interface Advertisement {
  /** The instance name, e.g. `modelferry on pi` (no dots). */
  instance: string;
  /** `<hostname>.local` */
  host: string;
  port: number;
  txt: Record<string, string>;
  addresses: string[];
}

export function instanceFqdn(instance: string): string {
  return `${instance}.${SERVICE_TYPE}`;
}

export function txtStrings(txt: Record<string, string>): string[] {
  return Object.entries(txt).map(([key, value]) => `${key}=${value}`);
}

/** Every record of the advertisement, unique ones (SRV, TXT, addresses) with cache-flush set. */
export function recordsOf(ad: Advertisement): DnsRecord[] {
  const fqdn = instanceFqdn(ad.instance);
  const records: DnsRecord[] = [
    { name: SERVICE_TYPE, type: 'PTR', ttl: OTHER_TTL, data: fqdn },
    { name: fqdn, type: 'SRV', ttl: HOST_TTL, flush: true, data: { port: ad.port, target: ad.host, priority: 0, weight: 0 } },
    { name: fqdn, type: 'TXT', ttl: OTHER_TTL, flush: true, data: txtStrings(ad.txt) },
    { name: SERVICES_META, type: 'PTR', ttl: OTHER_TTL, data: SERVICE_TYPE },
  ];
  for (const address of ad.addresses) {
    records.push({ name: ad.host, type: address.includes(':') ? 'AAAA' : 'A', ttl: HOST_TTL, flush: true, data: address });
  }
  return records;
}

/** The same records with TTL 0: "forget these" (goodbye). */
export function goodbyesOf(records: DnsRecord[]): DnsRecord[] {
  return records.map((record) => ({ ...record, ttl: 0, flush: false }));
}

export function sameName(a: string, b: string): boolean {
  return a.toLowerCase() === b.toLowerCase();
}

export function recordKey(record: DnsRecord): string {
  return `${record.name.toLowerCase()}|${record.type}|${dataKey(record.data)}`;
}

function dataKey(data: unknown): string {
  if (Buffer.isBuffer(data)) return data.toString('latin1');
  if (Array.isArray(data)) return data.map(dataKey).join('\u0000');
  if (data !== null && typeof data === 'object') {
    const srv = data as SrvData;
    return `${srv.port}|${String(srv.target).toLowerCase()}`;
  }
  return String(data).toLowerCase();
}

/** Decoded record fields, or undefined when the value is not a record we can compare. */
export function asRecord(value: unknown): DnsRecord | undefined {
  if (value === null || typeof value !== 'object') return undefined;
  const { name, type, ttl, data } = value as { name?: unknown; type?: unknown; ttl?: unknown; data?: unknown };
  if (typeof name !== 'string' || typeof type !== 'string' || typeof ttl !== 'number') return undefined;
  if ((type === 'PTR' || type === 'A' || type === 'AAAA') && typeof data === 'string') return { name, type, ttl, data };
  if (type === 'SRV' && data !== null && typeof data === 'object' && typeof (data as SrvData).port === 'number'
    && typeof (data as SrvData).target === 'string') return { name, type, ttl, data: data as SrvData };
  if (type === 'TXT' && (Array.isArray(data) || Buffer.isBuffer(data) || typeof data === 'string')) return { name, type, ttl, data: data as TxtData };
  return undefined;
}

/** TXT data as key/value pairs (keys lower-cased; a key without `=` has the value ''). */
export function decodeTxt(data: TxtData): Record<string, string> {
  const entries = Array.isArray(data) ? data : [data];
  const txt: Record<string, string> = {};
  for (const entry of entries) {
    const text = Buffer.isBuffer(entry) ? entry.toString('utf8') : String(entry);
    const eq = text.indexOf('=');
    const key = (eq < 0 ? text : text.slice(0, eq)).toLowerCase();
    if (key !== '' && !(key in txt)) txt[key] = eq < 0 ? '' : text.slice(eq + 1);
  }
  return txt;
}

/** TXT data as the bytes a DNS packet carries (length-prefixed strings), for ordering. */
export function txtBytes(data: TxtData): Buffer {
  const entries = Array.isArray(data) ? data : [data];
  return Buffer.concat(entries.flatMap((entry) => {
    const bytes = Buffer.isBuffer(entry) ? entry : Buffer.from(String(entry));
    return [Buffer.from([Math.min(bytes.length, 255)]), bytes.subarray(0, 255)];
  }));
}

export interface Answer {
  answers: DnsRecord[];
  additionals: DnsRecord[];
}

/**
 * Everything `query` asks of `records`, in one response: answers to every question of the
 * packet, and the records a resolver needs next as additionals (RFC 6763 section 12: a PTR
 * brings its SRV, TXT and addresses; an SRV its addresses). So a device asking once, for
 * the PTR alone or for PTR, SRV, TXT and A together, gets all it needs in one packet.
 * Answers the querier already holds with at least half their TTL left (its known answers)
 * are left out (RFC 6762 section 7.1).
 */
export function answerQuery(query: DnsPacket, records: DnsRecord[]): Answer {
  const answers = new Map<string, DnsRecord>();
  for (const question of Array.isArray(query.questions) ? query.questions : []) {
    if (typeof question?.name !== 'string' || typeof question.type !== 'string') continue;
    for (const record of records) {
      if (sameName(record.name, question.name) && (question.type === 'ANY' || question.type === record.type)) {
        answers.set(recordKey(record), record);
      }
    }
  }
  for (const known of Array.isArray(query.answers) ? query.answers : []) {
    const record = asRecord(known);
    if (!record) continue;
    const ours = answers.get(recordKey(record));
    if (ours && record.ttl >= ours.ttl / 2) answers.delete(recordKey(record));
  }

  const additionals = new Map<string, DnsRecord>();
  const add = (name: string, types: string[]) => {
    for (const record of records) {
      const key = recordKey(record);
      if (sameName(record.name, name) && types.includes(record.type) && !answers.has(key)) additionals.set(key, record);
    }
  };
  for (const answer of answers.values()) {
    if (answer.type === 'PTR' && sameName(answer.name, SERVICE_TYPE)) add(answer.data, ['SRV', 'TXT']);
  }
  for (const record of [...answers.values(), ...additionals.values()]) {
    if (record.type === 'SRV') add(record.data.target, ['A', 'AAAA']);
  }
  return { answers: [...answers.values()], additionals: [...additionals.values()] };
}
