import test from 'ava';
import { bucketOf } from '../helpers/api.ts';
import { runCli, startDaemon, type RunningDaemon } from '../helpers/daemon-process.ts';
import { Teardowns, until } from '../helpers/harness.ts';
import { ADD_SHA256, MUL_SHA256, fixture } from '../helpers/programs.ts';
import { ADMIN_TOKEN, ALL_TOKEN } from '../helpers/tokens.ts';

// Rollouts that stop themselves, with a gateway child process, devices over HTTP and the
// CLI: a cohort reporting failures halts the rollout, its devices get `previous` back on
// their next poll, and a long poll held at the time wakes with it.

const shared = new Teardowns();
let gw: RunningDaemon;

test.before(async () => {
  gw = await startDaemon(shared);
});

test.after.always(() => shared.run());

const client = () => ['--gateway', gw.url, '--token', ALL_TOKEN];

async function json(method: string, path: string, body?: unknown, token: string | null = ALL_TOKEN): Promise<{ status: number; body: any }> {
  const response = await gw.fetch(path, {
    method,
    ...(token === null ? {} : { token }),
    ...(body === undefined ? {} : { headers: { 'Content-Type': 'application/json' }, body: JSON.stringify(body) }),
  });
  const text = await response.text();
  return { status: response.status, body: text ? JSON.parse(text) : undefined };
}

async function poll(mac: string, headers: Record<string, string> = {}, query = ''): Promise<{ status: number; etag: string | null; sha256: string | null }> {
  const response = await gw.fetch(`/v1/devices/${mac}/model${query}`, { headers });
  const text = await response.text();
  return { status: response.status, etag: response.headers.get('etag'), sha256: response.status === 200 ? JSON.parse(text).model.sha256 : null };
}

/** MACs whose bucket for name@version is below / at least `percent`. */
function cohortMacs(prefix: string, name: string, version: string, percent: number, inside: number, outside: number): { inside: string[]; outside: string[] } {
  const found = { inside: [] as string[], outside: [] as string[] };
  for (let i = 0; found.inside.length < inside || found.outside.length < outside; i++) {
    const mac = `${prefix}:${(i >> 8).toString(16).padStart(2, '0')}:${(i & 0xff).toString(16).padStart(2, '0')}`;
    const list = bucketOf(mac, name, version) < percent ? found.inside : found.outside;
    if (list.length < (list === found.inside ? inside : outside)) list.push(mac);
  }
  return found;
}

async function assignmentOf(selector: string): Promise<any> {
  const { body } = await json('GET', '/v1/assignments', undefined, ADMIN_TOKEN);
  return body.assignments.find((a: any) => a.selector === selector);
}

