import { createServer, type IncomingMessage, type RequestListener, type Server, type ServerResponse } from 'node:http';
import { createServer as createHttpsServer, type Server as HttpsServer } from 'node:https';
import type { AddressInfo, Socket } from 'node:net';
import { createSecureContext, TLSSocket, type SecureContext } from 'node:tls';
import type { Logger } from '../log.ts';
import { ConnectionGate, type RefusalChannel } from './connection-gate.ts';

export interface HttpServerOptions {
  host: string;
  /** Plain HTTP on `port`; false: none. */
  plain: boolean;
  port: number;
  /** HTTPS on its own port with this certificate and key; null: none. */
  tls: { port: number; cert: string; key: string } | null;
  shutdownGraceSeconds: number;
  headersTimeoutSeconds: number;
  requestTimeoutSeconds: number;
  idleTimeoutSeconds: number;
  keepAliveTimeoutSeconds: number;
  maxConnections: number;
  maxConnectionsPerAddress: number;
  /** Runs first at stop: releases what holds requests open (long polls). */
  onDrain: () => void;
}

/** Node checks header and request deadlines on a timer; its default (30 s) would let a
 * slow client overstay a 10 s header timeout threefold. */
const DEADLINE_CHECK_MS = 1000;
/** Told to clients refused at the connection caps. */
const CONNECTION_RETRY_SECONDS = 5;
/**
 * A connection refused at the caps on the HTTPS port is told so after a handshake (before
 * it, nothing it could read can be sent). Past this many such handshakes at once, or this
 * long for one, it is cut without an answer: a flood must not cost the gateway more.
 */
const MAX_TLS_REFUSALS = 64;
const TLS_REFUSAL_HANDSHAKE_MS = 5000;

type Scheme = 'http' | 'https';

/**
 * The listening sockets: plain HTTP, HTTPS or both, with one request listener and one set
 * of connection caps between them. Stopping refuses new connections, closes idle keep-alive
 * ones, lets in-flight requests (a device mid-download, a pipeline mid-push) finish for up
 * to `shutdownGraceSeconds`, and only then cuts what is left.
 *
 * Every connection is bounded: caps on how many are open (in total and per address), a
 * deadline for the TLS handshake, one for the headers and one for the whole request
 * (slow-loris, trickled bodies), an idle timeout that counts time without progress either
 * way (stalled uploads, downloads nobody reads), and a response given before its request
 * body was read closes the connection instead of reading the rest of the body.
 */
export class HttpServer {
  readonly #listener: RequestListener;
  readonly #options: HttpServerOptions;
  readonly #log: Logger;
  #servers = new Map<Scheme, Server | HttpsServer>();
  #gate: ConnectionGate | undefined;
  #secureContext: SecureContext | undefined;
  #refusingOverTls = 0;

  constructor(listener: RequestListener, options: HttpServerOptions, log: Logger) {
    this.#listener = listener;
    this.#options = options;
    this.#log = log;
  }

  async start(): Promise<void> {
    const options = this.#options;
    const listener = this.#listener;
    const serverOptions = {
      connectionsCheckingInterval: DEADLINE_CHECK_MS,
      headersTimeout: options.headersTimeoutSeconds * 1000,
      // Counts until the request is fully received, so a long poll (a GET, complete once
      // its headers are in) is never cut by it; only its idle timeout is, and the long poll
      // turns that off while it waits (pauseIdleTimeout).
      requestTimeout: options.requestTimeoutSeconds * 1000,
      keepAliveTimeout: options.keepAliveTimeoutSeconds * 1000,
    };
    const handle = (req: IncomingMessage, res: ServerResponse) => {
      closeIfBodyUnread(req, res);
      listener(req, res);
    };
    const gate = new ConnectionGate({
      maxConnections: options.maxConnections,
      maxConnectionsPerAddress: options.maxConnectionsPerAddress,
      retryAfterSeconds: CONNECTION_RETRY_SECONDS,
    });
    this.#gate = gate;
    try {
      if (options.plain) await this.#listen('http', createServer(serverOptions, handle), options.port);
      if (options.tls) {
        const { cert, key } = options.tls;
        this.#secureContext = createSecureContext({ cert, key });
        const server = createHttpsServer({ ...serverOptions, cert, key, handshakeTimeout: options.headersTimeoutSeconds * 1000 }, handle);
        await this.#listen('https', server, options.tls.port, (raw, answer) => this.#refuseOverTls(raw, answer));
      }
    } catch (error) {
      for (const server of this.#servers.values()) server.close();
      this.#servers.clear();
      throw error;
    }
  }

  async #listen(scheme: Scheme, server: Server | HttpsServer, port: number, answerThrough?: RefusalChannel): Promise<void> {
    const options = this.#options;
    const gate = this.#gate!;
    server.timeout = options.idleTimeoutSeconds * 1000;
    // The gate must see a connection before the HTTP parser (or the TLS handshake) does, so
    // it takes the place of the server's own 'connection' listener and hands on only what
    // it admits.
    const parse = server.listeners('connection') as Array<(socket: Socket) => void>;
    server.removeAllListeners('connection');
    server.on('connection', (socket: Socket) => {
      if (!gate.admit(socket, answerThrough)) return;
      for (const handler of parse) handler.call(server, socket);
    });
    await new Promise<void>((resolve, reject) => {
      server.once('error', reject);
      server.listen(port, options.host, () => {
        server.off('error', reject);
        resolve();
      });
    });
    this.#servers.set(scheme, server);
    const { address, port: bound } = server.address() as AddressInfo;
    this.#log.info({ address, port: bound, url: `${scheme}://${address.includes(':') ? `[${address}]` : address}:${bound}/` }, 'listening');
  }

