import type Router from '@koa/router';
import type { Context } from 'koa';
import { fail } from '../../errors.ts';
import { REPORT_BODY_LIMIT, REPORT_WITH_CAPABILITIES_LIMIT, deviceReportSchema } from '../../contract/device-report.ts';
import { parseMac } from '../../contract/identifiers.ts';
import type { SeenOutcome } from '../../devices/device-registry.ts';
import { pauseIdleTimeout } from '../http-server.ts';
import { etagMatches } from '../etag.ts';
import { readJsonSized, tooLarge, validate } from '../json-body.ts';
import { pollResponder } from '../poll-responder.ts';
import { applyPrepared } from '../prepared-response.ts';
import type { Services } from '../services.ts';

/**
 * The device API: polls (plain ones are usually answered first by poll-fast-path.ts; long
 * polls, HEAD and every refusal come here) and reports.
 */
export function deviceRoutes(router: Router, services: Services): void {
  const { answers, devices, metrics, config } = services;
  const deviceAuth = services.auth.deviceAccess();
  const respond = pollResponder(metrics);

  router.get('/v1/devices/:mac/model', deviceAuth, async (ctx) => {
    const mac = parseMac(ctx.params.mac!);
    const wait = parseWait(ctx.query.wait, config.devices.maxWaitSeconds);
    let answer = answers.answerFor(mac);
    record(devices.seen(mac, ctx.req.socket.remoteAddress, answer.kind === 'model'));
    const ifNoneMatch = ctx.get('If-None-Match');
    let released = false;
    // `*` asks "anything at all?": it never starts a long poll (it would match every answer,
    // so nothing could ever release it as changed).
    if (answer.kind === 'model' && wait > 0 && !isWildcard(ifNoneMatch) && etagMatches(ifNoneMatch, answer.etag)) {
      const address = ctx.req.socket.remoteAddress ?? '';
      if (answers.mayHold(address)) {
        const resumeIdleTimeout = pauseIdleTimeout(ctx.req);
        const changed = await answers.waitForChange(mac, answer.etag, address, wait * 1000, closed(ctx));
        resumeIdleTimeout();
        if (changed) {
          answer = changed;
          released = true;
        }
        // Released by shutdown: tell the device not to send its next poll on this connection.
        if (answers.stopped) ctx.set('Connection', 'close');
      } else {
        metrics.longPollsRefused.inc();
      }
    }
    // A long poll released by a change answers with the new body, whatever else the header listed.
    applyPrepared(ctx, respond(answer, released ? undefined : ifNoneMatch));
  });

  router.post('/v1/devices/:mac/report', deviceAuth, async (ctx) => {
    const mac = parseMac(ctx.params.mac!);
    // Up to 64 KiB when the report carries capabilities (2,048 operator names), 4 KiB otherwise.
    const { value, bytes } = await readJsonSized(ctx, REPORT_WITH_CAPABILITIES_LIMIT);
    // The size rule first: a body too big for a report without capabilities is 413 whatever
    // else is wrong with it (unknown fields are 400 after).
    const carriesCapabilities = value !== null && typeof value === 'object' && 'capabilities' in value;
    if (bytes > REPORT_BODY_LIMIT && !carriesCapabilities) tooLarge(ctx, REPORT_BODY_LIMIT);
    const report = validate(deviceReportSchema, value);
    if (bytes > REPORT_BODY_LIMIT && report.capabilities === undefined) tooLarge(ctx, REPORT_BODY_LIMIT);
    const outcome = devices.report(mac, ctx.req.socket.remoteAddress, answers.answerFor(mac).kind === 'model', report);
    record(outcome);
    if (outcome.kind === 'ignored') {
      fail('device_not_found', `reports are kept only for devices the catalog names or assigns a model to, and ${mac} is neither`);
    }
    metrics.reports.inc({ state: report.state });
    ctx.status = 204;
  });

}

/** A new MAC from an address that introduced too many lately is refused until it may try again. */
function record(outcome: SeenOutcome): void {
  if (outcome.kind === 'rate_limited') {
    fail('rate_limited', `this address introduced too many new devices lately; try again in ${outcome.retryAfterSeconds} s`, { 'Retry-After': String(outcome.retryAfterSeconds) });
  }
}

function isWildcard(ifNoneMatch: string): boolean {
  return ifNoneMatch.split(',').some((candidate) => candidate.trim() === '*');
}

/**
 * A firmware cannot know this gateway's devices.maxWaitSeconds, so a longer wait is held for
 * the maximum instead of refused; only text that is not a number of seconds is refused.
 */
function parseWait(value: unknown, max: number): number {
  if (value === undefined) return 0;
  const text = Array.isArray(value) ? value[0] : value;
  if (typeof text !== 'string' || !/^\d{1,9}$/.test(text)) {
    fail('invalid_query', `wait must be a whole number of seconds (longer than ${max} is held for ${max})`);
  }
  return Math.min(Number(text), max);
}

/** Aborts when the device hangs up, so an abandoned long poll is dropped at once. */
function closed(ctx: Context): AbortSignal {
  const controller = new AbortController();
  ctx.res.once('close', () => controller.abort());
  return controller.signal;
}