test('failures past haltOnFailures halt the rollout: the cohort gets previous, a held long poll wakes, warn log and metric', async (t) => {
  for (const [version, bytes] of [['1', fixture('add.pte')], ['2', fixture('mul.pte')]] as const) {
    t.is((await gw.fetch(`/v1/models/kws/${version}`, { method: 'PUT', body: bytes, token: ALL_TOKEN })).status, 201);
  }
  const { inside, outside } = cohortMacs('0d:00:00:00', 'kws', '2', 50, 4, 1);
  t.is((await json('PUT', '/v1/groups/canary', { members: [...inside, ...outside] })).status, 201);
  const assign = await runCli(['assign', 'group:canary', 'kws', '2', '--rollout', '50', '--previous', 'kws@1', '--halt-on-failures', '50%', '--min-devices', '3', ...client()]);
  t.is(assign.code, 0, assign.stderr);
  for (const mac of inside) t.is((await poll(mac)).sha256, MUL_SHA256);
  t.is((await poll(outside[0]!)).sha256, ADD_SHA256);

  // One cohort device holds a long poll on its current answer.
  const [a, b, c, d] = inside as [string, string, string, string];
  const current = await poll(d);
  const held = poll(d, { 'If-None-Match': current.etag! }, '?wait=60');

  const report = (mac: string, body: object) => json('POST', `/v1/devices/${mac}/report`, body, null);
  t.is((await report(a, { state: 'failed', sha256: ADD_SHA256, model: 'kws', version: '2', error: 'Operator missing: aten::mul.out' })).status, 204);
  t.is((await report(b, { state: 'installed', sha256: MUL_SHA256 })).status, 204);
  // 1 of 4 failed: below 50 %.
  t.falsy((await assignmentOf('group:canary')).rollout.halted);
  t.is((await report(c, { state: 'failed', sha256: ADD_SHA256, error: 'Operator missing: aten::mul.out' })).status, 204);

  const woken = await held;
  t.is(woken.status, 200);
  t.is(woken.sha256, ADD_SHA256, 'the held long poll woke with previous');
  for (const mac of [a, b, c, d]) t.is((await poll(mac)).sha256, ADD_SHA256, `${mac} is offered previous`);

  const halted = await assignmentOf('group:canary');
  t.like(halted.rollout, { percent: 50, haltOnFailures: '50%', minDevices: 3, halted: { by: 'failures', failed: 2, cohort: 4, reasons: { 'Operator missing: aten::mul.out': 2 } } });
  t.like(halted.cohort, { cohort: 4, failed: 2, threshold: 2, passed: true });
  const warn = await gw.waitForLog((line) => line.level === 40 && /rollout halted/.test(String(line.msg)) && line.selector === 'group:canary');
  t.like(warn, { selector: 'group:canary', failed: 2, cohort: 4 });
  const metrics = await (await gw.fetch('/metrics')).text();
  t.regex(metrics, /^modelferry_rollout_halts_total\{selector="group:canary",by="failures"\} 1$/m);

  // resume: the cohort gets the new version again; failures before it no longer count.
  const resumed = await runCli(['rollout', 'resume', 'group:canary', ...client()]);
  t.is(resumed.code, 0, resumed.stderr);
  t.like(JSON.parse(resumed.stdout), { changed: true, rollout: { halted: null }, cohort: { failed: 0 } });
  t.is((await poll(d)).sha256, MUL_SHA256);

  // halt by hand (the admin route behind `modelferry rollout halt`), then promote: everyone,
  // the outside device too, gets the new version.
  const stopped = await json('POST', '/v1/assignments/group:canary/rollout/halt');
  t.is(stopped.status, 200);
  t.like(stopped.body, { changed: true, rollout: { halted: { by: 'operator' } } });
  t.is((await poll(d)).sha256, ADD_SHA256);
  t.like((await json('POST', '/v1/assignments/group:canary/rollout/halt')).body, { changed: false });
  const promoted = await json('POST', '/v1/assignments/group:canary/rollout/promote');
  t.is(promoted.status, 200);
  t.like(promoted.body, { rollout: { percent: 100, halted: null } });
  for (const mac of [...inside, ...outside]) t.is((await poll(mac)).sha256, MUL_SHA256);
});

