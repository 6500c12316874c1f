import { createServer, type IncomingMessage, type Server, type ServerResponse } from 'node:http';
import type { AddressInfo } from 'node:net';
import path from 'node:path';
import aws4 from 'aws4';
import S3rver from 's3rver';
import type { S3Settings } from '../../daemon/s3/s3-access.ts';
import { stopServer, tempDir, type HasTeardown } from './harness.ts';

// A real S3 endpoint on loopback: s3rver (the S3 REST API over a folder), path-style, one
// bucket made at start. s3rver 3.x checks a SigV4 request's key id but not its signature
// ("Signature version 4 calculation is unimplemented" in its authentication middleware),
// so this front checks the signature first and answers SignatureDoesNotMatch as S3 does.
// s3rver has no bucket policies either: the front also plays one, for a second key that may
// read and not write (a gateway's least-privilege key), answering its writes AccessDenied.
// Every request is recorded, so a test can count what a sync or a report costs the store.

export const S3_KEY_ID = 'S3RVER';
export const S3_SECRET = 'S3RVER';
/** A key whose policy allows s3:GetObject only, as docs/central-store.md gives a gateway. */
export const S3_READER_KEY_ID = 'AKIAGATEWAYREADER';
export const S3_READER_SECRET = 'reader-secret-0123456789abcdefghijklmnopq';
const SECRETS: Record<string, string> = { [S3_KEY_ID]: S3_SECRET, [S3_READER_KEY_ID]: S3_READER_SECRET };

export interface S3Request {
  method: string;
  /** Path and query as sent: `/bucket/prefix/manifest.json`. */
  url: string;
  ifNoneMatch: string;
  authorization: string;
  status: number;
}

const SIGV4 = /^AWS4-HMAC-SHA256 Credential=([^/]+)\/\d{8}\/([^/]+)\/s3\/aws4_request, ?SignedHeaders=([^,]+), ?Signature=([0-9a-f]+)$/;

/**
 * Whether a SigV4-signed request's signature is the one its key's secret makes of the
 * headers it names (anonymous requests and unknown key ids are left to s3rver).
 */
function signatureMatches(req: IncomingMessage): boolean {
  const auth = SIGV4.exec(String(req.headers.authorization ?? ''));
  const secret = auth ? SECRETS[auth[1]!] : undefined;
  if (!auth || secret === undefined) return true;
  const headers: Record<string, string> = {};
  for (const name of auth[3]!.split(';')) headers[name] = String(req.headers[name] ?? '');
  const again = { host: String(req.headers.host), path: req.url ?? '/', method: req.method, service: 's3', region: auth[2]!, headers };
  aws4.sign(again, { accessKeyId: auth[1]!, secretAccessKey: secret });
  return /Signature=([0-9a-f]+)$/.exec(String((again.headers as Record<string, string>).Authorization))?.[1] === auth[4];
}

/** s3:GetObject: a GET or HEAD of an object (a path-style `/bucket/key`), not a listing of the bucket. */
function isObjectRead(req: IncomingMessage): boolean {
  const key = new URL(req.url ?? '/', 'http://s3').pathname.split('/').slice(2).join('/');
  return (req.method === 'GET' || req.method === 'HEAD') && key !== '';
}

function answerError(res: ServerResponse, code: string, message: string): void {
  res.writeHead(403, { 'Content-Type': 'application/xml' }).end(`<?xml version="1.0" encoding="UTF-8"?>\n<Error><Code>${code}</Code><Message>${message}</Message></Error>`);
}

export class S3Store {
  readonly bucket: string;
  readonly requests: S3Request[] = [];
  endpoint = '';
  #server: Server | undefined;

  private constructor(bucket: string) {
    this.bucket = bucket;
  }

  static async start(t: HasTeardown, bucket = 'models'): Promise<S3Store> {
    const dir = await tempDir(t, 'modelferry-s3-');
    const store = new S3Store(bucket);
    const s3rver = new S3rver({ directory: path.join(dir, 'buckets'), silent: true, configureBuckets: [{ name: bucket }], vhostBuckets: false });
    await s3rver.configureBuckets();
    const handle = s3rver.callback();
    const server = createServer((req, res) => {
      const record: S3Request = {
        method: req.method ?? '',
        url: req.url ?? '',
        ifNoneMatch: String(req.headers['if-none-match'] ?? ''),
        authorization: String(req.headers.authorization ?? ''),
        status: 0,
      };
      store.requests.push(record);
      res.on('finish', () => { record.status = res.statusCode; });
      if (!signatureMatches(req)) {
        req.resume();
        answerError(res, 'SignatureDoesNotMatch', 'The request signature we calculated does not match the signature you provided. Check your key and signing method.');
        return;
      }
      if (SIGV4.exec(String(req.headers.authorization ?? ''))?.[1] === S3_READER_KEY_ID) {
        if (!isObjectRead(req)) {
          req.resume();
          answerError(res, 'AccessDenied', 'Access Denied');
          return;
        }
        // Allowed by its policy, and already checked: s3rver knows one key id only.
        req.headers.authorization = String(req.headers.authorization).replace(`Credential=${S3_READER_KEY_ID}/`, `Credential=${S3_KEY_ID}/`);
      }
      handle(req, res);
    });
    await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', () => resolve()));
    store.#server = server;
    store.endpoint = `http://127.0.0.1:${(server.address() as AddressInfo).port}`;
    t.teardown(() => store.close());
    return store;
  }

  /** `upstream.s3` for this endpoint with the read-only key (a gateway's least privilege). */
  readerSettings(): S3Settings {
    return this.settings({ accessKeyId: S3_READER_KEY_ID, secretAccessKey: S3_READER_SECRET });
  }

  /** `upstream.s3` for this endpoint, with the right credentials unless told otherwise. */
  settings(overrides: Partial<S3Settings> = {}): S3Settings {
    return { endpoint: this.endpoint, region: 'us-east-1', accessKeyId: S3_KEY_ID, secretAccessKey: S3_SECRET, secretAccessKeyFile: null, forcePathStyle: true, ...overrides };
  }

  /** The gateway's config overrides for syncing from `s3://bucket/prefix/manifest.json`. */
  upstream(prefix: string, overrides: Partial<S3Settings> = {}): Record<string, string> {
    return { 'upstream.url': `s3://${this.bucket}/${prefix}/manifest.json`, 'upstream.s3': JSON.stringify(this.settings(overrides)) };
  }

  /** The requests whose path starts with `/bucket/prefix`. */
  requestsUnder(prefix: string): S3Request[] {
    return this.requests.filter((r) => r.url.startsWith(`/${this.bucket}/${prefix}`));
  }

  async close(): Promise<void> {
    const server = this.#server;
    if (!server) return;
    this.#server = undefined;
    await stopServer(server);
  }
}
