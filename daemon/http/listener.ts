import type { RequestListener } from 'node:http';
import { artifactFastPath } from './artifact-fast-path.ts';
import { pollFastPath } from './poll-fast-path.ts';
import type { Services } from './services.ts';

/**
 * The gateway's HTTP API (DESIGN.md sections 2 and 3): plain device polls and artifact reads
 * first, then Koa. Koa and the routes behind it are loaded on the first request that needs
 * them, not at start: a gateway that only serves devices never pays for them (about 10 MiB
 * of memory and a good part of start-up on a Pi).
 */
export function createRequestListener(services: Services): RequestListener {
  const fastPoll = pollFastPath(services);
  const fastArtifact = artifactFastPath(services);
  let koa: Promise<RequestListener> | undefined;
  return (req, res) => {
    if (fastPoll(req, res) || fastArtifact(req, res)) return;
    koa ??= import('./app.ts').then(({ createApp }) => createApp(services).callback());
    koa.then((listener) => listener(req, res), (error: unknown) => {
      services.log.error({ err: error }, 'could not load the HTTP application');
      res.writeHead(500).end();
    });
  };
}
