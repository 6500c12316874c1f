import type { IncomingMessage, ServerResponse } from 'node:http';
import { isModelferryError } from '../errors.ts';
import { parseMac } from '../identifiers.ts';
import { etagMatches } from './etag.ts';
import type { Services } from './services.ts';

const POLL_PATH = /^\/v1\/devices\/([^/?#]+)\/model$/;

/**
 * The device poll, answered without Koa. It is the request every device makes every few
 * minutes, so the fleet's size is bounded by its cost; Koa's middleware and routing cost
 * more than the answer itself, which is already prepared in memory.
 *
 * Only the plain case is taken here: GET, no query, a well-formed MAC, an admitted device
 * and a model to answer with. Everything else (long polls, HEAD, errors, 401) returns
 * false and goes on to the Koa route, which gives the same answers.
 */
export function pollFastPath(services: Services): (req: IncomingMessage, res: ServerResponse) => boolean {
  const { answers, devices, auth, metrics } = services;
  const answered = metrics.polls.labels('200');
  const unchanged = metrics.polls.labels('304');
  // The Koa route's pattern, so both paths count as one route.
  const answeredRequests = metrics.httpRequests.labels('/v1/devices/:mac/model', 'GET', '200');
  const unchangedRequests = metrics.httpRequests.labels('/v1/devices/:mac/model', 'GET', '304');

  return (req, res) => {
    if (req.method !== 'GET') return false;
    const match = POLL_PATH.exec(req.url ?? '');
    if (!match || !auth.admitsDevice(req.headers.authorization)) return false;
    let mac: string;
    try {
      mac = parseMac(match[1]!);
    } catch (error) {
      if (isModelferryError(error)) return false;
      throw error;
    }
    const answer = answers.answerFor(mac);
    if (answer.kind !== 'model') return false;
    devices.seen(mac, req.socket.remoteAddress);
    if (etagMatches(req.headers['if-none-match'], answer.etag)) {
      unchanged.inc();
      unchangedRequests.inc();
      res.writeHead(304, { ETag: answer.etag, 'Cache-Control': 'no-cache' });
      res.end();
      return true;
    }
    answered.inc();
    answeredRequests.inc();
    res.writeHead(200, {
      ETag: answer.etag,
      'Cache-Control': 'no-cache',
      'Content-Type': 'application/json; charset=utf-8',
      'Content-Length': answer.body.length,
    });
    res.end(answer.body);
    return true;
  };
}
