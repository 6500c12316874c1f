import type { PollAnswer } from '../devices/poll-answers.ts';
import { fail } from '../errors.ts';
import type { Metrics } from '../metrics.ts';
import { etagMatches } from './etag.ts';
import type { PreparedResponse } from './prepared-response.ts';

export type PollResponder = (answer: PollAnswer, ifNoneMatch: string | undefined) => PreparedResponse;

/**
 * The answer to `GET /v1/devices/{mac}/model` once the device's PollAnswer is known: `200`
 * with the prepared body, `304` when If-None-Match names its ETag, `404 no_assignment`
 * (thrown) when nothing resolves. Each poll is counted here, whichever path answers it.
 */
export function pollResponder(metrics: Metrics): PollResponder {
  const answered = metrics.polls.labels('200');
  const unchanged = metrics.polls.labels('304');
  const refused = metrics.polls.labels('404');

  return (answer, ifNoneMatch): PreparedResponse => {
    if (answer.kind === 'none') {
      refused.inc();
      fail('no_assignment', answer.reason);
    }
    if (etagMatches(ifNoneMatch, answer.etag)) {
      unchanged.inc();
      return { status: 304, headers: { ETag: answer.etag, 'Cache-Control': 'no-cache' }, body: null };
    }
    answered.inc();
    return {
      status: 200,
      headers: {
        ETag: answer.etag,
        'Cache-Control': 'no-cache',
        'Content-Type': 'application/json; charset=utf-8',
        'Content-Length': answer.body.length,
      },
      body: answer.body,
    };
  };
}
