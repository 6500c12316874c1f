import { randomInt } from 'node:crypto';
import dgram from 'node:dgram';
import { EventEmitter } from 'node:events';
import os from 'node:os';
import { performance } from 'node:perf_hooks';
import { Bonjour } from 'bonjour-service';
import type { Logger } from '../log.ts';
import { SERVICE_TYPE, type DnsPacket } from './dns-records.ts';
import { hostAddresses, listeningAddresses, localHostName } from './host-addresses.ts';
import { Responder, type Action, type OutgoingPacket, type Peer, type ResponderStatus } from './responder.ts';

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

/** What /healthz and the status page say about discovery. */
export type DiscoveryStatus = { enabled: false } | ({ enabled: true } & ResponderStatus);

/** The part of multicast-dns (the socket under bonjour-service) the advertiser uses. */
interface MulticastDns extends EventEmitter {
  send(packet: OutgoingPacket, rinfo: Peer | undefined, cb: (error?: Error | null) => void): void;
}

const MDNS_GROUP = '224.0.0.251';
const GOODBYE_TIMEOUT_MS = 1000;

/**
 * Advertises the gateway as `_modelferry._tcp` on the LAN (docs/design.md, "LAN discovery"):
 * the socket and the timers of the responder (responder.ts), which holds every rule. This
 * part feeds it what arrives (packets, revisions, the machine's addresses, the time) and does
 * what it returns. The socket is bonjour-service's multicast-dns, on a socket of our own so
 * that group memberships can be renewed (#rejoin); bonjour-service's publish() is not used.
 */
export class Advertiser {
  readonly #options: AdvertiserOptions;
  readonly #log: Logger;
  #responder: Responder | undefined;
  #bonjour: Bonjour | undefined;
  #mdns: MulticastDns | undefined;
  #socket: dgram.Socket | undefined;
  #wakeTimer: NodeJS.Timeout | undefined;
  #addressTimer: NodeJS.Timeout | undefined;
  #unsubscribe: (() => void) | undefined;

  constructor(options: AdvertiserOptions, log: Logger) {
    this.#options = options;
    this.#log = log;
  }

  async start(): Promise<void> {
    const responder = new Responder({
      name: this.#options.name,
      hostname: os.hostname(),
      host: localHostName(),
      port: this.#options.port(),
      tlsPort: this.#options.tlsPort(),
      gatewayId: this.#options.gatewayId,
      priority: this.#options.priority,
      revision: this.#options.revision(),
      addresses: this.#readAddresses(),
      minAnnounceIntervalMs: this.#options.minAnnounceIntervalSeconds * 1000,
      maxResponsesPerSecond: this.#options.maxResponsesPerSecond,
      random: (below) => randomInt(below),
    });
    this.#responder = responder;

    let socketError: Error | undefined;
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
    const receive = (packet: DnsPacket, rinfo: Peer) => this.#step((now) => responder.receive(packet, rinfo, now));
    mdns.on('query', receive);
    mdns.on('response', receive);
    this.#unsubscribe = this.#options.onRevisionChange(() => this.#step((now) => responder.revisionChanged(this.#options.revision(), now)));
    this.#addressTimer = setInterval(() => this.#checkAddresses(), this.#options.addressCheckSeconds * 1000);
    this.#addressTimer.unref();
    this.#step((now) => responder.start(now));
  }