  /** A refusal on the HTTPS port is written once the client can read it: after a handshake. */
  #refuseOverTls(raw: Socket, answer: (channel: Socket) => void): void {
    if (this.#refusingOverTls >= MAX_TLS_REFUSALS || !this.#secureContext) {
      raw.destroy();
      return;
    }
    this.#refusingOverTls++;
    const secured = new TLSSocket(raw, { isServer: true, secureContext: this.#secureContext });
    const deadline = setTimeout(() => secured.destroy(), TLS_REFUSAL_HANDSHAKE_MS).unref();
    secured.once('close', () => {
      this.#refusingOverTls--;
      clearTimeout(deadline);
    });
    secured.on('error', () => secured.destroy());
    secured.once('secure', () => answer(secured));
  }

  /**
   * A new certificate and key (a config reload): for connections from now on; those open
   * keep the one they were made with.
   */
  setCredentials(credentials: { cert: string; key: string }): void {
    const server = this.#servers.get('https') as HttpsServer | undefined;
    if (!server) return;
    this.#secureContext = createSecureContext(credentials);
    server.setSecureContext(credentials);
  }

  /** Where plain HTTP listens, or HTTPS when plain HTTP is off. */
  get address(): { address: string; port: number } {
    const server = this.#servers.get('http') ?? this.#servers.get('https');
    if (!server) throw new Error('the HTTP server is not listening');
    return addressOf(server);
  }

  /** Where HTTPS listens; null when it does not. */
  get tlsAddress(): { address: string; port: number } | null {
    const server = this.#servers.get('https');
    return server ? addressOf(server) : null;
  }

  /** Open client connections, both ports together (for metrics). */
  get connections(): number {
    return this.#gate?.open ?? 0;
  }

  async stop(): Promise<void> {
    const servers = [...this.#servers.values()];
    if (servers.length === 0) return;
    this.#servers.clear();
    this.#options.onDrain();
    const closed = Promise.all(servers.map((server) => new Promise<void>((resolve) => server.close(() => resolve()))));
    // Requests in flight leave idle keep-alive connections behind as they finish (a long
    // poll released by onDrain, a download that completes); close those as they appear,
    // at no cost to the request path, instead of waiting out the grace period.
    const closeIdle = () => { for (const server of servers) server.closeIdleConnections(); };
    closeIdle();
    const sweep = setInterval(closeIdle, 50);
    const grace = setTimeout(() => {
      this.#log.warn('shutdown grace period over; closing the connections still open');
      for (const server of servers) server.closeAllConnections();
    }, this.#options.shutdownGraceSeconds * 1000);
    await closed;
    clearInterval(sweep);
    clearTimeout(grace);
  }
}

function addressOf(server: Server | HttpsServer): { address: string; port: number } {
  const info = server.address() as AddressInfo;
  return { address: info.address, port: info.port };
}

/**
 * Turns the idle timeout off for a request that is held on purpose (a long poll) and
 * returns what turns it back on, so the connection is bounded again once it is answered.
 */
export function pauseIdleTimeout(req: IncomingMessage): () => void {
  const socket = req.socket;
  const idleMs = socket.timeout ?? 0;
  socket.setTimeout(0);
  return () => {
    if (!socket.destroyed) socket.setTimeout(idleMs);
  };
}

/** How long a connection closed with its request body unread keeps reading (and dropping)
 * what the client still sends, so that closing does not reset the connection before the
 * answer reaches the client. */
const LINGER_MS = 1000;

/**
 * Node would read and discard the rest of a request body the handler did not read (a 401
 * to an endless chunked push reads forever). When the answer is about to go out and the
 * body is not all in, the answer says `Connection: close` instead: once it is sent the
 * connection is half-closed, and cut for good after a short linger.
 */
function closeIfBodyUnread(req: IncomingMessage, res: ServerResponse): void {
  if (req.headers['transfer-encoding'] === undefined && !(Number(req.headers['content-length']) > 0)) return;
  const writeHead = res.writeHead;
  res.writeHead = function (this: ServerResponse, ...args: unknown[]) {
    if (!req.complete && !res.headersSent) {
      res.setHeader('Connection', 'close');
      // Node ends a `Connection: close` response with destroySoon(), which destroys the
      // socket as soon as the answer is written; with bytes still arriving that is a reset,
      // and the client may never read the answer.
      const socket = req.socket;
      socket.destroySoon = function lingeringClose(this: Socket) {
        this.end();
        setTimeout(() => this.destroy(), LINGER_MS).unref();
      };
    }
    return (writeHead as (...a: unknown[]) => ServerResponse).apply(this, args);
  } as typeof res.writeHead;
}
