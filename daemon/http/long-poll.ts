import type { IncomingMessage, ServerResponse } from 'node:http';
import type { PollAnswer } from '../devices/poll-answers.ts';
import { fail } from '../errors.ts';
import { etagMatches } from './etag.ts';
import { pauseIdleTimeout } from './http-server.ts';
import type { Services } from './services.ts';

export interface HeldPoll {
  /** What to answer: the new answer when a change released the poll. */
  answer: PollAnswer;
  /** A change released it: answer with the body, whatever else If-None-Match listed. */
  released: boolean;
  closeConnection: boolean;
}

/**
 * `?wait=N`: a poll whose If-None-Match names the current answer is held until that answer
 * changes, N seconds pass, or the device hangs up; then it is answered like any poll (the
 * new answer after a change, 304 otherwise). A poll whose answer changed while a delta for
 * it is being made is held for that delta, up to deltas.waitSeconds (docs/design.md
 * "Deltas"). Shared by the fast path, which holds plain
 * long polls without Koa (a held poll then costs a few KiB, not Koa's context), and the
 * Koa route, which takes every other form.
 */
export async function holdPoll(
  services: Pick<Services, 'answers' | 'metrics'>,
  req: IncomingMessage,
  res: ServerResponse,
  mac: string,
  answer: PollAnswer,
  ifNoneMatch: string | undefined,
  waitSeconds: number,
): Promise<HeldPoll> {
  const { answers, metrics } = services;
  // `*` asks "anything at all?": it never starts a long poll (it would match every answer,
  // so nothing could ever release it as changed).
  if (answer.kind !== 'model' || waitSeconds <= 0 || !ifNoneMatch || isWildcard(ifNoneMatch)) {
    return { answer, released: false, closeConnection: false };
  }
  const unchanged = etagMatches(ifNoneMatch, answer.etag);
  const forDelta = !unchanged && answer.deltaPending;
  if (!unchanged && !forDelta) return { answer, released: false, closeConnection: false };
  const address = req.socket.remoteAddress ?? '';
  if (!answers.mayHold(address)) {
    metrics.longPollsRefused.inc();
    return { answer, released: false, closeConnection: false };
  }
  const resumeIdleTimeout = pauseIdleTimeout(req);
  const seconds = forDelta ? Math.min(waitSeconds, answers.deltaWaitSeconds) : waitSeconds;
  // Held for its delta, the poll waits as what the device has (its If-None-Match), so it is
  // answered once the delta is settled: made, or found not worth it (the ETag then stays).
  const changed = await answers.waitForChange(mac, forDelta ? ifNoneMatch : answer.etag, address, seconds * 1000, closedSignal(res));
  resumeIdleTimeout();
  // Released by shutdown: the device should not send its next poll on this connection.
  const closeConnection = answers.stopped;
  return changed ? { answer: changed, released: true, closeConnection } : { answer, released: false, closeConnection };
}

/**
 * A firmware cannot know this gateway's devices.maxWaitSeconds, so a longer wait is held for
 * the maximum instead of refused; only text that is not a number of seconds is refused.
 */
export function parseWait(value: unknown, max: number): number {
  if (value === undefined) return 0;
  const text = Array.isArray(value) ? value[0] : value;
  if (typeof text !== 'string' || !/^\d{1,9}$/.test(text)) {
    fail('invalid_query', `wait must be a whole number of seconds (longer than ${max} is held for ${max})`);
  }
  return Math.min(Number(text), max);
}

function isWildcard(ifNoneMatch: string): boolean {
  return ifNoneMatch.split(',').some((candidate) => candidate.trim() === '*');
}

/** Aborts when the device hangs up, so an abandoned long poll is dropped at once. */
function closedSignal(res: ServerResponse): AbortSignal {
  const controller = new AbortController();
  res.once('close', () => controller.abort());
  return controller.signal;
}