test('a model that fails on the device after install, or is rolled back from, counts toward haltOnFailures; rollbacks show in the inventory, the status page and a metric per model', async (t) => {
  for (const [version, bytes] of [['1', fixture('add.pte')], ['2', fixture('mul.pte')]] as const) {
    t.is((await gw.fetch(`/v1/models/vad/${version}`, { method: 'PUT', body: bytes, token: ALL_TOKEN })).status, 201);
  }
  const { inside } = cohortMacs('0f:00:00:00', 'vad', '2', 100, 4, 0);
  const [runs, rolled, fine, other] = inside as [string, string, string, string];
  t.is((await json('PUT', '/v1/groups/field', { members: inside })).status, 201);
  const assign = await runCli(['assign', 'group:field', 'vad', '2', '--rollout', '100', '--previous', 'vad@1', '--halt-on-failures', '2', ...client()]);
  t.is(assign.code, 0, assign.stderr);
  const report = (mac: string, body: object) => json('POST', `/v1/devices/${mac}/report`, body, null);
  for (const mac of inside) t.is((await report(mac, { state: 'installed', sha256: ADD_SHA256, model: 'vad', version: '1' })).status, 204);

  // Installed and running the new model, but the application says it fails on it.
  t.is((await report(runs, { state: 'failed', sha256: MUL_SHA256, model: 'vad', version: '2', error: 'vad@2: first inference out of range' })).status, 204);
  t.is((await report(fine, { state: 'installed', sha256: MUL_SHA256, model: 'vad', version: '2' })).status, 204);
  // Judged once the report is in: one failure counted, below the threshold of 2.
  const judged = await until('the failure counted', async () => { const a = await assignmentOf('group:field'); return a.cohort.failed === 1 ? a : undefined; });
  t.falsy(judged.rollout.halted, 'one failure of a threshold of 2');
  const runsView = (await json('GET', `/v1/devices/${runs}`, undefined, ADMIN_TOKEN)).body;
  t.like(runsView, { inSync: false, state: 'failed', rolledBack: null });

  // Rolled back to vad@1: what it runs again is the old sha256, the failure names vad@2.
  const rollback = { state: 'failed', sha256: ADD_SHA256, model: 'vad', version: '1', rolledBackFrom: MUL_SHA256, error: 'vad@2 rolled back: not confirmed after 2 boots' };
  t.is((await report(rolled, rollback)).status, 204);
  // Repeated (a device re-sends its last report after a reconnect): one rollback, not two.
  t.is((await report(rolled, rollback)).status, 204);

  const halted = await until('the rollout halted', async () => { const a = await assignmentOf('group:field'); return a.rollout.halted ? a : undefined; });
  t.like(halted.rollout, { halted: { by: 'failures', failed: 2, cohort: 4 } });
  t.deepEqual(Object.keys(halted.rollout.halted.reasons).sort(), ['vad@2 rolled back: not confirmed after 2 boots', 'vad@2: first inference out of range']);
  for (const mac of [runs, rolled, fine, other]) t.is((await poll(mac)).sha256, ADD_SHA256, `${mac} is offered previous`);

  const view = (await json('GET', `/v1/devices/${rolled}`, undefined, ADMIN_TOKEN)).body;
  t.like(view, { state: 'failed', running: { sha256: ADD_SHA256 }, rolledBack: { sha256: MUL_SHA256, model: 'vad', version: '2', reason: 'vad@2 rolled back: not confirmed after 2 boots' } });
  const metrics = await (await gw.fetch('/metrics')).text();
  t.regex(metrics, /^modelferry_device_rollbacks_total\{model="vad"\} 1$/m);
  const warn = await gw.waitForLog((line) => line.level === 40 && /rolled back from a model/.test(String(line.msg)));
  t.like(warn, { mac: rolled, rolledBackFrom: MUL_SHA256, runs: ADD_SHA256 });
  const page = await (await gw.fetch(`/?q=${rolled.replaceAll(':', '')}`)).text();
  t.regex(page, /<span class="badge">rolled back<\/span>/);
  t.true(page.includes('vad@2 rolled back: not confirmed after 2 boots'));
});

test('rollout actions on an assignment without a rollout, or none at all, are refused', async (t) => {
  t.is((await gw.fetch('/v1/models/plain/1', { method: 'PUT', body: fixture('add.pte'), token: ALL_TOKEN })).status, 201);
  t.is((await json('PUT', '/v1/assignments/0e:00:00:00:00:01', { model: 'plain', version: '1' })).status, 201);
  const none = await json('POST', '/v1/assignments/0e:00:00:00:00:01/rollout/halt');
  t.is(none.status, 404);
  t.is(none.body.error, 'assignment_not_found');
  t.regex(none.body.message, /has no staged rollout/);
  const missing = await runCli(['rollout', 'promote', '0e:00:00:00:00:02', ...client()]);
  t.is(missing.code, 1);
  t.regex(missing.stderr, /no assignment for 0e:00:00:00:00:02/);
  t.is((await json('POST', '/v1/assignments/default/rollout/halt', undefined, null)).status, 401);
});
