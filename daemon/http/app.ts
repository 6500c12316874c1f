import Koa from 'koa';
import Router from '@koa/router';
import { errorHandler } from './error-handler.ts';
import { identityRoutes } from './routes/identity-routes.ts';
import { artifactRoutes } from './routes/artifact-routes.ts';
import { backupRoutes } from './routes/backup-routes.ts';
import { assignmentRoutes } from './routes/assignment-routes.ts';
import { cacheRoutes } from './routes/cache-routes.ts';
import { deltaRoutes } from './routes/delta-routes.ts';
import { deviceRoutes } from './routes/device-routes.ts';
import { healthRoutes } from './routes/health-routes.ts';
import { inventoryRoutes } from './routes/inventory-routes.ts';
import { manifestRoutes } from './routes/manifest-routes.ts';
import { modelRoutes } from './routes/model-routes.ts';
import { statusRoutes } from './routes/status-routes.ts';
import { syncRoutes } from './routes/sync-routes.ts';
import type { Services } from './services.ts';

/**
 * The Koa application: every route, behind the error handler. Loaded by listener.ts on the
 * first request the fast paths do not take.
 */
export function createApp(services: Services): Koa {
  const app = new Koa();
  app.silent = true;
  const router = new Router();
  for (const register of [deviceRoutes, identityRoutes, artifactRoutes, deltaRoutes, modelRoutes, assignmentRoutes, inventoryRoutes, manifestRoutes, syncRoutes, cacheRoutes, healthRoutes, statusRoutes, backupRoutes]) {
    register(router, services);
  }
  // Outermost, so it counts the status the error handler settled on.
  app.use(async (ctx, next) => {
    try {
      await next();
    } finally {
      const route = (ctx as { _matchedRoute?: unknown })._matchedRoute;
      services.metrics.request(typeof route === 'string' ? route : undefined, ctx.method, ctx.status);
    }
  });
  app.use(errorHandler(services.log));
  app.use(router.routes());
  app.use(router.allowedMethods({ throw: true }));
  return app;
}
