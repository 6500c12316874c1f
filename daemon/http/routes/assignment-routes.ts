import type Router from '@koa/router';
import { z } from 'zod';
import type { Assignment } from '../../catalog/types.ts';
import { fail } from '../../errors.ts';
import { parseGroupName, parseMac, parseModelName, parseSelector, parseVersionRef, selectorKey } from '../../contract/identifiers.ts';
import { assignmentHealth } from '../../devices/fleet-status.ts';
import { readJsonAs } from '../json-body.ts';
import { JSON_BODY_LIMIT, type Services } from '../services.ts';

const modelRef = z.object({ model: z.string(), version: z.string() });
const assignmentBody = modelRef.extend({
  rollout: z.object({
    percent: z.number().min(0).max(100),
    previous: modelRef,
  }).nullable().optional(),
});
const groupBody = z.object({ members: z.array(z.string()).max(10_000) });

export function assignmentRoutes(router: Router, services: Services): void {
  const { catalog, auth, log } = services;

  router.get('/v1/assignments', auth.anyToken(), (ctx) => {
    const current = catalog.current;
    const health = assignmentHealth(services.devices.list(), current);
    ctx.body = {
      revision: current.revision,
      assignments: [...current.assignments.values()].map((assignment) => ({
        ...assignment,
        resolves: current.resolveRef(assignment)?.version ?? null,
        health: health.get(assignment.selector) ?? { devices: 0, inSync: 0, failed: 0, pending: 0 },
      })),
    };
  });

  router.put('/v1/assignments/:selector', auth.scope('admin'), async (ctx) => {
    const selector = selectorKey(parseSelector(ctx.params.selector!));
    const body = await readJsonAs(ctx, JSON_BODY_LIMIT, assignmentBody);
    const ref = (r: { model: string; version: string }) => ({ model: parseModelName(r.model), version: parseVersionRef(r.version) });
    const assignment: Assignment = {
      selector,
      ...ref(body),
      rollout: body.rollout ? { percent: body.rollout.percent, previous: ref(body.rollout.previous) } : null,
      updatedAt: new Date().toISOString(),
    };
    const existed = catalog.layer('local').assignments.some((a) => a.selector === selector);
    await catalog.setAssignment(assignment);
    log.info({ selector, model: assignment.model, version: assignment.version, rollout: assignment.rollout, client: ctx.state.client }, 'assignment set');
    ctx.status = existed ? 200 : 201;
    ctx.body = assignment;
  });

  router.delete('/v1/assignments/:selector', auth.scope('admin'), async (ctx) => {
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
