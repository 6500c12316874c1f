import type { Readable } from 'node:stream';
import parseRange from 'range-parser';
import { ModelferryError, fail } from '../errors.ts';
import type { Metrics } from '../metrics.ts';
import type { BlobStore } from '../store/blob-store.ts';
import type { HotBlobs } from '../store/hot-blobs.ts';
import { etagMatches } from './etag.ts';
import type { PreparedResponse } from './prepared-response.ts';

/** Reads of 256 KiB keep the copy loop short (64 KiB, the default, is much slower) while
 * holding memory at a few hundred KiB per download in flight; 1 MiB gained little. */
const READ_CHUNK = 256 << 10;

const OCTETS = 'application/octet-stream';
const IMMUTABLE = 'public, max-age=31536000, immutable';

export interface ArtifactRequest {
  method: string;
  ifNoneMatch: string | undefined;
  range: string | undefined;
  ifRange: string | undefined;
}

/** The head of an artifact answer, and which bytes follow it (none for HEAD and 304). */
export interface ArtifactAnswer {
  head: PreparedResponse;
  body: { start: number; end: number } | null;
}

export type ArtifactResponder = (sha256: string, size: number, request: ArtifactRequest) => ArtifactAnswer;

interface Representation {
  etag: string;
  reprDigest: string;
  /** The headers every answer about this blob carries (304 and 416 too). */
  headers: Readonly<Record<string, string>>;
}

/** Where a responder counts its answers: artifacts by default, deltas (GET /v1/deltas) their own. */
export interface ResponderCounters {
  responses: Metrics['artifactResponses'];
  bytes: Metrics['artifactBytes'];
}

/**
 * The rules of `GET|HEAD /v1/artifacts/{sha256}` once the blob is known to be cached: ETag
 * and immutable caching, If-None-Match → 304, one Range → 206 (If-Range with our ETag
 * only), an unsatisfiable one → 416 (thrown), anything else the whole blob. The fast path
 * and the Koa route both answer through it, and it counts each answer once. A delta is
 * served by the same rules, named by its own sha256.
 */
export function artifactResponder(metrics: Metrics, counters: ResponderCounters = { responses: metrics.artifactResponses, bytes: metrics.artifactBytes }): ArtifactResponder {
  const counted = new Map<number, { inc(): void }>();
  const count = (status: number) => {
    let counter = counted.get(status);
    if (!counter) counted.set(status, counter = counters.responses.labels(String(status)));
    counter.inc();
  };
  // What never changes for a digest is built once per digest (bounded by the cache's blobs).
  const representations = new Map<string, Representation>();
  const representation = (sha256: string): Representation => {
    let found = representations.get(sha256);
    if (!found) {
      if (representations.size >= 10_000) representations.clear();
      const etag = `"${sha256}"`;
      const reprDigest = `sha-256=:${Buffer.from(sha256, 'hex').toString('base64')}:`;
      found = { etag, reprDigest, headers: { ETag: etag, 'Accept-Ranges': 'bytes', 'Repr-Digest': reprDigest, 'Cache-Control': IMMUTABLE } };
      representations.set(sha256, found);
    }
    return found;
  };

  return (sha256, size, request) => {
    const { etag, reprDigest, headers } = representation(sha256);
    if (etagMatches(request.ifNoneMatch, etag)) {
      count(304);
      return { head: { status: 304, headers, body: null }, body: null };
    }
    let status = 200;
    let start = 0;
    let end = size - 1;
    let contentRange: string | undefined;
    // If-Range with anything but our ETag (an old ETag, a date) means "send it all".
    if (request.range && (!request.ifRange || request.ifRange.trim() === etag)) {
      const ranges = parseRanges(size, request.range);
      if (ranges === -1) {
        count(416);
        fail('range_not_satisfiable', `the range ${request.range} is outside the artifact's ${size} bytes`, { ...headers, 'Content-Range': `bytes */${size}` });
      }
      // -2 is a malformed header: ignored as RFC 9110 allows. Several ranges: the whole body.
      if (ranges !== -2 && ranges.length === 1 && ranges.type === 'bytes') {
        start = ranges[0]!.start;
        end = ranges[0]!.end;
        status = 206;
        contentRange = `bytes ${start}-${end}/${size}`;
      }
    }
    count(status);
    const length = end - start + 1;
    // Literals of one fixed shape rather than spreads: this runs for every Range piece, and
    // spread objects cost a dictionary's allocation and garbage each time.
    const head: PreparedResponse = {
      status,
      headers: contentRange
        ? { ETag: etag, 'Accept-Ranges': 'bytes', 'Repr-Digest': reprDigest, 'Cache-Control': IMMUTABLE, 'Content-Range': contentRange, 'Content-Type': OCTETS, 'Content-Length': length }
        : { ETag: etag, 'Accept-Ranges': 'bytes', 'Repr-Digest': reprDigest, 'Cache-Control': IMMUTABLE, 'Content-Type': OCTETS, 'Content-Length': length },
      body: null,
    };
    if (request.method === 'HEAD') return { head, body: null };
    counters.bytes.inc(length);
    return { head, body: { start, end } };
  };
}

/** `bytes=<first>-[<last>]`: what a device resuming a download sends, piece after piece. */
const ONE_RANGE = /^bytes=(\d{1,15})-(\d{0,15})$/;

/**
 * The ranges of a Range header as range-parser gives them (-1: none satisfiable, -2:
 * malformed), with the one form devices send read without it, since a resumed download
 * asks for thousands of pieces.
 */
function parseRanges(size: number, header: string): ReturnType<typeof parseRange> {
  const one = ONE_RANGE.exec(header);
  if (one) {
    const start = Number(one[1]);
    const end = one[2] === '' ? size - 1 : Math.min(Number(one[2]), size - 1);
    return start > end ? -1 : Object.assign([{ start, end }], { type: 'bytes' });
  }
  // range-parser refuses a suffix longer than the artifact; RFC 9110 14.1.2 says it
  // means the whole representation, so such a suffix is clamped to the size first.
  const suffixClamped = header.replace(/(^\s*bytes\s*=|,)\s*-\s*(\d+)/gi, (all, lead: string, n: string) => Number(n) > size ? `${lead}-${size}` : all);
  return parseRange(size, suffixClamped, { combine: true });
}

/** The answer for a digest the cache does not hold (never held, or gone since). */
export function artifactNotFound(sha256: string): ModelferryError {
  return new ModelferryError('artifact_not_found', `this gateway's cache holds no artifact ${sha256}`);
}

/** Bytes to send, and what keeps their blob from garbage collection until the response is over. */
export interface ArtifactBody {
  bytes: Buffer | Readable;
  /** Call when the response closes (idempotent). */
  release: () => void;
}

/**
 * The bytes `start..end` of a cached blob: a view of its bytes in memory when they fit the
 * hot cache, else a stream from its file. Undefined when the file is gone (garbage
 * collected or found corrupt meanwhile): the caller answers 404.
 */
export async function artifactBytes(hot: HotBlobs, blobs: BlobStore, sha256: string, size: number, start: number, end: number): Promise<ArtifactBody | undefined> {
  const held = hot.peek(sha256) ?? await hot.get(sha256, size);
  if (held) return { bytes: held.subarray(start, end + 1), release: blobs.hold([sha256]) };
  const reader = await blobs.openForRead(sha256);
  if (!reader) return undefined;
  const stream = reader.file.createReadStream({ start, end, highWaterMark: READ_CHUNK });
  stream.once('close', reader.release);
  return { bytes: stream, release: reader.release };
}
