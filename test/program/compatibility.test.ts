import test from 'ava';
import { startDaemon, type RunningDaemon } from '../helpers/daemon-process.ts';
import { Teardowns } from '../helpers/harness.ts';
import { ADD_SHA256, MUL_SHA256, fixture } from '../helpers/programs.ts';
import { ADMIN_TOKEN, ALL_TOKEN } from '../helpers/tokens.ts';

// Device capabilities and compatibility in poll resolution, against a gateway running as a
// child process. add.pte needs aten::add.out and 48 arena bytes, mul.pte aten::mul.out and
// 96 (test/program/read-program.test.ts); mul.pte is 1032 bytes.

const shared = new Teardowns();
let gw: RunningDaemon;

test.before(async () => {
  gw = await startDaemon(shared);
});

test.after.always(() => shared.run());

const caps = (operators: string[], extra: object = {}) => ({ operators, delegates: [], arenaBytes: 4096, slotBytes: 65536, runtime: 'executorch 1.0', ...extra });

async function send(method: string, path: string, body?: unknown, token: string | undefined = ALL_TOKEN): Promise<{ status: number; body: any }> {
  const response = await gw.fetch(path, {
    method,
    ...(token === undefined ? {} : { token }),
    ...(body === undefined ? {} : { headers: { 'Content-Type': 'application/json' }, body: typeof body === 'string' ? body : JSON.stringify(body) }),
  });
  const text = await response.text();
  return { status: response.status, body: text ? JSON.parse(text) : undefined };
}

async function push(name: string, version: string, bytes: Buffer): Promise<void> {
  const response = await gw.fetch(`/v1/models/${name}/${version}`, { method: 'PUT', body: bytes, token: ALL_TOKEN });
  if (response.status !== 201) throw new Error(`push ${name}@${version}: ${response.status} ${await response.text()}`);
}

/** What a device's poll offers: the sha256, or the status when it is not 200. */
async function offered(mac: string): Promise<string | number> {
  const response = await gw.fetch(`/v1/devices/${mac}/model`);
  if (response.status !== 200) return response.status;
  return ((await response.json()) as { model: { sha256: string } }).model.sha256;
}

const report = (mac: string, body: object) => send('POST', `/v1/devices/${mac}/report`, body, undefined);