  async stop(): Promise<void> {
    this.#unsubscribe?.();
    this.#unsubscribe = undefined;
    clearInterval(this.#addressTimer);
    clearTimeout(this.#wakeTimer);
    const actions = this.#responder?.stop() ?? [];
    const mdns = this.#mdns;
    if (mdns) {
      // Goodbyes: devices and browsers drop the gateway now instead of when the TTLs run out.
      await Promise.all(actions.flatMap((action) => action.kind === 'send'
        ? [new Promise<void>((resolve) => {
          const timer = setTimeout(resolve, GOODBYE_TIMEOUT_MS);
          mdns.send(action.packet, action.to === 'group' ? undefined : action.to, () => {
            clearTimeout(timer);
            resolve();
          });
        })]
        : []));
    }
    this.#tell(actions);
    const bonjour = this.#bonjour;
    this.#bonjour = undefined;
    this.#mdns = undefined;
    this.#socket = undefined;
    if (bonjour) await new Promise<void>((resolve) => bonjour.destroy(() => resolve()));
  }

  status(): ResponderStatus {
    return this.#responder!.status();
  }

  #readAddresses(): string[] {
    return listeningAddresses(this.#options.httpHost, hostAddresses());
  }

  #fail(error: Error): void {
    this.#responder?.failed(error.message);
    clearTimeout(this.#wakeTimer);
    this.#log.error({ err: error }, 'mDNS socket failed: the gateway is not advertised; devices need its URL configured');
  }

  /**
   * Runs one step of the responder and does what it returns. Nothing a packet holds may throw
   * out of an event handler and stop the daemon (multicast-dns encodes as it sends).
   */
  #step(run: (now: number) => Action[]): void {
    try {
      const actions = run(performance.now());
      clearTimeout(this.#wakeTimer);
      this.#wakeTimer = undefined;
      const wake = actions.find((action) => action.kind === 'wake');
      if (wake) {
        const responder = this.#responder!;
        this.#wakeTimer = setTimeout(() => this.#step((now) => responder.wake(now)), Math.max(0, wake.at - performance.now()));
      }
      for (const action of actions) {
        if (action.kind === 'send') this.#mdns?.send(action.packet, action.to === 'group' ? undefined : action.to, () => undefined);
      }
      this.#tell(actions);
    } catch (error) {
      this.#log.warn({ err: error }, 'mDNS packet handling failed');
    }
  }

  /** The log lines of what happened. */
  #tell(actions: Action[]): void {
    const status = this.#responder!.status();
    for (const action of actions) {
      if (action.kind === 'announced') {
        if (action.withoutAddress) {
          this.#log.warn({ httpHost: this.#options.httpHost }, 'mDNS: no address of this machine that devices could reach the API on; the service is advertised without one');
        }
        if (action.reason === 'start') {
          this.#log.info({ name: status.name, type: SERVICE_TYPE, host: status.host, port: status.port, addresses: status.addresses, txt: status.txt }, 'mDNS advertisement announced');
        } else {
          this.#log.debug({ name: status.name, addresses: status.addresses, rev: status.txt.rev, reason: action.cause }, 'mDNS advertisement updated');
        }
      } else if (action.kind === 'renamed') {
        this.#log.warn({ name: action.from, renamedTo: action.to, reason: action.reason }, 'mDNS name in use on the LAN: advertising under another name');
      } else if (action.kind === 'addresses-changed') {
        this.#log.info({ from: action.from, to: action.to }, 'machine addresses changed: re-announcing');
      } else if (action.kind === 'reconnected') {
        this.#log.info({ addresses: action.rejoined }, 'network interface came back: re-announcing');
      } else if (action.kind === 'withdrawn') {
        this.#log.info({ name: status.name }, 'mDNS advertisement withdrawn');
      }
    }
  }

  #checkAddresses(): void {
    const responder = this.#responder!;
    this.#step((now) => {
      const rejoined = responder.state === 'failed' ? [] : this.#rejoin();
      return responder.addressesRead(this.#readAddresses(), rejoined, now);
    });
  }

  /**
   * Joins the mDNS group on every IPv4 interface again. An interface that went away and
   * came back (a Wi-Fi adapter reconnecting) has the same address but lost the membership,
   * and multicast-dns, which keys memberships by address, never renews it: the gateway
   * would stop hearing queries. Returns the addresses where joining was needed.
   */
  #rejoin(): string[] {
    const socket = this.#socket;
    if (!socket) return [];
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

/**
 * bonjour-service keeps its multicast-dns socket private; the advertiser needs it to answer
 * and announce. Checked here, so a library change fails at start, loudly.
 */
function socketOf(bonjour: Bonjour): MulticastDns {
  const mdns = (bonjour as unknown as { server?: { mdns?: unknown } }).server?.mdns;
  if (!(mdns instanceof EventEmitter) || typeof (mdns as MulticastDns).send !== 'function') {
    throw new Error('bonjour-service no longer exposes its mDNS socket as server.mdns');
  }
  return mdns as MulticastDns;
}
