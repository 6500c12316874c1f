import { createHash } from 'node:crypto';
import test, { type ExecutionContext } from 'ava';
import {
  assign, bucketOf, delay, expectedAnswer, expectError, expectUnauthorized, inventory, inventoryOf, levelLogBytes, longPollsHeld, macs, poll,
  pushed, setGroup, signModel, unassign, untilLongPollsHeld, type PushedModel,
} from '../helpers/api.ts';
import { startGateway, type TestGateway } from '../helpers/gateway.ts';
import { fixture, makeProgram } from '../helpers/programs.ts';
import { ADMIN_TOKEN, PUSH_TOKEN } from '../helpers/tokens.ts';

// GET /v1/devices/{mac}/model (docs/design.md "Device poll") over real HTTP against a real gateway.

const MAC = 'aa:bb:cc:dd:ee:0f';

/** The sha256 of a body as a quoted entity tag, in each usual encoding. */
function bodyHashes(bytes: Buffer): string[] {
  const digest = createHash('sha256').update(bytes).digest();
  return [digest.toString('hex'), digest.toString('base64'), digest.toString('base64url')].map((value) => `"${value}"`);
}
const TIMING = { intervalSeconds: 300, jitterSeconds: 30 };

/** add@1 (add.pte), pushed and assigned to every device (selector `default`). */
async function assignAddToDefault(t: ExecutionContext, gw: TestGateway): Promise<PushedModel> {
  const model = await pushed(t, gw, 'add', '1', fixture('add.pte'));
  await assign(t, gw, 'default', { model: 'add', version: '1' });
  return model;
}

test('a poll answers 200 application/json with exactly device, model (name, version, sha256, size, url, signature, keyId) and poll timing from config', async (t) => {
  const gw = await startGateway(t, { 'devices.pollIntervalSeconds': '120', 'devices.pollJitterSeconds': '7' });
  const bytes = fixture('add.pte');
  const signed = signModel('kws', '2026.11.24-3', bytes);
  const model = await pushed(t, gw, 'kws', '2026.11.24-3', bytes, signed);
  await assign(t, gw, 'default', { model: 'kws', version: '2026.11.24-3' });

  const answer = await poll(gw, MAC);
  t.is(answer.status, 200);
  t.regex(answer.headers.get('content-type') ?? '', /^application\/json/);
  t.deepEqual(answer.json, expectedAnswer(MAC, model, { intervalSeconds: 120, jitterSeconds: 7 }));
  t.is(answer.json.model.signature, signed.signature);
  t.regex(answer.json.model.keyId, /^[0-9a-f]{16}$/);
});

test('an unsigned model is answered with signature and keyId null, and the default poll timing 300 ± 30', async (t) => {
  const gw = await startGateway(t);
  const model = await pushed(t, gw, 'kws', '1.0.0', fixture('mul.pte'));
  await assign(t, gw, 'default', { model: 'kws', version: '1.0.0' });
  const answer = await poll(gw, MAC);
  t.is(answer.status, 200);
  t.deepEqual(answer.json, expectedAnswer(MAC, model, TIMING));
  t.is(answer.json.model.signature, null);
  t.is(answer.json.model.keyId, null);
});

test('a MAC with colons, dashes or no separator, in any case, gets the same answer as its canonical form', async (t) => {
  const gw = await startGateway(t);
  const add = await pushed(t, gw, 'add', '1', fixture('add.pte'));
  await pushed(t, gw, 'mul', '1', fixture('mul.pte'));
  await assign(t, gw, 'default', { model: 'mul', version: '1' });
  // The device's own assignment, made with a non-canonical spelling of its MAC.
  await assign(t, gw, 'AA-BB-CC-DD-EE-0F', { model: 'add', version: '1' });

  const canonical = await poll(gw, MAC);
  t.is(canonical.status, 200);
  t.deepEqual(canonical.json, expectedAnswer(MAC, add, TIMING));
  for (const form of ['AA:BB:CC:DD:EE:0F', 'aa-bb-cc-dd-ee-0f', 'AA-bb-Cc-dD-ee-0F', 'aabbccddee0f', 'AABBCCDDEE0F', 'aAbBcCdDeE0f']) {
    const answer = await poll(gw, form);
    t.is(answer.status, 200, form);
    t.true(answer.bytes.equals(canonical.bytes), `${form} gets the canonical body`);
    t.is(answer.etag, canonical.etag, form);
  }
  // All spellings are one device in the inventory.
  const devices = await inventory(t, gw);
  t.deepEqual(devices.map((d) => d.mac), [MAC]);
});

