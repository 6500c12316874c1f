import type { IncomingMessage, ServerResponse } from 'node:http';
import { isMac, parseMac } from '../contract/identifiers.ts';
import { isModelferryError } from '../errors.ts';
import { holdPoll, parseWait } from './long-poll.ts';
import { pollResponder } from './poll-responder.ts';
import { preparedError, sendPrepared } from './prepared-response.ts';
import { rateLimitRefusal } from './rate-limit-refusal.ts';
import type { Services } from './services.ts';

const POLL_PATH = /^\/v1\/devices\/([^/?#]+)\/model(?:\?wait=(\d{1,9}))?$/;

/**
 * The device poll, answered without Koa. It is the request every device makes every few
 * minutes, so the fleet's size is bounded by its cost; Koa's middleware and routing cost
 * more than the answer itself, which is already prepared in memory.
 *
 * Only the plain cases are taken here: GET, no query but `wait=<seconds>`, a well-formed
 * MAC, an admitted device and a model to answer with. Long polls are held here too, so a
 * held poll costs a few KiB instead of a Koa context (10,000 of them held a 166 MiB heap
 * through Koa). Everything else (HEAD, other queries, errors, 401) returns false and goes on
 * to the Koa route, which answers through the same responder and long-poll rules.
 */
export function pollFastPath(services: Services): (req: IncomingMessage, res: ServerResponse) => boolean {
  const { answers, devices, auth, config } = services;
  const respond = pollResponder(services.metrics);

  return (req, res) => {
    if (req.method !== 'GET') return false;
    const match = POLL_PATH.exec(req.url ?? '');
    if (!match || !isMac(match[1]!)) return false;
    const mac = parseMac(match[1]!);
    if (!auth.admitsDevice(req.headers.authorization, mac)) return false;
    const current = answers.answerFor(mac);
    if (current.kind !== 'model') return false;
    // Seen once, here: a refused introduction is answered here too, not seen again by Koa.
    const refusal = rateLimitRefusal(devices.seen(mac, req.socket.remoteAddress, true));
    if (refusal) {
      sendPrepared(res, preparedError(refusal));
      return true;
    }
    const ifNoneMatch = req.headers['if-none-match'];
    if (match[2] === undefined) {
      sendPrepared(res, respond(current, ifNoneMatch));
      return true;
    }
    const wait = parseWait(match[2], config.devices.maxWaitSeconds);
    holdPoll(services, req, res, mac, current, ifNoneMatch, wait).then((held) => {
      let prepared;
      try {
        prepared = respond(held.answer, held.released ? undefined : ifNoneMatch);
      } catch (error) {
        // Released because nothing resolves for the device any more: 404 no_assignment.
        if (!isModelferryError(error)) throw error;
        sendPrepared(res, preparedError(error));
        return;
      }
      sendPrepared(res, held.closeConnection ? { ...prepared, headers: { ...prepared.headers, Connection: 'close' } } : prepared);
    }).catch((error: unknown) => {
      services.log.error({ err: error, mac }, 'long poll failed');
      res.destroy();
    });
    return true;
  };
}
