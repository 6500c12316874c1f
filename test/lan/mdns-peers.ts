import { fileURLToPath } from 'node:url';
import type { LanHost, LanProcess } from './lan.ts';

// mDNS peers a device host runs against the gateway: bonjour-service's browser (the library
// the gateway uses) and python3-zeroconf (an independent implementation), as JSON lines.

const TOOLS = fileURLToPath(new URL('./tools/', import.meta.url));
/** Debian's interpreter: python3-zeroconf is installed for it, whatever else is on PATH. */
const PYTHON = '/usr/bin/python3';

export type Json = Record<string, unknown>;

export interface BrowsedService {
  name: string;
  fqdn: string;
  host: string;
  port: number;
  addresses: string[];
  txt: Record<string, string>;
}

export class Peer {
  readonly process: LanProcess;

  constructor(process: LanProcess) {
    this.process = process;
  }

  events(): Json[] {
    return this.process.lines.flatMap((line) => {
      try {
        return [JSON.parse(line) as Json];
      } catch {
        return [];
      }
    });
  }

  /** The first event (printed already or to come) that `match` accepts. */
  async waitFor(match: (event: Json) => boolean, timeoutMs = 20_000): Promise<Json> {
    const line = await this.process.waitForLine((text) => {
      try {
        return match(JSON.parse(text) as Json);
      } catch {
        return false;
      }
    }, timeoutMs);
    return JSON.parse(line) as Json;
  }

  ready(): Promise<Json> {
    return this.waitFor((event) => event.event === 'ready');
  }
}

/** bonjour-service's browser for _modelferry._tcp (tools/browse.mjs). */
export async function bonjourBrowser(host: LanHost): Promise<Peer & { query(): void }> {
  const peer = new Peer(host.spawn(process.execPath, [`${TOOLS}browse.mjs`]));
  await peer.ready();
  return Object.assign(peer, { query: () => peer.process.write('query\n') });
}

/** python3-zeroconf: `browse`, `sniff` or `hostile NAME` (tools/mdns_tool.py). */
export async function zeroconf(host: LanHost, ...args: string[]): Promise<Peer> {
  const peer = new Peer(host.spawn(PYTHON, ['-u', `${TOOLS}mdns_tool.py`, ...args]));
  if (args[0] !== 'hostile') await peer.ready();
  return peer;
}

export function serviceOf(event: Json): BrowsedService {
  return event.service as BrowsedService;
}

/** One ESP-IDF-style query (tools/mdns_tool.py query): the first response that answers it. */
export async function mdnsQuery(host: LanHost, instance: string, hostname: string, legacy = false): Promise<Json> {
  const result = await host.run(PYTHON, [`${TOOLS}mdns_tool.py`, 'query', instance, hostname, ...(legacy ? ['legacy'] : [])], { timeoutMs: 20_000 });
  if (result.code !== 0) throw new Error(`query from ${host.name}: exit ${result.code}: ${result.stderr}`);
  return JSON.parse(result.stdout.trim()) as Json;
}
