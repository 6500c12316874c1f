import { createHash } from 'node:crypto';
import { readFile, stat } from 'node:fs/promises';
import { createServer, type IncomingMessage, type Server, type ServerResponse } from 'node:http';
import type { AddressInfo } from 'node:net';
import path from 'node:path';
import { stopServer, type HasTeardown } from './harness.ts';

// A static store server with faults on demand, for what nginx cannot be made to do: hang,
// stall mid-body, cut a body short, answer an error or other bytes. It serves a folder
// written by `modelferry publish` with ETag, If-None-Match and `Range: bytes=N-`.

export type Fault =
  /** Answer with this status and a short text body. */
  | { kind: 'status'; status: number }
  /** Accept the request and never answer. */
  | { kind: 'hang' }
  /** Send the headers and the first `after` bytes, then nothing. */
  | { kind: 'stall'; after: number }
  /** Send the headers (full Content-Length) and the first `after` bytes, then close the connection. */
  | { kind: 'truncate'; after: number }
  /** Answer 200 with these bytes instead of the file's. */
  | { kind: 'body'; body: Buffer | string }
  /** Send the headers, then one byte every `intervalMs` (never idle long enough for an idle timeout). */
  | { kind: 'drip'; intervalMs: number };

export interface StoreRequest {
  path: string;
  range: string;
  ifNoneMatch: string;
  ifModifiedSince: string;
  authorization: string;
  status: number;
}

export class FaultStore {
  readonly root: string;
  readonly requests: StoreRequest[] = [];
  url = '';
  #server: Server | undefined;
  readonly #faults = new Map<string, { fault: Fault; times: number }>();
  #beforeServe: ((pathname: string) => Promise<void>) | undefined;
  /** Validators sent: an ETag (the default), or only Last-Modified (a file's mtime), as some hosts do. */
  validators: 'etag' | 'last-modified' = 'etag';

  constructor(root: string) {
    this.root = root;
  }

  static async start(t: HasTeardown, root: string): Promise<FaultStore> {
    const store = new FaultStore(root);
    await store.listen(0);
    t.teardown(() => store.close());
    return store;
  }

  async listen(port: number): Promise<void> {
    const server = createServer((req, res) => void this.#handle(req, res).catch(() => res.destroy()));
    await new Promise<void>((resolve) => server.listen(port, '127.0.0.1', () => resolve()));
    this.#server = server;
    this.url = `http://127.0.0.1:${(server.address() as AddressInfo).port}`;
  }

  /** Faults `pathname` (or `/artifacts/*` for every artifact) for the next `times` requests. */
  fault(pathname: string, fault: Fault, times = Infinity): void {
    this.#faults.set(pathname, { fault, times });
  }

  clearFaults(): void {
    this.#faults.clear();
  }

  /** Runs before a request is answered (e.g. to change the store mid-sync). */
  beforeServe(hook: ((pathname: string) => Promise<void>) | undefined): void {
    this.#beforeServe = hook;
  }

  /** Stops listening and cuts every connection: the store is down. */
  async close(): Promise<void> {
    const server = this.#server;
    if (!server) return;
    this.#server = undefined;
    await stopServer(server);
  }

  async #handle(req: IncomingMessage, res: ServerResponse): Promise<void> {
    const pathname = new URL(req.url!, 'http://store').pathname;
    const record: StoreRequest = {
      path: pathname,
      range: req.headers.range ?? '',
      ifNoneMatch: req.headers['if-none-match'] ?? '',
      ifModifiedSince: req.headers['if-modified-since'] ?? '',
      authorization: req.headers.authorization ?? '',
      status: 0,
    };
    this.requests.push(record);
    await this.#beforeServe?.(pathname);
    const rule = this.#faults.get(pathname) ?? (pathname.startsWith('/artifacts/') ? this.#faults.get('/artifacts/*') : undefined);
    const fault = rule && rule.times > 0 ? rule.fault : undefined;
    if (rule && fault) rule.times--;
    if (fault?.kind === 'hang') return;
    if (fault?.kind === 'status') {
      record.status = fault.status;
      res.writeHead(fault.status, { 'Content-Type': 'text/plain' }).end(`fault ${fault.status}`);
      return;
    }
    if (fault?.kind === 'body') {
      record.status = 200;
      const body = Buffer.from(fault.body);
      res.writeHead(200, { 'Content-Length': body.length }).end(body);
      return;
    }
    let bytes: Buffer;
    let modified: Date;
    try {
      bytes = await readFile(path.join(this.root, pathname));
      modified = (await stat(path.join(this.root, pathname))).mtime;
    } catch {
      record.status = 404;
      res.writeHead(404).end('not found');
      return;
    }
    const validator: Record<string, string> = this.validators === 'etag'
      ? { ETag: `"${createHash('sha256').update(bytes).digest('hex').slice(0, 16)}"` }
      : { 'Last-Modified': modified.toUTCString() };
    const since = Date.parse(req.headers['if-modified-since'] ?? '');
    if (this.validators === 'etag' ? req.headers['if-none-match'] === validator.ETag : Math.floor(modified.getTime() / 1000) <= since / 1000) {
      record.status = 304;
      res.writeHead(304, validator).end();
      return;
    }
    let start = 0;
    const range = /^bytes=(\d+)-$/.exec(req.headers.range ?? '');
    if (range && Number(range[1]) < bytes.length) start = Number(range[1]);
    const body = bytes.subarray(start);
    record.status = start > 0 ? 206 : 200;
    res.writeHead(record.status, {
      ...validator,
      'Content-Length': body.length,
      'Content-Type': pathname.endsWith('.json') ? 'application/json' : 'application/octet-stream',
      ...(start > 0 ? { 'Content-Range': `bytes ${start}-${bytes.length - 1}/${bytes.length}` } : {}),
    });
    if (fault?.kind === 'stall') {
      res.write(body.subarray(0, fault.after));
      return;
    }
    if (fault?.kind === 'drip') {
      let sent = 0;
      const timer = setInterval(() => {
        if (sent >= body.length || res.destroyed) {
          clearInterval(timer);
          res.end();
          return;
        }
        res.write(body.subarray(sent, ++sent));
      }, fault.intervalMs);
      res.on('close', () => clearInterval(timer));
      return;
    }
    if (fault?.kind === 'truncate') {
      res.write(body.subarray(0, fault.after), () => res.destroy());
      return;
    }
    res.end(body);
  }
}
