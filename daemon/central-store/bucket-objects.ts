import { createHash } from 'node:crypto';
import { readFile } from 'node:fs/promises';
import type { IncomingMessage } from 'node:http';
import { fail } from '../errors.ts';
import { resolveS3Access, s3ObjectOf, NO_S3_SETTINGS, type S3Object } from '../s3/s3-access.ts';
import { S3Refusal } from '../s3/s3-error.ts';
import { bodyError, readLimited, UpstreamHttp } from '../sync/upstream-http.ts';
import type { PrefixListing, StoreAccess, StoredObject, StoreObjects, WriteOptions } from './store-objects.ts';

/** Timeouts of the `modelferry` command's and a gateway's report requests. */
const TIMEOUTS = { connectMs: 10_000, headersMs: 60_000, bodyIdleMs: 60_000 };
/** Objects read whole (manifests, reports) are small; this bounds a hostile one. */
const MAX_READ_BYTES = 64 * 1024 * 1024;

/**
 * A store that is a prefix of a bucket: `s3://BUCKET/PREFIX`. A PUT makes an object whole
 * or not at all; an artifact's body is signed (its sha256 is the payload hash S3 checks), so
 * bytes that changed on the way are refused by S3 itself.
 */
export class BucketObjects implements StoreObjects {
  readonly where: string;
  readonly #bucket: string;
  readonly #prefix: string;
  readonly #http: UpstreamHttp;
  readonly #signal = new AbortController().signal;

  private constructor(where: string, bucket: string, prefix: string, http: UpstreamHttp) {
    this.where = where;
    this.#bucket = bucket;
    this.#prefix = prefix;
    this.#http = http;
  }

  static async open(location: string, access: StoreAccess): Promise<BucketObjects> {
    let url: URL;
    try {
      url = new URL(location);
    } catch {
      fail('upstream_error', `${location} is not an s3://BUCKET/PREFIX address`);
    }
    const { bucket, key } = s3ObjectOf(url);
    const prefix = key.replace(/\/+$/, '');
    const resolved = await resolveS3Access(access.s3 ?? NO_S3_SETTINGS, access.env);
    const http = new UpstreamHttp(TIMEOUTS, 4, { access: resolved, now: access.now ?? (() => new Date()) });
    return new BucketObjects(`s3://${bucket}${prefix ? `/${prefix}` : ''}`, bucket, prefix, http);
  }

  nameOf(key: string): string {
    return `${this.where}/${key}`;
  }

  #object(key: string): S3Object {
    return { bucket: this.#bucket, key: this.#prefix ? `${this.#prefix}/${key}` : key };
  }

  async read(key: string): Promise<StoredObject | null> {
    const res = await this.#http.s3('GET', this.#object(key), { signal: this.#signal }).catch(absentAsNull);
    if (res === null) return null;
    const bytes = await readAll(res, this.nameOf(key));
    const etag = res.headers.etag;
    return { bytes, etag: typeof etag === 'string' ? etag : null };
  }

  async has(key: string, size: number): Promise<boolean> {
    // Without s3:ListBucket a missing object is a 403, not a 404: either way, not there.
    const res = await this.#http.s3('HEAD', this.#object(key), { signal: this.#signal }).catch(() => null);
    res?.resume();
    return res !== null && Number(res.headers['content-length']) === size;
  }

  async writeFile(key: string, file: string, sha256: string, options: WriteOptions): Promise<void> {
    const bytes = await readFile(file);
    if (createHash('sha256').update(bytes).digest('hex') !== sha256) fail('digest_mismatch', `${file} changed while it was being published; nothing was published`);
    await this.writeBytes(key, bytes, options);
  }

  async writeBytes(key: string, bytes: Buffer, options: WriteOptions): Promise<void> {
    const headers: Record<string, string> = { 'Content-Type': options.contentType };
    if (options.cacheControl) headers['Cache-Control'] = options.cacheControl;
    // S3 refuses the write (412) when another writer got there first.
    if (options.replacing === null) headers['If-None-Match'] = '*';
    else if (options.replacing !== undefined) headers['If-Match'] = options.replacing;
    const res = await this.#http.s3('PUT', this.#object(key), { headers, body: bytes, signal: this.#signal });
    res.resume();
  }

  async list(prefix: string): Promise<string[]> {
    const keys: string[] = [];
    for await (const xml of this.#listing(prefix, {})) {
      for (const match of xml.matchAll(/<Key>([^<]*)<\/Key>/g)) keys.push(this.#relative(unescapeKey(match[1]!)));
    }
    return keys;
  }

  async listPrefixes(limit: number): Promise<PrefixListing> {
    const names: string[] = [];
    // With a delimiter S3 folds every key below a name into one common prefix: a page per
    // thousand names, however many artifacts lie under them.
    for await (const xml of this.#listing('', { delimiter: '/' })) {
      for (const match of xml.matchAll(/<CommonPrefixes>\s*<Prefix>([^<]*)<\/Prefix>/g)) {
        const name = this.#relative(unescapeKey(match[1]!)).replace(/\/$/, '');
        // A key such as `//x` makes an empty name: no prefix a store writes.
        if (name !== '') names.push(name);
      }
      if (names.length > limit) break;
    }
    return { names: names.slice(0, limit), more: names.length > limit };
  }

  /** ListObjectsV2 of the keys under `prefix`, page by page. */
  async *#listing(prefix: string, extra: Record<string, string>): AsyncGenerator<string> {
    // Always sent, empty at the bucket's top: an IAM condition on s3:prefix ("") can then match it.
    const full = this.#object(prefix).key;
    let token: string | undefined;
    do {
      const query = new URLSearchParams({ 'list-type': '2', prefix: full, ...extra, ...(token ? { 'continuation-token': token } : {}) });
      const res = await this.#http.s3('GET', { bucket: this.#bucket, key: '' }, { query: query.toString(), action: 'LIST', signal: this.#signal });
      const xml = (await readAll(res, `the listing of ${this.nameOf(prefix)}`)).toString('utf8');
      yield xml;
      token = /<IsTruncated>true<\/IsTruncated>/.test(xml) ? /<NextContinuationToken>([^<]*)<\/NextContinuationToken>/.exec(xml)?.[1] : undefined;
    } while (token);
  }

  #relative(key: string): string {
    return this.#prefix ? key.slice(this.#prefix.length + 1) : key;
  }

  async lock(): Promise<() => Promise<void>> {
    // A bucket has no lock: the manifest's conditional write (If-Match) stands in for it.
    return async () => {};
  }

  close(): void {
    this.#http.close();
  }
}

function absentAsNull(error: unknown): null {
  if (error instanceof S3Refusal && error.s3Code === 'NoSuchKey') return null;
  throw error;
}

async function readAll(res: IncomingMessage, what: string): Promise<Buffer> {
  try {
    return await readLimited(res, MAX_READ_BYTES, () => fail('upstream_error', `${what} is larger than ${MAX_READ_BYTES} bytes`));
  } catch (error) {
    throw bodyError(error, what);
  }
}

function unescapeKey(text: string): string {
  return text.replace(/&lt;/g, '<').replace(/&gt;/g, '>').replace(/&quot;/g, '"').replace(/&apos;/g, "'").replace(/&amp;/g, '&');
}
