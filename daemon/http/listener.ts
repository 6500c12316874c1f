import type { IncomingMessage, RequestListener, ServerResponse } from 'node:http';
import type { Metrics } from '../metrics.ts';
import { artifactFastPath } from './artifact-fast-path.ts';
import { pollFastPath } from './poll-fast-path.ts';
import { ARTIFACT_ROUTE, DEVICE_POLL_ROUTE } from './route-patterns.ts';
import type { Services } from './services.ts';

/**
 * The gateway's HTTP API (docs/http-api.md): plain device polls and artifact reads
 * first, then Koa. Koa and the routes behind it are loaded on the first request that needs
 * them, not at start: a gateway that only serves devices never pays for them (about 10 MiB
 * of memory and a good part of start-up on a Pi).
 */
export function createRequestListener(services: Services): RequestListener {
  const fastPoll = pollFastPath(services);
  const fastArtifact = artifactFastPath(services);
  let koa: Promise<RequestListener> | undefined;
  return (req, res) => {
    const route = fastPoll(req, res) ? DEVICE_POLL_ROUTE : fastArtifact(req, res) ? ARTIFACT_ROUTE : undefined;
    if (route) {
      countWhenAnswered(services.metrics, route, req, res);
      return;
    }
    koa ??= import('./app.ts').then(({ createApp }) => createApp(services).callback());
    koa.then((listener) => listener(req, res), (error: unknown) => {
      services.log.error({ err: error }, 'could not load the HTTP application');
      res.writeHead(500).end();
    });
  };
}

/**
 * Counts a request a fast path took, as Koa's outermost middleware counts the rest: once,
 * under its route pattern, with the status it was answered. A client that hung up before
 * any answer (a long poll given up) was answered nothing and is not counted.
 */
function countWhenAnswered(metrics: Metrics, route: string, req: IncomingMessage, res: ServerResponse): void {
  res.once('close', () => {
    if (res.headersSent) metrics.request(route, req.method!, res.statusCode);
  });
}
