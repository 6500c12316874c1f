import { createHash } from 'node:crypto';
import http, { type IncomingMessage } from 'node:http';
import https from 'node:https';
import type { Readable } from 'node:stream';
import { fail, isModelferryError, ModelferryError } from '../errors.ts';
import { EMPTY_PAYLOAD, objectUrl, s3ObjectOf, signedHeaders, UNSIGNED_PAYLOAD, type S3Access, type S3Object } from '../s3/s3-access.ts';
import { parseS3Error, s3Failure } from '../s3/s3-error.ts';

export interface UpstreamTimeouts {
  connectMs: number;
  headersMs: number;
  bodyIdleMs: number;
}

/** A request body: bytes in memory (their sha256 is signed), or a stream of `length` bytes. */
export type RequestBody = Buffer | { length: number; open(): Readable };

/** Buckets reached through s3:// addresses, and the clock their requests are signed with. */
export interface S3Route {
  access: S3Access;
  now(): Date;
}

/** S3 error documents are small; more is not an error document. */
const S3_ERROR_BYTES = 64 * 1024;

/**
 * Requests to the upstream store with the three timeouts a sync needs, so a store that
 * hangs at any stage fails the sync instead of holding it forever: no connection, no
 * response headers, or no body bytes for too long. Connections are kept alive within one
 * sync (one per concurrent download) and closed at its end. `s3://BUCKET/KEY` addresses go
 * to the bucket's endpoint, signed (SigV4), and S3's refusals become errors that say what
 * to fix (daemon/s3/s3-error.ts). An aborted signal ends a request with its reason when that
 * is one of ours (a sync's deadline), else as a shutdown.
 */
export class UpstreamHttp {
  readonly #timeouts: UpstreamTimeouts;
  readonly #agents: { http: http.Agent; https: https.Agent };
  readonly #s3: S3Route | undefined;