test('a MAC in any other form is 400 invalid_mac with a JSON {error, message} and records no device', async (t) => {
  const gw = await startGateway(t);
  await assignAddToDefault(t, gw);
  const bad = [
    'aa:bb:cc:dd:ee', // five pairs
    'aa:bb:cc:dd:ee:ff:00', // seven pairs
    'aa:bb-cc:dd:ee:ff', // mixed separators
    'aa:bb:cc:dd:ee:f', // short pair
    'aabbccddeeff0', // 13 digits
    'gg:bb:cc:dd:ee:ff', // not hex
    'aa.bb.cc.dd.ee.ff', // dots
    'aabb.ccdd.eeff', // Cisco style
    'aa::bb:cc:dd:ee:ff',
    'aa_bb_cc_dd_ee_ff',
    'not-a-mac',
  ];
  for (const mac of bad) {
    const response = await gw.fetch(`/v1/devices/${mac}/model`);
    await expectError(t, response, 400, 'invalid_mac');
  }
  t.deepEqual(await inventory(t, gw), []);
});

test('resolution takes the device assignment over its group assignment over default', async (t) => {
  const gw = await startGateway(t);
  const onDefault = await pushed(t, gw, 'fleet', '1', fixture('add.pte'));
  const onGroup = await pushed(t, gw, 'lab', '1', fixture('mul.pte'));
  const onDevice = await pushed(t, gw, 'special', '1', makeProgram(4096));
  const [inGroupWithOwn, inGroup, alone] = ['02:00:00:00:00:01', '02:00:00:00:00:02', '02:00:00:00:00:03'] as const;
  await setGroup(t, gw, 'lab', [inGroupWithOwn, inGroup]);

  // Only default: everyone gets it.
  await assign(t, gw, 'default', { model: 'fleet', version: '1' });
  for (const mac of [inGroupWithOwn, inGroup, alone]) t.deepEqual((await poll(gw, mac)).json, expectedAnswer(mac, onDefault, TIMING));

  await assign(t, gw, 'group:lab', { model: 'lab', version: '1' });
  await assign(t, gw, inGroupWithOwn, { model: 'special', version: '1' });
  t.deepEqual((await poll(gw, inGroupWithOwn)).json, expectedAnswer(inGroupWithOwn, onDevice, TIMING));
  t.deepEqual((await poll(gw, inGroup)).json, expectedAnswer(inGroup, onGroup, TIMING));
  t.deepEqual((await poll(gw, alone)).json, expectedAnswer(alone, onDefault, TIMING));

  // Removing the device's own assignment falls back to its group, then to default.
  await unassign(t, gw, inGroupWithOwn);
  t.deepEqual((await poll(gw, inGroupWithOwn)).json, expectedAnswer(inGroupWithOwn, onGroup, TIMING));
  await unassign(t, gw, 'group:lab');
  t.deepEqual((await poll(gw, inGroupWithOwn)).json, expectedAnswer(inGroupWithOwn, onDefault, TIMING));
  t.deepEqual((await poll(gw, inGroup)).json, expectedAnswer(inGroup, onDefault, TIMING));
});

