import http, { type IncomingMessage } from 'node:http';
import https from 'node:https';
import { fail, isModelferryError, ModelferryError } from '../errors.ts';

export interface UpstreamTimeouts {
  connectMs: number;
  headersMs: number;
  bodyIdleMs: number;
}

/**
 * GET requests to the upstream store with the three timeouts a sync needs, so a store that
 * hangs at any stage fails the sync instead of holding it forever: no connection, no
 * response headers, or no body bytes for too long. Connections are kept alive within one
 * sync (one per concurrent download) and closed at its end.
 */
export class UpstreamHttp {
  readonly #timeouts: UpstreamTimeouts;
  readonly #agents: { http: http.Agent; https: https.Agent };

  constructor(timeouts: UpstreamTimeouts, maxSockets: number) {
    this.#timeouts = timeouts;
    this.#agents = {
      http: new http.Agent({ keepAlive: true, maxSockets }),
      https: new https.Agent({ keepAlive: true, maxSockets }),
    };
  }

  /** The response once its headers are in; its body stream fails on a body idle timeout. */
  get(url: URL, headers: Record<string, string>, signal: AbortSignal): Promise<IncomingMessage> {
    const { connectMs, headersMs, bodyIdleMs } = this.#timeouts;
    const secure = url.protocol === 'https:';
    const where = url.host;
    return new Promise((resolve, reject) => {
      if (signal.aborted) {
        reject(aborted());
        return;
      }
      const req = (secure ? https : http).request(url, { method: 'GET', headers, agent: secure ? this.#agents.https : this.#agents.http });
      let timer = setTimeout(() => req.destroy(timedOut(`${where} did not accept a connection within ${connectMs / 1000} s`)), connectMs);
      const startHeadersTimer = () => {
        clearTimeout(timer);
        timer = setTimeout(() => req.destroy(timedOut(`${where} sent no response headers within ${headersMs / 1000} s`)), headersMs);
      };
      const onAbort = () => req.destroy(aborted());
      signal.addEventListener('abort', onAbort, { once: true });
      req.on('socket', (socket) => {
        if (socket.connecting) socket.once('connect', startHeadersTimer);
        else startHeadersTimer();
      });
      req.on('response', (res) => {
        clearTimeout(timer);
        // Sockets are reused within a sync: the idle timer and its listener go with the response.
        const socket = res.socket;
        const onIdle = () => res.destroy(timedOut(`${where} sent no body bytes for ${bodyIdleMs / 1000} s`));
        socket.setTimeout(bodyIdleMs);
        socket.on('timeout', onIdle);
        const done = () => {
          signal.removeEventListener('abort', onAbort);
          socket.setTimeout(0);
          socket.off('timeout', onIdle);
        };
        res.once('end', done);
        res.once('close', done);
        resolve(res);
      });
      req.on('error', (error) => {
        clearTimeout(timer);
        signal.removeEventListener('abort', onAbort);
        reject(isModelferryError(error) ? error : unreachable(where, error));
      });
      req.end();
    });
  }

  close(): void {
    this.#agents.http.destroy();
    this.#agents.https.destroy();
  }
}

/** Reads a whole (small) body, refusing more than `limit` bytes. */
export async function readBody(res: IncomingMessage, limit: number, what: string): Promise<Buffer> {
  const declared = Number(res.headers['content-length'] ?? 0);
  if (declared > limit) {
    res.destroy();
    fail('manifest_invalid', `${what} is ${declared} bytes, more than upstream.maxManifestBytes (${limit})`);
  }
  const chunks: Buffer[] = [];
  let size = 0;
  for await (const chunk of res as AsyncIterable<Buffer>) {
    size += chunk.length;
    if (size > limit) {
      res.destroy();
      fail('manifest_invalid', `${what} is more than upstream.maxManifestBytes (${limit} bytes)`);
    }
    chunks.push(chunk);
  }
  return Buffer.concat(chunks);
}

/** Reading a body that the store cut short or stopped sending, as a sync error. */
export function bodyError(error: unknown, where: string): ModelferryError {
  if (isModelferryError(error)) return error;
  return new ModelferryError('upstream_unreachable', `${where}: the connection broke during the body (${(error as NodeJS.ErrnoException).code ?? (error as Error).message})`);
}

function timedOut(message: string): ModelferryError {
  return new ModelferryError('upstream_timeout', message);
}

function aborted(): ModelferryError {
  return new ModelferryError('sync_aborted', 'the sync was stopped (the gateway is shutting down)');
}

function unreachable(where: string, error: Error): ModelferryError {
  const code = (error as NodeJS.ErrnoException).code;
  return new ModelferryError('upstream_unreachable', `cannot reach ${where}: ${code ?? error.message}`);
}
