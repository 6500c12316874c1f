import { createServer, type IncomingMessage, type RequestListener, type Server, type ServerResponse } from 'node:http';
import type { AddressInfo, Socket } from 'node:net';
import type { Logger } from '../log.ts';
import { ConnectionGate } from './connection-gate.ts';

export interface HttpServerOptions {
  host: string;
  port: number;
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
 * The listening socket. Stopping refuses new connections, closes idle keep-alive ones,
 * lets in-flight requests (a device mid-download, a pipeline mid-push) finish for up to
 * `shutdownGraceSeconds`, and only then cuts what is left.
 *
 * Every connection is bounded: caps on how many are open (in total and per address), a
 * deadline for the headers and one for the whole request (slow-loris, trickled bodies), an
 * idle timeout that counts time without progress either way (stalled uploads, downloads
 * nobody reads), and a response given before its request body was read closes the
 * connection instead of reading the rest of the body.
 */
export class HttpServer {
  readonly #listener: RequestListener;
  readonly #options: HttpServerOptions;
  readonly #log: Logger;
  #server: Server | undefined;
  #gate: ConnectionGate | undefined;

  constructor(listener: RequestListener, options: HttpServerOptions, log: Logger) {
    this.#listener = listener;
    this.#options = options;
    this.#log = log;
  }

  async start(): Promise<void> {
    const options = this.#options;
    const listener = this.#listener;
    const server = createServer({
      connectionsCheckingInterval: DEADLINE_CHECK_MS,
      headersTimeout: options.headersTimeoutSeconds * 1000,
      // Counts until the request is fully received, so a long poll (a GET, complete once
      // its headers are in) is never cut by it; only its idle timeout is, and the long poll
      // turns that off while it waits (pauseIdleTimeout).
      requestTimeout: options.requestTimeoutSeconds * 1000,
      keepAliveTimeout: options.keepAliveTimeoutSeconds * 1000,
    }, (req, res) => {
      closeIfBodyUnread(req, res);
      listener(req, res);
    });
    server.timeout = options.idleTimeoutSeconds * 1000;
    const gate = new ConnectionGate({
      maxConnections: options.maxConnections,
      maxConnectionsPerAddress: options.maxConnectionsPerAddress,
      retryAfterSeconds: CONNECTION_RETRY_SECONDS,
    });
    // The gate must see a connection before the HTTP parser does, so it takes the place
    // of http.Server's own 'connection' listener and hands on only what it admits.
    const parse = server.listeners('connection') as Array<(socket: Socket) => void>;
    server.removeAllListeners('connection');
    server.on('connection', (socket: Socket) => {
      if (!gate.admit(socket)) return;
      for (const handler of parse) handler.call(server, socket);
    });
    await new Promise<void>((resolve, reject) => {
      server.once('error', reject);
      server.listen(options.port, options.host, () => {
        server.off('error', reject);
        resolve();
      });
    });
    this.#server = server;
    this.#gate = gate;
    const { address, port } = this.address;
    this.#log.info({ address, port, url: `http://${address.includes(':') ? `[${address}]` : address}:${port}/` }, 'listening');
  }

  get address(): { address: string; port: number } {
    const info = this.#server?.address() as AddressInfo | null | undefined;
    if (!info) throw new Error('the HTTP server is not listening');
    return { address: info.address, port: info.port };
  }

  /** Open client connections (for metrics). */
  get connections(): number {
    return this.#gate?.open ?? 0;
  }

  async stop(): Promise<void> {
    const server = this.#server;
    if (!server) return;
    this.#server = undefined;
    this.#options.onDrain();
    const closed = new Promise<void>((resolve) => server.close(() => resolve()));
    // Requests in flight leave idle keep-alive connections behind as they finish (a long
    // poll released by onDrain, a download that completes); close those as they appear,
    // at no cost to the request path, instead of waiting out the grace period.
    server.closeIdleConnections();
    const sweep = setInterval(() => server.closeIdleConnections(), 50);
    const grace = setTimeout(() => {
      this.#log.warn('shutdown grace period over; closing the connections still open');
      server.closeAllConnections();
    }, this.#options.shutdownGraceSeconds * 1000);
    await closed;
    clearInterval(sweep);
    clearTimeout(grace);
  }
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
