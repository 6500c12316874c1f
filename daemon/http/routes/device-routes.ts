import type Router from '@koa/router';
import type { Context } from 'koa';
import { z } from 'zod';
import { fail } from '../../errors.ts';
import { parseMac } from '../../identifiers.ts';
import type { PollAnswer } from '../../devices/poll-answers.ts';
import { etagMatches } from '../etag.ts';
import { readJsonAs } from '../json-body.ts';
import { REPORT_BODY_LIMIT, type Services } from '../services.ts';

const digest = z.string().regex(/^[0-9a-f]{64}$/, 'must be 64 lower-case hex characters');

// Unknown fields are refused with their name: a report the gateway would silently half-read
// hides a firmware bug. Firmware that sends more must wait for a gateway that knows it.
const reportSchema = z.strictObject({
  state: z.enum(['idle', 'downloading', 'verifying', 'installed', 'failed']),
  sha256: digest.optional(),
  model: z.string().regex(/^[a-z0-9][a-z0-9._-]{0,63}$/, 'must be a model name').optional(),
  version: z.string().regex(/^[A-Za-z0-9][A-Za-z0-9._+-]{0,63}$/, 'must be a version').optional(),
  error: z.string().max(512).optional(),
  progress: z.number().min(0).max(1).optional(),
  firmware: z.string().max(64).optional(),
  freeHeap: z.number().int().min(0).optional(),
  rssi: z.number().int().min(-150).max(0).optional(),
  uptimeSeconds: z.number().int().min(0).optional(),
});

/**
 * The device API: polls (plain ones are usually answered first by poll-fast-path.ts; long
 * polls, HEAD and every refusal come here) and reports.
 */
export function deviceRoutes(router: Router, services: Services): void {
  const { answers, devices, metrics, config } = services;
  const deviceAuth = services.auth.devices();

  router.get('/v1/devices/:mac/model', deviceAuth, async (ctx) => {
    const mac = parseMac(ctx.params.mac!);
    const wait = parseWait(ctx.query.wait, config.devices.maxWaitSeconds);
    devices.seen(mac, ctx.req.socket.remoteAddress);
    let answer: PollAnswer | undefined = answers.answerFor(mac);
    if (answer.kind === 'model' && etagMatches(ctx.get('If-None-Match'), answer.etag) && wait > 0) {
      answer = await answers.waitForChange(mac, answer.etag, wait * 1000, closed(ctx)) ?? answer;
      // Released by shutdown: tell the device not to send its next poll on this connection.
      if (answers.stopped) ctx.set('Connection', 'close');
    }
    if (answer.kind === 'none') {
      metrics.polls.inc({ status: '404' });
      fail('no_assignment', answer.reason);
    }
    ctx.set('ETag', answer.etag);
    ctx.set('Cache-Control', 'no-cache');
    if (etagMatches(ctx.get('If-None-Match'), answer.etag)) {
      metrics.polls.inc({ status: '304' });
      ctx.status = 304;
      return;
    }
    metrics.polls.inc({ status: '200' });
    ctx.type = 'application/json';
    ctx.body = answer.body;
  });

  router.post('/v1/devices/:mac/report', deviceAuth, async (ctx) => {
    const mac = parseMac(ctx.params.mac!);
    const report = await readJsonAs(ctx, REPORT_BODY_LIMIT, reportSchema);
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
