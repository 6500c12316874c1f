import { createServer, type RequestListener, type Server } from 'node:http';
import type { AddressInfo } from 'node:net';
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
  readonly #listener: RequestListener;
  readonly #options: HttpServerOptions;
  readonly #log: Logger;
  #server: Server | undefined;

  constructor(listener: RequestListener, options: HttpServerOptions, log: Logger) {
    this.#listener = listener;
    this.#options = options;
    this.#log = log;
  }

  async start(): Promise<void> {
    const server = createServer(this.#listener);
    // Devices on flaky Wi-Fi hold keep-alive connections between polls; long polls set
    // their own pace, so the default request timeout must not cut them.
    server.requestTimeout = 0;
    server.headersTimeout = 30_000;
    server.keepAliveTimeout = 65_000;
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
