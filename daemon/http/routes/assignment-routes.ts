import type Router from '@koa/router';
import { z } from 'zod';
import type { Assignment } from '../../catalog/types.ts';
import { fail } from '../../errors.ts';
import { parseGroupName, parseMac, parseModelName, parseSelector, parseVersionRef, selectorKey } from '../../contract/identifiers.ts';
import { assignmentHealth, emptyHealth } from '../../devices/fleet-status.ts';
import { checkCompatibility, type Incompatibility } from '../../devices/compatibility.ts';
import { rollbackWarnings } from '../../devices/rollback-warnings.ts';
import { readJsonAs } from '../json-body.ts';
import { JSON_BODY_LIMIT, type Services } from '../services.ts';

const modelRef = z.object({ model: z.string(), version: z.string() });
const percent = z.number().min(0).max(100);
const assignmentBody = modelRef.extend({
  rollout: z.object({
    /** Defaults to the first of `steps`. */
    percent: percent.optional(),
    previous: modelRef,
    haltOnFailures: z.union([
      z.number().int().min(1),
      z.string().regex(/^(100|[1-9]\d?)%$/, 'must be a count or a percentage from 1% to 100%') as z.ZodType<`${number}%`>,
    ]).nullable().optional(),
    minDevices: z.number().int().min(1).nullable().optional(),
    steps: z.array(z.number().int().min(1).max(100)).min(1).max(20)
      .refine((steps) => steps.every((step, i) => i === 0 || step > steps[i - 1]!), 'must rise').nullable().optional(),
    stepAfterMinutes: z.number().int().min(1).max(10_080).nullable().optional(),
  }).refine((r) => r.percent !== undefined || r.steps, { message: 'needs percent (or steps)', path: ['percent'] })
    .refine((r) => !r.steps === !r.stepAfterMinutes, { message: 'steps and stepAfterMinutes go together', path: ['stepAfterMinutes'] })
    .nullable().optional(),
});
const strictQuery = (value: unknown): boolean => {
  if (value === undefined || value === 'false') return false;
  if (value === 'true' || value === '') return true;
  fail('invalid_query', 'strict must be true or false');
};
const groupBody = z.object({ members: z.array(z.string()).max(10_000) });

