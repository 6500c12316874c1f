import type Router from '@koa/router';
import { parseDigest } from '../../contract/identifiers.ts';
import { artifactBytes, artifactNotFound, artifactResponder } from '../artifact-responder.ts';
import { applyPrepared } from '../prepared-response.ts';
import { ARTIFACT_ROUTE } from '../route-patterns.ts';
import type { Services } from '../services.ts';

/**
 * The artifact route. Requests the fast path takes (artifact-fast-path.ts) never get here;
 * this one answers the rest (refusals, encoded paths, queries) by the same rules.
 */
export function artifactRoutes(router: Router, services: Services): void {
  const { blobs, hotBlobs, metrics } = services;
  const readerAuth = services.auth.artifactAccess();
  const respond = artifactResponder(metrics);

  // GET also answers HEAD (koa-router registers both).
  router.get(ARTIFACT_ROUTE, readerAuth, async (ctx) => {
    const sha256 = parseDigest(ctx.params.sha256!);
    const size = blobs.size(sha256);
    if (size === undefined) {
      metrics.artifactResponses.inc({ status: '404' });
      throw artifactNotFound(sha256);
    }
    const { head, body } = respond(sha256, size, {
      method: ctx.method,
      ifNoneMatch: ctx.get('If-None-Match') || undefined,
      range: ctx.get('Range') || undefined,
      ifRange: ctx.get('If-Range') || undefined,
    });
    if (body) {
      // Read before answering: a blob that vanished (garbage collection) is a clean 404,
      // not a dropped connection halfway through the headers.
      const bytes = await artifactBytes(hotBlobs, blobs, sha256, size, body.start, body.end);
      if (!bytes) throw artifactNotFound(sha256);
      ctx.res.once('close', bytes.release);
      applyPrepared(ctx, head);
      ctx.body = bytes.bytes;
      return;
    }
    applyPrepared(ctx, head);
  });
}
