import type Router from '@koa/router';
import parseRange from 'range-parser';
import { fail } from '../../errors.ts';
import { parseDigest } from '../../contract/identifiers.ts';
import { etagMatches } from '../etag.ts';
import type { Services } from '../services.ts';

/** Reads of 256 KiB keep the copy loop short (64 KiB, the default, is much slower) while
 * holding memory at a few hundred KiB per download in flight; 1 MiB gained little. */
const READ_CHUNK = 256 << 10;

export function artifactRoutes(router: Router, services: Services): void {
  const { blobs, metrics } = services;
  const deviceAuth = services.auth.deviceAccess();

  // GET also answers HEAD (koa-router registers both).
  router.get('/v1/artifacts/:sha256', deviceAuth, async (ctx) => {
    const sha256 = parseDigest(ctx.params.sha256!);
    const size = blobs.size(sha256);
    if (size === undefined) {
      metrics.artifactResponses.inc({ status: '404' });
      fail('artifact_not_found', `this gateway's cache holds no artifact ${sha256}`);
    }
    const etag = `"${sha256}"`;
    ctx.set('ETag', etag);
    ctx.set('Accept-Ranges', 'bytes');
    ctx.set('Repr-Digest', `sha-256=:${Buffer.from(sha256, 'hex').toString('base64')}:`);
    ctx.set('Cache-Control', 'public, max-age=31536000, immutable');
    if (etagMatches(ctx.get('If-None-Match'), etag)) {
      metrics.artifactResponses.inc({ status: '304' });
      ctx.status = 304;
      return;
    }

    let start = 0;
    let end = size - 1;
    const range = ctx.get('Range');
    const ifRange = ctx.get('If-Range');
    // If-Range with anything but our ETag (an old ETag, a date) means "send it all".
    if (range && (!ifRange || ifRange.trim() === etag)) {
      // range-parser refuses a suffix longer than the artifact; RFC 9110 14.1.2 says it
      // means the whole representation, so such a suffix is clamped to the size first.
      const suffixClamped = range.replace(/(^\s*bytes\s*=|,)\s*-\s*(\d+)/gi, (all, lead: string, n: string) => Number(n) > size ? `${lead}-${size}` : all);
      const ranges = parseRange(size, suffixClamped, { combine: true });
      if (ranges === -1) {
        metrics.artifactResponses.inc({ status: '416' });
        fail('range_not_satisfiable', `the range ${range} is outside the artifact's ${size} bytes`, { 'Content-Range': `bytes */${size}` });
      }
      // -2 is a malformed header: ignored as RFC 9110 allows. Several ranges: the whole body.
      if (ranges !== -2 && ranges.length === 1 && ranges.type === 'bytes') {
        start = ranges[0]!.start;
        end = ranges[0]!.end;
        ctx.status = 206;
        ctx.set('Content-Range', `bytes ${start}-${end}/${size}`);
      }
    }
    if (ctx.status !== 206) ctx.status = 200;
    const length = end - start + 1;
    ctx.type = 'application/octet-stream';
    ctx.length = length;
    metrics.artifactResponses.inc({ status: String(ctx.status) });
    if (ctx.method === 'HEAD') return;

    // Open before answering: a blob that vanished (garbage collection) is a clean 404,
    // not a dropped connection halfway through the headers. The open reader keeps the
    // blob from garbage collection until the response is over.
    const reader = await blobs.openForRead(sha256);
    if (!reader) fail('artifact_not_found', `this gateway's cache holds no artifact ${sha256}`);
    metrics.artifactBytes.inc(length);
    const stream = reader.file.createReadStream({ start, end, highWaterMark: READ_CHUNK });
    stream.once('close', reader.release);
    ctx.body = stream;
  });

}
