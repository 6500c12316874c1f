import type { IncomingMessage, ServerResponse } from 'node:http';
import { isMac, parseMac } from '../contract/identifiers.ts';
import { pollResponder } from './poll-responder.ts';
import { sendPrepared } from './prepared-response.ts';
import type { Services } from './services.ts';

const POLL_PATH = /^\/v1\/devices\/([^/?#]+)\/model$/;
export const POLL_ROUTE = '/v1/devices/:mac/model';

/**
 * The device poll, answered without Koa. It is the request every device makes every few
 * minutes, so the fleet's size is bounded by its cost; Koa's middleware and routing cost
 * more than the answer itself, which is already prepared in memory.
 *
 * Only the plain case is taken here: GET, no query, a well-formed MAC, an admitted device
 * and a model to answer with. Everything else (long polls, HEAD, errors, 401) returns
 * false and goes on to the Koa route, which answers through the same responder.
 */
export function pollFastPath(services: Services): (req: IncomingMessage, res: ServerResponse) => boolean {
  const { answers, devices, auth } = services;
  const respond = pollResponder(services.metrics);
  // Counted under the Koa route's pattern, so both paths are one route in the metrics.
  const requests = {
    200: services.metrics.httpRequests.labels(POLL_ROUTE, 'GET', '200'),
    304: services.metrics.httpRequests.labels(POLL_ROUTE, 'GET', '304'),
  };

  return (req, res) => {
    if (req.method !== 'GET') return false;
    const match = POLL_PATH.exec(req.url ?? '');
    if (!match || !isMac(match[1]!) || !auth.admitsDevice(req.headers.authorization)) return false;
    const mac = parseMac(match[1]!);
    const answer = answers.answerFor(mac);
    if (answer.kind !== 'model') return false;
    // A refused introduction (429) is the Koa route's to answer.
    if (devices.seen(mac, req.socket.remoteAddress, true).kind === 'rate_limited') return false;
    const prepared = respond(answer, req.headers['if-none-match']);
    requests[prepared.status === 304 ? 304 : 200].inc();
    sendPrepared(res, prepared);
    return true;
  };
}