test('nothing resolving for the device is 404 no_assignment', async (t) => {
  const gw = await startGateway(t);
  await expectError(t, await gw.fetch(`/v1/devices/${MAC}/model`), 404, 'no_assignment');

  // An assignment for another device or for a group the device is not in does not apply.
  await pushed(t, gw, 'add', '1', fixture('add.pte'));
  await setGroup(t, gw, 'lab', ['02:00:00:00:00:01']);
  await assign(t, gw, 'group:lab', { model: 'add', version: '1' });
  await assign(t, gw, '02:00:00:00:00:02', { model: 'add', version: '1' });
  await expectError(t, await gw.fetch(`/v1/devices/${MAC}/model`), 404, 'no_assignment');
  t.is((await poll(gw, '02:00:00:00:00:01')).status, 200);

  // And a deleted default takes the answer back to 404.
  await assign(t, gw, 'default', { model: 'add', version: '1' });
  t.is((await poll(gw, MAC)).status, 200);
  await unassign(t, gw, 'default');
  await expectError(t, await gw.fetch(`/v1/devices/${MAC}/model`), 404, 'no_assignment');
});

test('an assignment to `latest` follows each newly pushed version of the model', async (t) => {
  const gw = await startGateway(t);
  const first = await pushed(t, gw, 'kws', '2026.11.24-1', fixture('add.pte'));
  await assign(t, gw, 'default', { model: 'kws', version: 'latest' });
  t.deepEqual((await poll(gw, MAC)).json, expectedAnswer(MAC, first, TIMING));

  const second = await pushed(t, gw, 'kws', '2026.11.24-2', fixture('mul.pte'));
  t.deepEqual((await poll(gw, MAC)).json, expectedAnswer(MAC, second, TIMING));

  // Another model's push does not move it.
  await pushed(t, gw, 'other', '9', makeProgram(2048));
  t.deepEqual((await poll(gw, MAC)).json, expectedAnswer(MAC, second, TIMING));

  const third = await pushed(t, gw, 'kws', '2026.11.25-1', makeProgram(2048));
  t.deepEqual((await poll(gw, MAC)).json, expectedAnswer(MAC, third, TIMING));
});

test('a staged rollout gives the new version to devices whose bucket (sha256 "<mac>:<name>:<version>", first 4 bytes BE, mod 100) is below percent and rollout.previous to the others; raising percent only adds devices', async (t) => {
  const gw = await startGateway(t);
  const previous = await pushed(t, gw, 'kws', '1.0.0', fixture('add.pte'));
  const next = await pushed(t, gw, 'kws', '2.0.0', fixture('mul.pte'));
  const fleet = macs(120);
  const buckets = new Map(fleet.map((mac) => [mac, bucketOf(mac, 'kws', '2.0.0')]));

  const onNewAt = new Map<number, Set<string>>();
  for (const percent of [0, 30, 65, 100]) {
    await assign(t, gw, 'default', { model: 'kws', version: '2.0.0', rollout: { percent, previous: { model: 'kws', version: '1.0.0' } } });
    const onNew = new Set<string>();
    for (const mac of fleet) {
      const answer = await poll(gw, mac);
      const expected = buckets.get(mac)! < percent ? next : previous;
      t.deepEqual(answer.json, expectedAnswer(mac, expected, TIMING), `${mac} bucket ${buckets.get(mac)} at ${percent}%`);
      if (answer.json.model.version === '2.0.0') onNew.add(mac);
    }
    onNewAt.set(percent, onNew);
  }
  t.is(onNewAt.get(0)!.size, 0);
  t.is(onNewAt.get(100)!.size, fleet.length);
  // The cohorts are proper subsets at 30 and 65 (so both branches above were exercised).
  t.true(onNewAt.get(30)!.size > 0 && onNewAt.get(30)!.size < fleet.length);
  for (const mac of onNewAt.get(30)!) t.true(onNewAt.get(65)!.has(mac), `${mac} stays on the new version when percent rises`);
  t.true(onNewAt.get(65)!.size > onNewAt.get(30)!.size);
});

test('the ETag is strong and is the sha256 of the exact body; If-None-Match with it (or its weak form) gives 304 with no body', async (t) => {
  const gw = await startGateway(t);
  await assignAddToDefault(t, gw);
  const answer = await poll(gw, MAC);
  t.is(answer.status, 200);
  const etag = answer.etag!;
  t.false(etag.startsWith('W/'), 'strong');
  t.true(bodyHashes(answer.bytes).includes(etag), `ETag ${etag} is the sha256 of the body in hex or base64`);
  const notModified = await poll(gw, MAC, { etag });
  t.is(notModified.status, 304);
  t.is(notModified.bytes.length, 0);
  t.is(notModified.etag, etag);
  t.is((await poll(gw, MAC, { etag: `W/${etag}` })).status, 304);
  t.is((await poll(gw, MAC, { etag: `"something-else", ${etag}` })).status, 304);

  const other = await poll(gw, MAC, { etag: '"something-else"' });
  t.is(other.status, 200);
  t.true(other.bytes.equals(answer.bytes));
});

