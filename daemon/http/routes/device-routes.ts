import type Router from '@koa/router';
import type { Context } from 'koa';
import { fail } from '../../errors.ts';
import { REPORT_BODY_LIMIT, REPORT_WITH_CAPABILITIES_LIMIT, deviceReportSchema } from '../../contract/device-report.ts';
import { parseMac } from '../../contract/identifiers.ts';
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
    devices.seen(mac, ctx.req.socket.remoteAddress);
    let answer = answers.answerFor(mac);
    if (answer.kind === 'model' && etagMatches(ctx.get('If-None-Match'), answer.etag) && wait > 0) {
      answer = await answers.waitForChange(mac, answer.etag, wait * 1000, closed(ctx)) ?? answer;
      // Released by shutdown: tell the device not to send its next poll on this connection.
      if (answers.stopped) ctx.set('Connection', 'close');
    }
    applyPrepared(ctx, respond(answer, ctx.get('If-None-Match')));
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
    devices.report(mac, ctx.req.socket.remoteAddress, report);
    metrics.reports.inc({ state: report.state });
    ctx.status = 204;
  });

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