test('a device that reports only aten::add.out is not offered mul.pte and keeps add.pte; others are served as before', async (t) => {
  await push('kws', '1', fixture('add.pte'));
  await push('kws', '2', fixture('mul.pte'));
  const [addOnly, never, both, smallArena, smallSlot] = ['0a:00:00:00:00:01', '0a:00:00:00:00:02', '0a:00:00:00:00:03', '0a:00:00:00:00:04', '0a:00:00:00:00:05'];
  t.is((await send('PUT', '/v1/groups/fleet', { members: [addOnly, never, both, smallArena, smallSlot] })).status, 201);
  t.is((await send('PUT', '/v1/assignments/group:fleet', { model: 'kws', version: '1' })).status, 201);
  for (const mac of [addOnly, never, both, smallArena, smallSlot]) t.is(await offered(mac), ADD_SHA256);
  t.is((await report(addOnly, { state: 'installed', sha256: ADD_SHA256, capabilities: caps(['aten::add.out']) })).status, 204);
  t.is((await report(both, { state: 'installed', sha256: ADD_SHA256, capabilities: caps(['aten::add.out', 'aten::mul.out']) })).status, 204);
  t.is((await report(smallArena, { state: 'installed', sha256: ADD_SHA256, capabilities: caps(['aten::add.out', 'aten::mul.out'], { arenaBytes: 64 }) })).status, 204);
  t.is((await report(smallSlot, { state: 'installed', sha256: ADD_SHA256, capabilities: caps(['aten::add.out', 'aten::mul.out'], { slotBytes: 1031 }) })).status, 204);
  t.is((await report(never, { state: 'installed', sha256: ADD_SHA256 })).status, 204);

  // ?strict=true refuses, naming the devices and what they lack; nothing changes.
  const strict = await send('PUT', '/v1/assignments/group:fleet?strict=true', { model: 'kws', version: '2' });
  t.is(strict.status, 409);
  t.is(strict.body.error, 'incompatible');
  t.regex(strict.body.message, /3 known device\(s\) under group:fleet cannot run kws@2: 0a:00:00:00:00:01 \(missing operator aten::mul\.out\)/);
  t.regex(strict.body.message, /needs 96 bytes of planned memory, the arena has 64/);
  t.regex(strict.body.message, /is 1032 bytes, the model slot holds 1031/);
  t.is(await offered(both), ADD_SHA256);

  // Without strict, the assignment answers with the summary a pipeline can read.
  const assigned = await send('PUT', '/v1/assignments/group:fleet', { model: 'kws', version: '2' });
  t.is(assigned.status, 200);
  t.like(assigned.body.compatibility, { model: 'kws@2', devices: 5, compatible: 1, unknown: 1 });
  t.deepEqual(assigned.body.compatibility.incompatible.map((d: any) => [d.mac, d.reasons]), [
    [addOnly, ['missing operator aten::mul.out']],
    [smallArena, ['needs 96 bytes of planned memory, the arena has 64']],
    [smallSlot, ['is 1032 bytes, the model slot holds 1031']],
  ]);

  t.is(await offered(addOnly), ADD_SHA256, 'keeps what it runs');
  t.is(await offered(smallArena), ADD_SHA256);
  // add.pte (1072 bytes) does not fit 1031 bytes either: nothing to offer, it keeps its model.
  t.is(await offered(smallSlot), 404);
  t.is(await offered(both), MUL_SHA256);
  t.is(await offered(never), MUL_SHA256, 'never reported capabilities: served as today');

  const device = (await send('GET', `/v1/devices/${addOnly}`, undefined, ADMIN_TOKEN)).body;
  t.like(device, {
    compatibility: { status: 'incompatible', model: 'kws@2', missing: { operators: ['aten::mul.out'], delegates: [], arenaBytes: null, slotBytes: null } },
    assigned: { model: 'kws', version: '1', sha256: ADD_SHA256, heldBy: 'incompatible' },
    capabilities: { operators: ['aten::add.out'], runtime: 'executorch 1.0' },
    inSync: true,
  });
  const { assignments } = (await send('GET', '/v1/assignments', undefined, ADMIN_TOKEN)).body;
  t.like(assignments.find((a: any) => a.selector === 'group:fleet').health, {
    devices: 5,
    incompatible: 3,
    incompatibleReasons: {
      'missing operator aten::mul.out': 1,
      'needs 96 bytes of planned memory, the arena has 64': 1,
      'is 1032 bytes, the model slot holds 1031': 1,
    },
  });

  // A held long poll wakes when the device's capabilities change so that it can run mul.pte.
  const first = await gw.fetch(`/v1/devices/${addOnly}/model`);
  const etag = first.headers.get('etag')!;
  await first.arrayBuffer();
  const held = gw.fetch(`/v1/devices/${addOnly}/model?wait=30`, { headers: { 'If-None-Match': etag } });
  t.is((await report(addOnly, { state: 'idle', sha256: ADD_SHA256, capabilities: caps(['aten::add.out', 'aten::mul.out']) })).status, 204);
  const woken = await held;
  t.is(woken.status, 200);
  t.is(((await woken.json()) as any).model.sha256, MUL_SHA256);
});

