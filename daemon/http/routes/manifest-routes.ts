import { createHash } from 'node:crypto';
import type Router from '@koa/router';
import { MANIFEST_FORMAT, manifestModel, type Manifest } from '../../contract/manifest.ts';
import { etagMatches } from '../etag.ts';
import type { Services } from '../services.ts';

/**
 * This gateway's effective catalog in the central store's format (docs/design.md
 * "Central store format"), so that a downstream gateway can use this one as its upstream.
 */
export function manifestRoutes(router: Router, services: Services): void {
  const { catalog, blobs, auth } = services;

  router.get('/v1/manifest', auth.scope('sync'), (ctx) => {
    const current = catalog.current;
    // Only models whose blob is cached are offered, so the tag covers what was left out too
    // (by digest: a count would repeat when one blob goes missing as another comes back).
    const models = [];
    const omitted = [];
    for (const model of current.models.values()) {
      if (blobs.holds(model)) models.push(model);
      else omitted.push(model.sha256);
    }
    const omittedTag = omitted.length === 0 ? '' : `-${createHash('sha256').update(omitted.sort().join()).digest('hex').slice(0, 8)}`;
    const etag = `"${current.revision}${omittedTag}"`;
    ctx.set('ETag', etag);
    ctx.set('Cache-Control', 'no-cache');
    if (etagMatches(ctx.get('If-None-Match'), etag)) {
      ctx.status = 304;
      return;
    }
    const manifest: Manifest = {
      format: MANIFEST_FORMAT,
      revision: current.revision,
      generatedAt: new Date().toISOString(),
      // Relative to /v1/manifest, so it resolves to /v1/artifacts/<sha256> on this gateway.
      models: models.map((model) => manifestModel(model, `artifacts/${model.sha256}`)),
      assignments: [...current.assignments.values()].map(({ selector, model, version, rollout }) =>
        rollout ? { selector, model, version, rollout: { percent: rollout.halted ? 0 : rollout.percent, previous: rollout.previous } } : { selector, model, version }),
      groups: Object.fromEntries([...current.groups.entries()].map(([name, { members }]) => [name, members])),
    };
    ctx.body = manifest;
  });

}