  constructor(timeouts: UpstreamTimeouts, maxSockets: number, s3?: S3Route) {
    this.#timeouts = timeouts;
    this.#s3 = s3;
    this.#agents = {
      http: new http.Agent({ keepAlive: true, maxSockets }),
      https: new https.Agent({ keepAlive: true, maxSockets }),
    };
  }

  /** The response once its headers are in; its body stream fails on a body idle timeout. */
  get(url: URL, headers: Record<string, string>, signal: AbortSignal): Promise<IncomingMessage> {
    return url.protocol === 's3:' ? this.s3('GET', s3ObjectOf(url), { headers, signal }) : this.#send('GET', url, headers, signal);
  }

  /**
   * A request to an object of a bucket (`query` for bucket operations such as a listing,
   * `action` names the permission an AccessDenied is about). Answers other than 2xx, 304 and
   * 416 are thrown as errors that name what S3 said.
   */
  async s3(method: 'GET' | 'HEAD' | 'PUT', object: S3Object, options: { headers?: Record<string, string>; body?: RequestBody; query?: string; action?: string; signal: AbortSignal }): Promise<IncomingMessage> {
    const route = this.#s3 ?? fail('upstream_error', `s3://${object.bucket}/${object.key} is an S3 address, and no S3 access is set up for it`);
    const target = objectUrl(route.access, object, options.query);
    const sentAt = route.now();
    const body = options.body;
    const payload = body === undefined ? EMPTY_PAYLOAD : Buffer.isBuffer(body) ? sha256Hex(body) : UNSIGNED_PAYLOAD;
    const headers = signedHeaders(route.access, method, target, options.headers ?? {}, payload, sentAt);
    const res = await this.#send(method, target, headers, options.signal, body);
    const status = res.statusCode ?? 0;
    if ((status >= 200 && status < 300) || status === 304 || status === 416) return res;
    const text = method === 'HEAD' ? '' : await readText(res, S3_ERROR_BYTES);
    const listing = options.action === 'LIST' ? new URLSearchParams(options.query).get('prefix') ?? '' : undefined;
    throw s3Failure({ method: options.action ?? method, object, ...(listing === undefined ? {} : { listing }), access: route.access, status, headers: res.headers, sentAt }, parseS3Error(text));
  }

  #send(method: string, url: URL, headers: Record<string, string>, signal: AbortSignal, body?: RequestBody): Promise<IncomingMessage> {
    const { connectMs, headersMs, bodyIdleMs } = this.#timeouts;
    const secure = url.protocol === 'https:';
    const where = url.host;
    return new Promise((resolve, reject) => {
      if (signal.aborted) {
        reject(abortError(signal));
        return;
      }
      const sized = body === undefined ? {} : { 'Content-Length': String(body.length) };
      const req = (secure ? https : http).request(url, { method, headers: { ...headers, ...sized }, agent: secure ? this.#agents.https : this.#agents.http });
      let timer = setTimeout(() => req.destroy(timedOut(`${where} did not accept a connection within ${connectMs / 1000} s`)), connectMs);
      // With a body, the store's answer is awaited once the body is sent.
      const startHeadersTimer = () => {
        clearTimeout(timer);
        timer = setTimeout(() => req.destroy(timedOut(`${where} sent no response headers within ${headersMs / 1000} s`)), headersMs);
      };
      const onAbort = () => req.destroy(abortError(signal));
      signal.addEventListener('abort', onAbort, { once: true });
      req.on('socket', (socket) => {
        const connected = () => {
          if (body === undefined || Buffer.isBuffer(body)) startHeadersTimer();
          else clearTimeout(timer);
        };
        if (socket.connecting) socket.once('connect', connected);
        else connected();
      });
      req.on('finish', () => {
        if (body !== undefined && !Buffer.isBuffer(body)) startHeadersTimer();
      });
      req.on('response', (res) => {
        clearTimeout(timer);
        // Sockets are reused within a sync: the idle timer and its listener go with the response.
        const socket = res.socket;
        const onIdle = () => res.destroy(timedOut(`${where} sent no body bytes for ${bodyIdleMs / 1000} s`));
        const onAbortBody = () => res.destroy(abortError(signal));
        signal.addEventListener('abort', onAbortBody, { once: true });
        socket.setTimeout(bodyIdleMs);
        socket.on('timeout', onIdle);
        const done = () => {
          signal.removeEventListener('abort', onAbort);
          signal.removeEventListener('abort', onAbortBody);
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
      if (body === undefined) req.end();
      else if (Buffer.isBuffer(body)) req.end(body);
      else {
        const stream = body.open();
        stream.on('error', (error) => req.destroy(error));
        stream.pipe(req);
      }
    });
  }

  close(): void {
    this.#agents.http.destroy();
    this.#agents.https.destroy();
  }
}

function sha256Hex(bytes: Buffer): string {
  return createHash('sha256').update(bytes).digest('hex');
}

/** At most `limit` bytes of a body as text, the rest dropped. */
async function readText(res: IncomingMessage, limit: number): Promise<string> {
  const chunks: Buffer[] = [];
  let size = 0;
  try {
    for await (const chunk of res as AsyncIterable<Buffer>) {
      if (size < limit) chunks.push(chunk);
      size += chunk.length;
    }
  } catch {
    // What arrived is what there is to explain the refusal with.
  }
  return Buffer.concat(chunks).subarray(0, limit).toString('utf8');
}

/** Reads a whole (small) body, refusing more than `limit` bytes. */
export function readBody(res: IncomingMessage, limit: number, what: string): Promise<Buffer> {
  return readLimited(res, limit, (declared) => fail('manifest_invalid', declared === null
    ? `${what} is more than upstream.maxManifestBytes (${limit} bytes)`
    : `${what} is ${declared} bytes, more than upstream.maxManifestBytes (${limit})`));
}

/** Reads a whole body of at most `limit` bytes; past it (or announced past it), `refuse` says why. */
export async function readLimited(res: IncomingMessage, limit: number, refuse: (declared: number | null) => never): Promise<Buffer> {
  const declared = Number(res.headers['content-length'] ?? 0);
  if (declared > limit) {
    res.destroy();
    refuse(declared);
  }
  const chunks: Buffer[] = [];
  let size = 0;
  for await (const chunk of res as AsyncIterable<Buffer>) {
    size += chunk.length;
    if (size > limit) {
      res.destroy();
      refuse(null);
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

/** Why a request was cut: the signal's own reason when it is one of ours (a deadline), else a shutdown. */
function abortError(signal: AbortSignal): ModelferryError {
  return isModelferryError(signal.reason) ? signal.reason : new ModelferryError('sync_aborted', 'the sync was stopped (the gateway is shutting down)');
}

function unreachable(where: string, error: Error): ModelferryError {
  const code = (error as NodeJS.ErrnoException).code;
  return new ModelferryError('upstream_unreachable', `cannot reach ${where}: ${code ?? error.message}`);
}