test('in a rollout an incompatible device stays on previous; with nothing it can run it gets 404 and keeps its model', async (t) => {
  await push('vad', '1', fixture('add.pte'));
  await push('vad', '2', fixture('mul.pte'));
  const [device, stranger] = ['0b:00:00:00:00:01', '0b:00:00:00:00:02'];
  t.is((await send('PUT', `/v1/assignments/${device}`, { model: 'vad', version: '2', rollout: { percent: 100, previous: { model: 'vad', version: '1' } } })).status, 201);
  t.is((await report(device, { state: 'idle', capabilities: caps(['aten::add.out']) })).status, 204);
  t.is(await offered(device), ADD_SHA256);
  t.like((await send('GET', `/v1/devices/${device}`, undefined, ADMIN_TOKEN)).body, { assigned: { version: '1', heldBy: 'incompatible' } });

  t.is((await send('PUT', `/v1/assignments/${stranger}`, { model: 'vad', version: '2' })).status, 201);
  t.is((await report(stranger, { state: 'idle', sha256: 'f'.repeat(64), capabilities: caps(['aten::sub.out']) })).status, 204);
  const refused = await gw.fetch(`/v1/devices/${stranger}/model`);
  t.is(refused.status, 404);
  const body = await refused.json() as any;
  t.is(body.error, 'no_assignment');
  t.regex(body.message, /cannot run vad@2 \(missing operator aten::mul\.out\).*keeps its current model/);
});

test('hostile capability reports are refused without changing the stored device record', async (t) => {
  const mac = '0c:00:00:00:00:01';
  // Reports are kept only for devices the catalog names: this one through a group.
  t.is((await send('PUT', '/v1/groups/hostile', { members: [mac] })).status, 201);
  t.is((await report(mac, { state: 'installed', sha256: ADD_SHA256, capabilities: caps(['aten::add.out']) })).status, 204);
  const before = (await send('GET', `/v1/devices/${mac}`, undefined, ADMIN_TOKEN)).body;
  const many = Array.from({ length: 2049 }, (_, i) => `aten::op${i}.out`);
  const cases: Array<[string, unknown, number, string]> = [
    ['2,049 operators', { state: 'idle', capabilities: caps(many) }, 400, 'invalid_body'],
    ['a 129-character name', { state: 'idle', capabilities: caps([`aten::${'x'.repeat(123)}`]) }, 400, 'invalid_body'],
    ['a name with a space', { state: 'idle', capabilities: caps(['aten::add .out']) }, 400, 'invalid_body'],
    ['operators that are not strings', { state: 'idle', capabilities: caps([1, 2] as never) }, 400, 'invalid_body'],
    ['operators that are not a list', { state: 'idle', capabilities: { operators: 'aten::add.out' } }, 400, 'invalid_body'],
    ['a negative arena', { state: 'idle', capabilities: caps([], { arenaBytes: -1 }) }, 400, 'invalid_body'],
    ['a fractional slot', { state: 'idle', capabilities: caps([], { slotBytes: 1.5 }) }, 400, 'invalid_body'],
    ['65 delegates', { state: 'idle', capabilities: caps([], { delegates: Array.from({ length: 65 }, (_, i) => `B${i}`) }) }, 400, 'invalid_body'],
    ['capabilities that are a string', { state: 'idle', capabilities: 'everything' }, 400, 'invalid_body'],
    ['more than 64 KiB', { state: 'idle', capabilities: caps(Array.from({ length: 2000 }, (_, i) => `aten::${'y'.repeat(30)}${i}.out`)) }, 413, 'body_too_large'],
    ['more than 4 KiB without capabilities', { state: 'failed', error: 'x'.repeat(500), firmware: '1', pad: 'z'.repeat(5000) }, 413, 'body_too_large'],
  ];
  for (const [what, body, status, code] of cases) {
    const refused = await report(mac, body as object);
    t.is(refused.status, status, what);
    t.is(refused.body?.error, code, what);
  }
  const after = (await send('GET', `/v1/devices/${mac}`, undefined, ADMIN_TOKEN)).body;
  t.deepEqual(after, before);

  // The biggest legitimate report: 2,048 names of 128 characters do not fit 64 KiB, so a
  // device sends what fits: here 2,048 realistic names.
  const full = Array.from({ length: 2048 }, (_, i) => `aten::op_${i}.out`);
  t.is((await report(mac, { state: 'installed', sha256: ADD_SHA256, capabilities: caps(full) })).status, 204);
  t.is((await send('GET', `/v1/devices/${mac}`, undefined, ADMIN_TOKEN)).body.capabilities.operators.length, 2048);
});