test('the ETag changes exactly when the device\'s body changes: not for other devices\' changes or a restart, back to the old value for the old body', async (t) => {
  const gw = await startGateway(t);
  await pushed(t, gw, 'add', '1', fixture('add.pte'));
  await pushed(t, gw, 'mul', '1', fixture('mul.pte'));
  await assign(t, gw, 'default', { model: 'add', version: '1' });
  const first = await poll(gw, MAC);

  // Catalog changes that do not touch this device's answer.
  await assign(t, gw, '02:00:00:00:00:01', { model: 'mul', version: '1' });
  await pushed(t, gw, 'unrelated', '1', makeProgram(2048));
  await setGroup(t, gw, 'lab', ['02:00:00:00:00:02']);
  const unchanged = await poll(gw, MAC);
  t.true(unchanged.bytes.equals(first.bytes));
  t.is(unchanged.etag, first.etag);
  await gw.restart();
  const afterRestart = await poll(gw, MAC);
  t.true(afterRestart.bytes.equals(first.bytes));
  t.is(afterRestart.etag, first.etag);

  // A change of this device's model changes body and ETag; the old If-None-Match gets 200.
  await assign(t, gw, MAC, { model: 'mul', version: '1' });
  const changed = await poll(gw, MAC, { etag: first.etag! });
  t.is(changed.status, 200);
  t.false(changed.bytes.equals(first.bytes));
  t.not(changed.etag, first.etag);
  t.true(bodyHashes(changed.bytes).includes(changed.etag!), 'the new ETag is the hash of the new body');

  // The same body again has the same ETag again.
  await unassign(t, gw, MAC);
  const back = await poll(gw, MAC);
  t.true(back.bytes.equals(first.bytes));
  t.is(back.etag, first.etag);
});

test('poll timing is part of the body: another pollIntervalSeconds gives another body and ETag for the same model', async (t) => {
  const a = await startGateway(t, { 'devices.pollIntervalSeconds': '60' });
  const b = await startGateway(t, { 'devices.pollIntervalSeconds': '61' });
  for (const gw of [a, b]) {
    await assignAddToDefault(t, gw);
  }
  const fromA = await poll(a, MAC);
  const fromB = await poll(b, MAC);
  t.is(fromA.json.poll.intervalSeconds, 60);
  t.is(fromB.json.poll.intervalSeconds, 61);
  t.not(fromA.etag, fromB.etag);
  // A device that moves to b with a's ETag gets b's answer.
  t.is((await poll(b, MAC, { etag: fromA.etag! })).status, 200);
});

test('?wait=N with a matching If-None-Match is held until an assignment change, then answers 200 with the new model', async (t) => {
  const gw = await startGateway(t, { 'devices.maxWaitSeconds': '60' });
  await pushed(t, gw, 'add', '1', fixture('add.pte'));
  const mul = await pushed(t, gw, 'mul', '1', fixture('mul.pte'));
  await assign(t, gw, 'default', { model: 'add', version: '1' });
  const first = await poll(gw, MAC);

  const started = performance.now();
  let settledAt: number | undefined;
  const held = poll(gw, MAC, { etag: first.etag!, wait: 30 }).finally(() => { settledAt = performance.now(); });
  await untilLongPollsHeld(gw, 1);
  t.is(settledAt, undefined, 'the long poll is held, not answered, before the change');

  await assign(t, gw, MAC, { model: 'mul', version: '1' });
  const changedAt = performance.now();
  const answer = await held;
  t.is(answer.status, 200);
  t.deepEqual(answer.json, expectedAnswer(MAC, mul, TIMING));
  t.not(answer.etag, first.etag);
  // It returned because of the change, long before its 30 s were up.
  t.true(settledAt! - changedAt < 10_000, `answered ${Math.round(settledAt! - changedAt)} ms after the change`);
  t.true(settledAt! - started < 20_000);
});

