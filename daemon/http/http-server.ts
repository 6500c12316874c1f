import { createServer, type Server, type ServerResponse } from 'node:http';
import type { AddressInfo } from 'node:net';
import type Koa from 'koa';
import type { Logger } from '../log.ts';

export interface HttpServerOptions {
  host: string;
  port: number;
  shutdownGraceSeconds: number;
  /** Runs first at stop: releases what holds requests open (long polls). */
  onDrain: () => void;
}

/**
 * The listening socket. Stopping refuses new connections, closes idle keep-alive ones,
 * lets in-flight requests (a device mid-download, a pipeline mid-push) finish for up to
 * `shutdownGraceSeconds`, and only then cuts what is left.
 */
export class HttpServer {
  readonly #app: Koa;
  readonly #options: HttpServerOptions;
  readonly #log: Logger;
  #server: Server | undefined;
  /** Responses not yet finished, and whether stop() has begun (see stop). */
  readonly #inFlight = new Set<ServerResponse>();
  #stopping = false;

  constructor(app: Koa, options: HttpServerOptions, log: Logger) {
    this.#app = app;
    this.#options = options;
    this.#log = log;
  }

  async start(): Promise<void> {
    const server = createServer(this.#app.callback());
    // Devices on flaky Wi-Fi hold keep-alive connections between polls; long polls set
    // their own pace, so the default request timeout must not cut them.
    server.requestTimeout = 0;
    server.headersTimeout = 30_000;
    server.keepAliveTimeout = 65_000;
    server.on('request', (_req, res: ServerResponse) => {
      this.#inFlight.add(res);
      if (this.#stopping) res.shouldKeepAlive = false;
      res.once('close', () => {
        this.#inFlight.delete(res);
        // A request that was in flight at stop leaves a keep-alive connection behind when
        // it ends; close it then, or server.close() waits out the whole grace period.
        if (this.#stopping) server.closeIdleConnections();
      });
    });
    await new Promise<void>((resolve, reject) => {
      server.once('error', reject);
      server.listen(this.#options.port, this.#options.host, () => {
        server.off('error', reject);
        resolve();
      });
    });
    this.#server = server;
    const { address, port } = this.address;
    this.#log.info({ address, port, url: `http://${address.includes(':') ? `[${address}]` : address}:${port}/` }, 'listening');
  }

  get address(): { address: string; port: number } {
    const info = this.#server?.address() as AddressInfo | null | undefined;
    if (!info) throw new Error('the HTTP server is not listening');
    return { address: info.address, port: info.port };
  }

  async stop(): Promise<void> {
    const server = this.#server;
    if (!server) return;
    this.#server = undefined;
    this.#stopping = true;
    // Answers still to be written (long polls released just below) say Connection: close.
    for (const res of this.#inFlight) if (!res.headersSent) res.shouldKeepAlive = false;
    this.#options.onDrain();
    const closed = new Promise<void>((resolve) => server.close(() => resolve()));
    server.closeIdleConnections();
    const grace = setTimeout(() => {
      this.#log.warn('shutdown grace period over; closing the connections still open');
      server.closeAllConnections();
    }, this.#options.shutdownGraceSeconds * 1000);
    await closed;
    clearTimeout(grace);
  }
}
