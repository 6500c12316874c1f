import type Router from '@koa/router';
import { parseDigest } from '../../contract/identifiers.ts';
import { ModelferryError } from '../../errors.ts';
import { artifactResponder } from '../artifact-responder.ts';
import { applyPrepared } from '../prepared-response.ts';
import type { Services } from '../services.ts';

/**
 * `GET|HEAD /v1/deltas/{from}/{to}` (docs/design.md "Deltas"): the delta that makes the
 * artifact `to` from `from`, served as an artifact is (ETag and Repr-Digest of the delta's
 * own bytes, Range, If-Range, resumable), under the same access rule. A device fetches it
 * once per update, so it takes Koa's path, not a fast path of its own.
 */
export function deltaRoutes(router: Router, services: Services): void {
  const { deltas, metrics } = services;
  const readerAuth = services.auth.artifactAccess();
  const respond = artifactResponder(metrics, { responses: metrics.deltaResponses, bytes: metrics.deltaBytes });

  router.get('/v1/deltas/:from/:to', readerAuth, async (ctx) => {
    const from = parseDigest(ctx.params.from!);
    const to = parseDigest(ctx.params.to!);
    const reader = await deltas.open(from, to);
    if (!reader) {
      metrics.deltaResponses.inc({ status: '404' });
      throw new ModelferryError('delta_not_found', `this gateway holds no delta from ${from} to ${to}: download the full artifact (/v1/artifacts/${to})`);
    }
    let sending = false;
    try {
      const { head, body } = respond(reader.delta.sha256, reader.delta.size, {
        method: ctx.method,
        ifNoneMatch: ctx.get('If-None-Match') || undefined,
        range: ctx.get('Range') || undefined,
        ifRange: ctx.get('If-Range') || undefined,
      });
      applyPrepared(ctx, head);
      if (body) {
        const stream = reader.file.createReadStream({ start: body.start, end: body.end, highWaterMark: 64 * 1024 });
        ctx.res.once('close', () => stream.destroy());
        stream.once('close', reader.release);
        ctx.body = stream;
        sending = true;
      }
    } finally {
      if (!sending) {
        await reader.file.close();
        reader.release();
      }
    }
  });
}