export function assignmentRoutes(router: Router, services: Services): void {
  const { catalog, auth, log } = services;

  router.get('/v1/assignments', auth.anyToken(), (ctx) => {
    const current = catalog.current;
    const health = assignmentHealth(services.devices.records(), current);
    ctx.body = {
      revision: current.revision,
      assignments: [...current.assignments.values()].map((assignment) => ({
        ...assignment,
        resolves: current.resolveRef(assignment)?.version ?? null,
        health: health.get(assignment.selector) ?? emptyHealth(),
        ...(assignment.rollout ? { cohort: services.rollouts.health(assignment) } : {}),
      })),
    };
  });

  router.put('/v1/assignments/:selector', auth.scope('assign', 'admin'), async (ctx) => {
    const selector = selectorKey(parseSelector(ctx.params.selector!));
    const body = await readJsonAs(ctx, JSON_BODY_LIMIT, assignmentBody);
    const ref = (r: { model: string; version: string }) => ({ model: parseModelName(r.model), version: parseVersionRef(r.version) });
    const strict = strictQuery(ctx.query.strict);
    const now = services.clock.now().toISOString();
    const r = body.rollout;
    const assignment: Assignment = {
      selector,
      ...ref(body),
      rollout: r
        ? {
            percent: r.percent ?? r.steps![0]!,
            previous: ref(r.previous),
            ...(r.haltOnFailures ? { haltOnFailures: r.haltOnFailures } : {}),
            ...(r.minDevices ? { minDevices: r.minDevices } : {}),
            ...(r.steps ? { steps: r.steps, stepAfterMinutes: r.stepAfterMinutes! } : {}),
            percentSince: now,
            halted: null,
          }
        : null,
      updatedAt: now,
    };
    const compatibility = compatibilitySummary(selector, assignment);
    if (strict && compatibility.incompatible.length > 0) {
      fail('incompatible', `${compatibility.incompatible.length} known device(s) under ${selector} cannot run ${compatibility.model}: `
        + compatibility.incompatible.slice(0, 5).map((d) => `${d.mac} (${d.reasons.join(', ')})`).join('; ')
        + '; nothing was changed (drop ?strict=true to assign anyway: those devices keep what they run)');
    }
    const existed = catalog.layer('local').assignments.some((a) => a.selector === selector);
    await catalog.setAssignment(assignment);
    const warnings = rollbackWarningsFor(selector, assignment);
    log.info({ selector, model: assignment.model, version: assignment.version, rollout: assignment.rollout, incompatible: compatibility.incompatible.length, rollbackRefusals: warnings.reduce((n, w) => n + w.devices, 0), client: ctx.state.client }, 'assignment set');
    ctx.status = existed ? 200 : 201;
    ctx.body = { ...assignment, compatibility, warnings };
  });

  /**
   * Which known devices this assignment would decide for can run its model: so a pipeline
   * sees the problem when it assigns, not when a device fails to load the model.
   */
  function compatibilitySummary(selector: string, assignment: Assignment) {
    const current = catalog.current;
    const model = current.resolveRef(assignment);
    const summary = {
      model: model ? `${model.name}@${model.version}` : `${assignment.model}@${assignment.version}`,
      devices: 0,
      compatible: 0,
      unknown: 0,
      incompatible: [] as Array<{ mac: string; reasons: string[]; missing: Incompatibility }>,
    };
    if (!model) return summary;
    for (const device of services.devices.records()) {
      if (!current.decidesFor(selector, device.mac)) continue;
      summary.devices++;
      const check = checkCompatibility(model, device.capabilities);
      if (check.status === 'compatible') summary.compatible++;
      else if (check.status === 'unknown') summary.unknown++;
      else summary.incompatible.push({ mac: device.mac, reasons: check.reasons, missing: check.missing });
    }
    return summary;
  }

  /** The assigned model, and with a staged rollout the previous one too: what devices under it may be offered. */
  function rollbackWarningsFor(selector: string, assignment: Assignment) {
    const current = catalog.current;
    const offered = (assignment.rollout ? [assignment, assignment.rollout.previous] : [assignment])
      .flatMap((ref) => current.resolveRef(ref) ?? []);
    return rollbackWarnings(current, services.devices.records(), selector, offered);
  }

  const rolloutAction = (action: 'halt' | 'resume' | 'promote') => async (ctx: import('koa').Context) => {
    const selector = selectorKey(parseSelector(ctx.params.selector!));
    const { rollouts } = services;
    const updated = action === 'halt' ? await rollouts.halt(selector, 'operator')
      : action === 'resume' ? await rollouts.resume(selector)
      : await rollouts.promote(selector);
    log.info({ selector, action, changed: updated !== null, client: ctx.state.client }, `rollout ${action}`);
    const assignment = catalog.current.assignments.get(selector)!;
    ctx.body = { ...assignment, changed: updated !== null, cohort: rollouts.health(assignment) };
  };
  router.post('/v1/assignments/:selector/rollout/halt', auth.scope('assign', 'admin'), rolloutAction('halt'));
  router.post('/v1/assignments/:selector/rollout/resume', auth.scope('assign', 'admin'), rolloutAction('resume'));
  router.post('/v1/assignments/:selector/rollout/promote', auth.scope('assign', 'admin'), rolloutAction('promote'));

  router.delete('/v1/assignments/:selector', auth.scope('assign', 'admin'), async (ctx) => {
    const selector = selectorKey(parseSelector(ctx.params.selector!));
    await catalog.deleteAssignment(selector);
    log.info({ selector, client: ctx.state.client }, 'assignment deleted');
    ctx.status = 204;
  });

  router.get('/v1/groups', auth.anyToken(), (ctx) => {
    ctx.body = {
      groups: [...catalog.current.groups.entries()].map(([name, { members, layer }]) => ({ name, members, layer })),
    };
  });

  router.get('/v1/groups/:name', auth.anyToken(), (ctx) => {
    const name = parseGroupName(ctx.params.name!);
    const group = catalog.current.groups.get(name);
    if (!group) fail('group_not_found', `no group named ${name}`);
    ctx.body = { name, ...group };
  });

  router.put('/v1/groups/:name', auth.scope('admin'), async (ctx) => {
    const name = parseGroupName(ctx.params.name!);
    const body = await readJsonAs(ctx, JSON_BODY_LIMIT, groupBody);
    const members = [...new Set(body.members.map(parseMac))].sort();
    const existed = name in catalog.layer('local').groups;
    await catalog.setGroup(name, members);
    log.info({ group: name, members: members.length, client: ctx.state.client }, 'group set');
    ctx.status = existed ? 200 : 201;
    ctx.body = { name, members };
  });

  router.delete('/v1/groups/:name', auth.scope('admin'), async (ctx) => {
    const name = parseGroupName(ctx.params.name!);
    await catalog.deleteGroup(name);
    log.info({ group: name, client: ctx.state.client }, 'group deleted');
    ctx.status = 204;
  });

}
