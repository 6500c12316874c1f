import type { Socket } from 'node:net';

export interface ConnectionLimits {
  maxConnections: number;
  maxConnectionsPerAddress: number;
  /** What a refused client is told to wait before trying again. */
  retryAfterSeconds: number;
}

/** Hands `answer` the channel to write a refusal to, once there is one. */
export type RefusalChannel = (socket: Socket, answer: (channel: Socket) => void) => void;

/** How long a refused connection may keep sending before it is cut. */
const REFUSAL_LINGER_MS = 1000;

/**
 * Admits or refuses each new connection before the HTTP parser sees it: at most
 * `maxConnections` open in total and `maxConnectionsPerAddress` from one client address.
 * A refused connection gets one short answer (503 busy for the global cap, 429 rate_limited
 * for the per-address one, both with Retry-After) and is closed, so a flood neither holds
 * file descriptors nor starves /healthz.
 */
export class ConnectionGate {
  readonly #limits: ConnectionLimits;
  readonly #byAddress = new Map<string, number>();
  #open = 0;

  constructor(limits: ConnectionLimits) {
    this.#limits = limits;
  }

  get open(): number {
    return this.#open;
  }

  /**
   * True when the socket may go on to HTTP; otherwise it is answered and closing.
   * `answerThrough` gives the channel the refusal is written to once it can be: the socket
   * itself for plain HTTP, the socket after a TLS handshake for HTTPS.
   */
  admit(socket: Socket, answerThrough: RefusalChannel = (raw, answer) => answer(raw)): boolean {
    const address = socket.remoteAddress ?? '';
    const fromAddress = this.#byAddress.get(address) ?? 0;
    if (this.#open >= this.#limits.maxConnections) {
      answerThrough(socket, (channel) => this.#refuse(channel, 503, 'Service Unavailable', 'busy', `the gateway holds its maximum of ${this.#limits.maxConnections} connections`));
      return false;
    }
    if (fromAddress >= this.#limits.maxConnectionsPerAddress) {
      answerThrough(socket, (channel) => this.#refuse(channel, 429, 'Too Many Requests', 'rate_limited', `this address already holds ${this.#limits.maxConnectionsPerAddress} connections`));
      return false;
    }
    this.#open++;
    this.#byAddress.set(address, fromAddress + 1);
    socket.once('close', () => {
      this.#open--;
      const left = this.#byAddress.get(address)! - 1;
      if (left === 0) this.#byAddress.delete(address);
      else this.#byAddress.set(address, left);
    });
    return true;
  }

  #refuse(socket: Socket, status: number, reason: string, code: string, message: string): void {
    const body = JSON.stringify({ error: code, message: `${message}; try again later` });
    socket.on('error', () => {});
    // Whatever the client sends is read and dropped for a moment, so that closing with
    // unread bytes does not reset the connection before the answer reaches the client.
    socket.resume();
    socket.end(`HTTP/1.1 ${status} ${reason}\r\nContent-Type: application/json; charset=utf-8\r\n`
      + `Content-Length: ${Buffer.byteLength(body)}\r\nRetry-After: ${this.#limits.retryAfterSeconds}\r\nConnection: close\r\n\r\n${body}`);
    setTimeout(() => socket.destroy(), REFUSAL_LINGER_MS).unref();
  }
}
