import type Router from '@koa/router';
import { fail } from '../../errors.ts';
import type { Services } from '../services.ts';

/**
 * `POST /v1/sync` runs an upstream sync now and answers with its outcome (a failed one as
 * the error it failed with); `GET /v1/sync` shows the sync state and the last outcome.
 */
export function syncRoutes(router: Router, services: Services): void {
  const { sync, auth, log } = services;

  router.get('/v1/sync', auth.anyToken(), (ctx) => {
    ctx.set('Cache-Control', 'no-store');
    ctx.body = sync.status();
  });

  router.post('/v1/sync', auth.scope('admin'), async (ctx) => {
    log.info({ client: ctx.state.client }, 'sync requested');
    const outcome = await sync.run('request');
    if (outcome.error) fail(outcome.error.code, `the sync failed: ${outcome.error.message}`);
    ctx.set('Cache-Control', 'no-store');
    ctx.body = outcome;
  });
}
