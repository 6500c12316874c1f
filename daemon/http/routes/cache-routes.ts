import type Router from '@koa/router';
import type { Services } from '../services.ts';

/**
 * `POST /v1/cache/check`: re-reads every blob the catalog names and compares it with its
 * digest (the on-demand full check of docs/design.md "Storage and crash safety", behind
 * `modelferry check`).
 * Corrupt blobs are removed, so they are never served; a re-push or sync restores them.
 */
export function cacheRoutes(router: Router, services: Services): void {
  const { catalog, collector, auth, log } = services;

  router.post('/v1/cache/check', auth.scope('admin'), async (ctx) => {
    const results = await catalog.checkCache();
    const bad = results.filter((r) => r.status !== 'ok');
    if (bad.length > 0) log.error({ bad }, 'cache check found missing or corrupt blobs');
    ctx.body = { checked: results.length, ok: results.length - bad.length, problems: bad.length, blobs: results };
  });

  /**
   * `POST /v1/cache/gc`: one garbage collection now (it also runs every
   * cache.gcIntervalMinutes); the grace period still applies.
   */
  router.post('/v1/cache/gc', auth.scope('admin'), async (ctx) => {
    const result = await collector.collect();
    log.info({ removed: result.removed.length, bytes: result.bytes, client: ctx.state.client }, 'garbage collection requested');
    ctx.body = result;
  });
}