test('?wait=N is released by a new push of a `latest` model and not by changes that leave the device\'s answer alone', async (t) => {
  const gw = await startGateway(t);
  await pushed(t, gw, 'kws', '1', fixture('add.pte'));
  await pushed(t, gw, 'other', '1', fixture('mul.pte'));
  await assign(t, gw, 'default', { model: 'kws', version: 'latest' });
  const first = await poll(gw, MAC);

  let settledAt: number | undefined;
  const held = poll(gw, MAC, { etag: first.etag!, wait: 30 }).finally(() => { settledAt = performance.now(); });
  await untilLongPollsHeld(gw, 1);
  await assign(t, gw, '02:00:00:00:00:01', { model: 'other', version: '1' });
  await pushed(t, gw, 'other', '2', makeProgram(2048));
  t.is(await longPollsHeld(gw), 1, 'unrelated changes do not release the long poll');

  // A poll is answered once: had an unrelated change released it, this answer would not carry kws 2.
  const second = await pushed(t, gw, 'kws', '2', makeProgram(4096));
  const changedAt = performance.now();
  const answer = await held;
  t.is(answer.status, 200);
  t.deepEqual(answer.json, expectedAnswer(MAC, second, TIMING));
  t.true(settledAt! - changedAt < 10_000);
});

test('a held long poll answers 404 no_assignment when the change leaves nothing assigned to the device', async (t) => {
  const gw = await startGateway(t);
  await assignAddToDefault(t, gw);
  const first = await poll(gw, MAC);
  let settledAt: number | undefined;
  const held = poll(gw, MAC, { etag: first.etag!, wait: 30 }).finally(() => { settledAt = performance.now(); });
  await untilLongPollsHeld(gw, 1);
  t.is(settledAt, undefined);
  await unassign(t, gw, 'default');
  const changedAt = performance.now();
  const answer = await held;
  t.is(answer.status, 404);
  t.is(answer.json.error, 'no_assignment');
  t.true(settledAt! - changedAt < 10_000);
});

test('a long poll the device hangs up on stops waiting at once (modelferry_device_long_polls_held goes back to 0)', async (t) => {
  const gw = await startGateway(t);
  await assignAddToDefault(t, gw);
  const first = await poll(gw, MAC);
  t.is(await longPollsHeld(gw), 0);
  const controller = new AbortController();
  const held = poll(gw, MAC, { etag: first.etag!, wait: 120, signal: controller.signal });
  await untilLongPollsHeld(gw, 1);
  controller.abort();
  await t.throwsAsync(held, { any: true, name: 'AbortError' });
  // Dropped when the device goes away, long before its 120 s.
  await untilLongPollsHeld(gw, 0);
  // The gateway still answers that device.
  t.is((await poll(gw, MAC, { etag: first.etag! })).status, 304);
});

test('?wait=N answers 304 with the same ETag once N seconds pass without a change', async (t) => {
  const gw = await startGateway(t);
  await assignAddToDefault(t, gw);
  const first = await poll(gw, MAC);
  const started = performance.now();
  const answer = await poll(gw, MAC, { etag: first.etag!, wait: 1 });
  const elapsed = performance.now() - started;
  t.is(answer.status, 304);
  t.is(answer.bytes.length, 0);
  t.is(answer.etag, first.etag);
  t.true(elapsed >= 900, `held ${Math.round(elapsed)} ms for wait=1`);
  t.true(elapsed < 10_000);
});

test('?wait=N without a matching If-None-Match answers at once', async (t) => {
  const gw = await startGateway(t);
  await assignAddToDefault(t, gw);
  const started = performance.now();
  const plain = await poll(gw, MAC, { wait: 60 });
  const stale = await poll(gw, MAC, { etag: '"an-old-answer"', wait: 60 });
  t.is(plain.status, 200);
  t.is(stale.status, 200);
  t.true(stale.bytes.equals(plain.bytes));
  t.true(performance.now() - started < 20_000);
  // wait=0 with a match is an ordinary conditional poll.
  t.is((await poll(gw, MAC, { etag: plain.etag!, wait: 0 })).status, 304);
});

