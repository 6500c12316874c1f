import type { RequestListener } from 'node:http';
import Koa from 'koa';
import Router from '@koa/router';
import { artifactFastPath } from './artifact-fast-path.ts';
import { errorHandler } from './error-handler.ts';
import { pollFastPath } from './poll-fast-path.ts';
import { artifactRoutes } from './routes/artifact-routes.ts';
import { assignmentRoutes } from './routes/assignment-routes.ts';
import { cacheRoutes } from './routes/cache-routes.ts';
import { deviceRoutes } from './routes/device-routes.ts';
import { healthRoutes } from './routes/health-routes.ts';
import { inventoryRoutes } from './routes/inventory-routes.ts';
import { manifestRoutes } from './routes/manifest-routes.ts';
import { modelRoutes } from './routes/model-routes.ts';
import { statusRoutes } from './routes/status-routes.ts';
import type { Services } from './services.ts';

/** The gateway's HTTP API (DESIGN.md sections 2 and 3): plain device polls and artifact reads first, then Koa. */
export function createRequestListener(services: Services): RequestListener {
  const fastPoll = pollFastPath(services);
  const fastArtifact = artifactFastPath(services);
  const koa = createApp(services).callback();
  return (req, res) => {
    if (!fastPoll(req, res) && !fastArtifact(req, res)) void koa(req, res);
  };
}

function createApp(services: Services): Koa {
  const app = new Koa();
  app.silent = true;
  const router = new Router();
  for (const register of [deviceRoutes, artifactRoutes, modelRoutes, assignmentRoutes, inventoryRoutes, manifestRoutes, cacheRoutes, healthRoutes, statusRoutes]) {
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
