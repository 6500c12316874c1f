import type Router from '@koa/router';
import type { Services } from '../services.ts';

/**
 * `POST /v1/cache/check`: re-reads every blob the catalog names and compares it with its
 * digest (the on-demand full check of DESIGN.md section 8, behind `modelferry check`).
 * Corrupt blobs are removed, so they are never served; a re-push or sync restores them.
 */
export function cacheRoutes(router: Router, services: Services): void {
  const { catalog, blobs, collector, auth, log } = services;

  router.post('/v1/cache/check', auth.require('admin'), async (ctx) => {
    const results = [];
    const seen = new Set<string>();
    for (const model of catalog.current.models.values()) {
      if (seen.has(model.sha256)) continue;
      seen.add(model.sha256);
      const check = await blobs.check(model.sha256);
      results.push({
        sha256: model.sha256,
        models: [...catalog.current.models.values()].filter((m) => m.sha256 === model.sha256).map((m) => `${m.name}@${m.version}`),
        status: check.actualSha256 === null ? 'missing' : check.ok ? 'ok' : 'corrupt',
      });
    }
    const bad = results.filter((r) => r.status !== 'ok');
    if (bad.length > 0) log.error({ bad }, 'cache check found missing or corrupt blobs');
    ctx.body = { checked: results.length, ok: results.length - bad.length, problems: bad.length, blobs: results };
  });

  /**
   * `POST /v1/cache/gc`: one garbage collection now (it also runs every
   * cache.gcIntervalMinutes); the grace period still applies.
   */
  router.post('/v1/cache/gc', auth.require('admin'), async (ctx) => {
    const result = await collector.collect();
    log.info({ removed: result.removed.length, bytes: result.bytes, client: ctx.state.client }, 'garbage collection requested');
    ctx.body = result;
  });
}