test('?wait above devices.maxWaitSeconds is held for the maximum (a firmware cannot know it); text that is not whole seconds is 400 invalid_query', async (t) => {
  const gw = await startGateway(t, { 'devices.maxWaitSeconds': '1' });
  await assignAddToDefault(t, gw);
  for (const wait of ['abc', '-1', '1.5', '', '5s', '1e1', '0x2']) {
    await expectError(t, await gw.fetch(`/v1/devices/${MAC}/model?wait=${wait}`), 400, 'invalid_query');
  }
  const first = await poll(gw, MAC, { wait: 9999 });
  t.is(first.status, 200);
  // Held for 1 s instead of 9999 (the test's timeout would end the other), then 304.
  t.is((await poll(gw, MAC, { etag: first.etag!, wait: 9999 })).status, 304);
  t.is((await poll(gw, MAC, { wait: 0 })).status, 200);
});

test('a held long poll is released with 304 when the gateway stops, and the stop waits neither for its N seconds nor for the shutdown grace period', async (t) => {
  // A grace period far longer than the bounds below: a stop that waited it out would fail them.
  const gw = await startGateway(t, { 'devices.maxWaitSeconds': '120', 'http.shutdownGraceSeconds': '30' });
  await assignAddToDefault(t, gw);
  const first = await poll(gw, MAC);
  let settledAt: number | undefined;
  const held = poll(gw, MAC, { etag: first.etag!, wait: 100 }).finally(() => { settledAt = performance.now(); });
  await untilLongPollsHeld(gw, 1);
  t.is(settledAt, undefined);
  const stopping = performance.now();
  await gw.stop();
  const stopped = performance.now();
  const answer = await held;
  t.is(answer.status, 304);
  t.is(answer.etag, first.etag);
  t.is(answer.headers.get('connection'), 'close', 'the released answer tells the device not to reuse the connection');
  t.true(settledAt! - stopping < 10_000, `released ${Math.round(settledAt! - stopping)} ms after stop began`);
  t.true(stopped - stopping < 10_000, `stop took ${Math.round(stopped - stopping)} ms with a 30 s grace period`);
  await t.throwsAsync(gw.fetch(`/v1/devices/${MAC}/model`), undefined, 'nothing listens after stop');
});

test('with devices.token a poll without it or with a wrong one is 401 with WWW-Authenticate: Bearer, and 200 with it', async (t) => {
  const token = 'device-token-0123456789';
  const gw = await startGateway(t, { 'devices.token': token });
  const model = await assignAddToDefault(t, gw);

  for (const headers of [{}, { Authorization: 'Bearer wrong-token-0123456789' }, { Authorization: token }, { Authorization: `Basic ${token}` }] as Array<Record<string, string>>) {
    const response = await gw.fetch(`/v1/devices/${MAC}/model`, { headers });
    await expectUnauthorized(t, response);
  }
  t.deepEqual(await inventory(t, gw), [], 'a refused poll records no device');

  const answer = await poll(gw, MAC, { token });
  t.is(answer.status, 200);
  t.deepEqual(answer.json, expectedAnswer(MAC, model, TIMING));
  t.is((await poll(gw, MAC, { token, etag: answer.etag! })).status, 304);
});

test('without devices.token a poll needs no Authorization', async (t) => {
  const gw = await startGateway(t);
  await assignAddToDefault(t, gw);
  const response = await gw.fetch(`/v1/devices/${MAC}/model`);
  t.is(response.status, 200);
  t.is(response.headers.get('www-authenticate'), null);
});

