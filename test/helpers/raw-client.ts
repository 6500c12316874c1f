import http from 'node:http';
import net from 'node:net';
import type { HasTeardown } from './harness.ts';

// Clients that misbehave on purpose (slow, stalled, from another loopback address), for the
// limits tests and scripts. Linux routes all of 127.0.0.0/8 to loopback, so binding a
// client to 127.0.0.2, .3, ... makes the gateway see distinct client addresses.

/** A raw TCP connection to `port`, optionally from `localAddress`, destroyed in teardown. */
export async function connect(t: HasTeardown, port: number, localAddress = '127.0.0.1'): Promise<RawConnection> {
  const socket = net.connect({ host: '127.0.0.1', port, localAddress });
  const connection = new RawConnection(socket);
  t.teardown(() => socket.destroy());
  await new Promise<void>((resolve, reject) => {
    socket.once('connect', resolve);
    socket.once('error', reject);
  });
  return connection;
}

/** A socket whose received bytes are collected and whose end is a promise. */
export class RawConnection {
  readonly socket: net.Socket;
  received = Buffer.alloc(0);
  readonly closed: Promise<void>;
  #ended = false;

  constructor(socket: net.Socket) {
    this.socket = socket;
    socket.on('error', () => {});
    socket.on('data', (chunk: Buffer) => { this.received = Buffer.concat([this.received, chunk]); });
    this.closed = new Promise((resolve) => socket.once('close', () => {
      this.#ended = true;
      resolve();
    }));
  }

  get isClosed(): boolean {
    return this.#ended;
  }

  get text(): string {
    return this.received.toString('latin1');
  }

  /** The status code of the first response received, if any. */
  get status(): number | undefined {
    const match = /^HTTP\/1\.1 (\d{3})/.exec(this.text);
    return match ? Number(match[1]) : undefined;
  }

  write(data: string | Buffer): boolean {
    if (this.socket.destroyed) return false;
    return this.socket.write(data);
  }
}

/** Resolves when `promise` does, or with 'timeout' after `ms`: for waiting on what should happen. */
export function within<T>(promise: Promise<T>, ms: number): Promise<T | 'timeout'> {
  let timer: NodeJS.Timeout;
  return Promise.race([promise, new Promise<'timeout'>((resolve) => { timer = setTimeout(() => resolve('timeout'), ms); })])
    .finally(() => clearTimeout(timer));
}

export interface SimpleResponse {
  status: number;
  headers: http.IncomingHttpHeaders;
  body: string;
}

/** One request on a fresh connection from `localAddress`. */
export function requestFrom(url: string, options: { localAddress?: string; method?: string; headers?: Record<string, string>; body?: string | Buffer; signal?: AbortSignal } = {}): Promise<SimpleResponse> {
  return new Promise((resolve, reject) => {
    const req = http.request(url, {
      method: options.method ?? 'GET',
      headers: options.headers,
      localAddress: options.localAddress,
      agent: false,
      signal: options.signal,
    }, (res) => {
      const chunks: Buffer[] = [];
      res.on('data', (chunk: Buffer) => chunks.push(chunk));
      res.on('end', () => resolve({ status: res.statusCode!, headers: res.headers, body: Buffer.concat(chunks).toString('utf8') }));
      res.on('error', reject);
    });
    req.on('error', reject);
    req.end(options.body);
  });
}
