import type Router from '@koa/router';
import { fail } from '../../errors.ts';
import { REPORT_BODY_LIMIT, REPORT_WITH_CAPABILITIES_LIMIT, deviceReportSchema } from '../../contract/device-report.ts';
import { parseMac } from '../../contract/identifiers.ts';
import { holdPoll, parseWait } from '../long-poll.ts';
import { readJsonSized, tooLarge, validate } from '../json-body.ts';
import { pollResponder } from '../poll-responder.ts';
import type { SeenOutcome } from '../../devices/device-registry.ts';
import { modelRolledBackFrom } from '../../devices/fleet-status.ts';
import { applyPrepared } from '../prepared-response.ts';
import { rateLimitRefusal } from '../rate-limit-refusal.ts';
import { DEVICE_POLL_ROUTE } from '../route-patterns.ts';
import type { Services } from '../services.ts';

/**
 * The device API: polls (plain ones are usually answered first by poll-fast-path.ts; long
 * polls, HEAD and every refusal come here) and reports.
 */
export function deviceRoutes(router: Router, services: Services): void {
  const { answers, devices, metrics, config, catalog } = services;
  const deviceAuth = services.auth.deviceAccess();
  const respond = pollResponder(metrics);

  router.get(DEVICE_POLL_ROUTE, deviceAuth, async (ctx) => {
    const mac = parseMac(ctx.params.mac!);
    const wait = parseWait(ctx.query.wait, config.devices.maxWaitSeconds);
    const answer = answers.answerFor(mac);
    refuseIfRateLimited(devices.seen(mac, ctx.req.socket.remoteAddress, answer.kind === 'model'));
    const ifNoneMatch = ctx.get('If-None-Match');
    const held = await holdPoll(services, ctx.req, ctx.res, mac, answer, ifNoneMatch, wait);
    if (held.closeConnection) ctx.set('Connection', 'close');
    applyPrepared(ctx, respond(held.answer, held.released ? undefined : ifNoneMatch));
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
    const before = devices.get(mac)?.report;
    const outcome = devices.report(mac, ctx.req.socket.remoteAddress, answers.answerFor(mac).kind === 'model', report);
    refuseIfRateLimited(outcome);
    if (outcome.kind === 'ignored') {
      fail('device_not_found', `reports are kept only for devices the catalog names or assigns a model to, and ${mac} is neither`);
    }
    metrics.reports.inc({ state: report.state });
    // Counted once per rollback, not again each time the device repeats its report.
    if (report.state === 'failed' && report.rolledBackFrom && !(before?.state === 'failed' && before.rolledBackFrom === report.rolledBackFrom)) {
      const from = modelRolledBackFrom(catalog.current, report.rolledBackFrom, catalog.current.resolveDevice(mac)?.target);
      metrics.rollbacks.inc({ model: from?.name ?? 'unknown' });
      services.log.warn({ mac, rolledBackFrom: report.rolledBackFrom, runs: report.sha256, reason: report.error }, 'a device rolled back from a model it could not confirm');
    }
    ctx.status = 204;
  });
}

function refuseIfRateLimited(outcome: SeenOutcome): void {
  const refusal = rateLimitRefusal(outcome);
  if (refusal) throw refusal;
}