test('every poll records the device as seen: lastSeen time and address in GET /v1/devices, 404 polls for a MAC the catalog names included, a MAC it does not name never', async (t) => {
  const gw = await startGateway(t);
  t.is((await poll(gw, '02:00:00:00:0f:0f')).status, 404);
  t.deepEqual(await inventory(t, gw), [], 'a MAC nothing names or resolves for leaves no record');
  await setGroup(t, gw, 'lab', [MAC]);
  const before = new Date().toISOString();
  t.is((await poll(gw, 'AA-BB-CC-DD-EE-0F')).status, 404);
  const after = new Date().toISOString();

  const [seen, ...rest] = await inventory(t, gw);
  t.deepEqual(rest, []);
  t.is(seen.mac, MAC);
  t.is(seen.address, '127.0.0.1');
  t.true(seen.lastSeen >= before && seen.lastSeen <= after, `${seen.lastSeen} within the poll`);
  t.is(seen.firstSeen, seen.lastSeen);

  await delay(20);
  await assignAddToDefault(t, gw);
  const beforeSecond = new Date().toISOString();
  t.is((await poll(gw, MAC)).status, 200);
  const { status, body } = await inventoryOf(gw, MAC);
  t.is(status, 200);
  t.true(body.lastSeen >= beforeSecond, 'lastSeen moves with each poll');
  t.is(body.firstSeen, seen.firstSeen, 'firstSeen stays');
  t.is(body.address, '127.0.0.1');
  // A 304 is a poll too.
  const { etag } = await poll(gw, MAC);
  await delay(20);
  const beforeThird = new Date().toISOString();
  t.is((await poll(gw, MAC, { etag: etag! })).status, 304);
  t.true((await inventoryOf(gw, MAC)).body.lastSeen >= beforeThird);
});

test('seen records are coalesced in memory and flushed at stop: after a burst of polls and a restart every device is known with its last poll time', async (t) => {
  const gw = await startGateway(t, { 'devices.seenFlushSeconds': '3600' });
  await assignAddToDefault(t, gw);
  const fleet = macs(8);
  for (let round = 0; round < 10; round++) {
    await Promise.all(fleet.map(async (mac) => t.is((await poll(gw, mac)).status, 200)));
  }
  const beforeRestart = await inventory(t, gw);
  t.deepEqual(beforeRestart.map((d) => d.mac), fleet);

  await gw.restart();
  const afterRestart = await inventory(t, gw);
  t.deepEqual(afterRestart.map((d) => [d.mac, d.firstSeen, d.lastSeen, d.address]), beforeRestart.map((d) => [d.mac, d.firstSeen, d.lastSeen, d.address]));
});

test('polls do not write LevelDB one by one: with a long seenFlushSeconds a burst of polls leaves the database log untouched until stop', async (t) => {
  const gw = await startGateway(t, { 'devices.seenFlushSeconds': '3600' });
  await pushed(t, gw, 'add', '1', fixture('add.pte'));
  const beforeAssign = await levelLogBytes(gw);
  await assign(t, gw, 'default', { model: 'add', version: '1' });
  // The measure sees a single small write.
  t.true((await levelLogBytes(gw)) > beforeAssign, 'an assignment grows the LevelDB log');

  const beforePolls = await levelLogBytes(gw);
  for (let i = 0; i < 100; i++) t.is((await poll(gw, macs(5)[i % 5]!)).status, 200);
  t.is(await levelLogBytes(gw), beforePolls, '100 polls wrote nothing to LevelDB');
  t.is((await inventory(t, gw)).length, 5, 'but they are all known');

  await gw.restart();
  t.deepEqual((await inventory(t, gw)).map((d) => d.mac), macs(5));
});

test('seen records are flushed every seenFlushSeconds without a stop, one batch per period: a burst of polls costs one write per period, not one per poll', async (t) => {
  const gw = await startGateway(t, { 'devices.seenFlushSeconds': '1' });
  await assignAddToDefault(t, gw);

  const grows = async (from: number) => {
    for (let i = 0; i < 50; i++) {
      await delay(100);
      const now = await levelLogBytes(gw);
      if (now > from) {
        await delay(1200); // let any flush already under way finish
        return (await levelLogBytes(gw)) - from;
      }
    }
    return 0;
  };
  const start = await levelLogBytes(gw);
  t.is((await poll(gw, MAC)).status, 200);
  const one = await grows(start);
  t.true(one > 0, 'a poll is written within a few flush periods, without a stop');

  // 100 polls of one device: the registry writes at most one batch per flush period, however
  // many polls fall in it. Bounded by the periods the burst actually took (a loaded machine
  // may stretch it), which is still far below one record per poll.
  const beforeBurst = await levelLogBytes(gw);
  const burstStart = performance.now();
  for (let round = 0; round < 10; round++) {
    await Promise.all(Array.from({ length: 10 }, async () => t.is((await poll(gw, MAC)).status, 200)));
  }
  const periods = Math.ceil((performance.now() - burstStart) / 1000) + 2;
  const burst = await grows(beforeBurst);
  t.true(burst > 0);
  t.true(burst <= periods * one, `100 polls over ${periods} flush periods wrote ${burst} bytes; one record is ${one}`);
  t.true(burst < 25 * one, `100 polls wrote ${burst} bytes, not one record (${one}) per poll`);
});

test('inventory reads need an admin-API token while polls do not', async (t) => {
  const gw = await startGateway(t);
  t.is((await poll(gw, MAC)).status, 404);
  const response = await gw.fetch('/v1/devices');
  await expectUnauthorized(t, response);
  t.is((await gw.fetch('/v1/devices', { token: PUSH_TOKEN })).status, 200);
  t.is((await gw.fetch('/v1/devices', { token: ADMIN_TOKEN })).status, 200);
});

// Plain polls are answered before Koa (daemon/http/poll-fast-path.ts); a query, HEAD or an
// encoded path take the Koa route. A device must not be able to tell which one answered.
/** The headers a poll answer is compared by across paths. */
const headersOf = (answer: Awaited<ReturnType<typeof poll>>) =>
  Object.fromEntries(['etag', 'cache-control', 'content-type', 'content-length'].map((name) => [name, answer.headers.get(name)]));

test('a plain poll, the same with ?wait=0 and the same through the full route (percent-encoded MAC) answer identically, for 200 and 304', async (t) => {
  const gw = await startGateway(t);
  await assignAddToDefault(t, gw);

  const plain = await poll(gw, MAC);
  const routed = await poll(gw, MAC, { wait: 0 });
  const encoded = await poll(gw, encodeURIComponent(MAC));
  t.is(plain.status, 200);
  for (const other of [routed, encoded]) {
    t.is(other.status, plain.status);
    t.deepEqual(headersOf(other), headersOf(plain));
    t.deepEqual(other.bytes, plain.bytes);
  }

  const plain304 = await poll(gw, MAC, { etag: plain.etag! });
  const routed304 = await poll(gw, MAC, { etag: plain.etag!, wait: 0 });
  t.is(plain304.status, 304);
  t.is(routed304.status, 304);
  t.deepEqual(headersOf(plain304), headersOf(routed304));
  t.is(plain304.bytes.length, 0);
  t.is((await inventory(t, gw)).filter((device) => device.mac === MAC).length, 1);
});

test('a long poll held on the full route (percent-encoded MAC) and one held on the fast path are released with the same answer', async (t) => {
  const gw = await startGateway(t);
  await pushed(t, gw, 'add', '1', fixture('add.pte'));
  await pushed(t, gw, 'mul', '1', fixture('mul.pte'));
  await assign(t, gw, 'default', { model: 'add', version: '1' });
  const first = await poll(gw, MAC);

  let settled = 0;
  const fast = poll(gw, MAC, { etag: first.etag!, wait: 30 }).finally(() => settled++);
  const routed = poll(gw, encodeURIComponent(MAC), { etag: first.etag!, wait: 30 }).finally(() => settled++);
  await untilLongPollsHeld(gw, 2);
  t.is(settled, 0, 'both are held');
  await assign(t, gw, 'default', { model: 'mul', version: '1' });
  const [a, b] = await Promise.all([fast, routed]);
  t.is(a.status, 200);
  t.is(b.status, 200);
  t.deepEqual(headersOf(b), headersOf(a));
  t.deepEqual(b.bytes, a.bytes);
  t.not(a.etag, first.etag);
});
