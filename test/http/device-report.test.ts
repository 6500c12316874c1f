import test, { type ExecutionContext } from 'ava';
import { assign, expectError, expectUnauthorized, inventory, inventoryOf, poll, pushed, sendJson } from '../helpers/api.ts';
import { startGateway as startBareGateway, type ConfigOverrides, type TestGateway } from '../helpers/gateway.ts';
import { ADD_SHA256, MUL_SHA256, fixture } from '../helpers/programs.ts';
import { ADMIN_TOKEN } from '../helpers/tokens.ts';

// POST /v1/devices/{mac}/report (docs/design.md "Device reports") and the inventory it feeds
// (GET /v1/devices, GET /v1/devices/{mac}, section 3), over real HTTP.

const MAC = 'aa:bb:cc:dd:ee:0f';

const FULL_REPORT = {
  state: 'installed',
  sha256: ADD_SHA256,
  model: 'kws',
  version: '2026.11.24-3',
  error: 'none',
  progress: 1,
  firmware: '1.4.2',
  freeHeap: 183_224,
  rssi: -61,
  uptimeSeconds: 86_400,
};

/**
 * A gateway whose catalog names MAC and 02:00:00:00:00:01 (a group, nothing assigned):
 * reports are kept only for devices the catalog names or assigns a model to.
 */
async function startGateway(t: ExecutionContext, overrides: ConfigOverrides = {}): Promise<TestGateway> {
  const gw = await startBareGateway(t, overrides);
  const response = await sendJson(gw, 'PUT', '/v1/groups/lab', { members: [MAC, '02:00:00:00:00:01'] });
  t.is(response.status, 201);
  return gw;
}

function report(gw: TestGateway, mac: string, body: unknown, headers: Record<string, string> = { 'Content-Type': 'application/json' }): Promise<Response> {
  return gw.fetch(`/v1/devices/${mac}/report`, {
    method: 'POST',
    body: typeof body === 'string' || Buffer.isBuffer(body) ? body : JSON.stringify(body),
    headers,
  });
}

async function accepted(t: ExecutionContext, response: Response): Promise<void> {
  const text = await response.text();
  t.is(response.status, 204, text);
  t.is(text, '');
}

test('a valid report with every field is 204 with no body, and the inventory shows it', async (t) => {
  const gw = await startGateway(t);
  const before = new Date().toISOString();
  await accepted(t, await report(gw, MAC, FULL_REPORT));
  const { status, body } = await inventoryOf(gw, MAC);
  t.is(status, 200);
  t.is(body.mac, MAC);
  t.is(body.state, 'installed');
  t.is(body.address, '127.0.0.1');
  t.true(body.lastSeen >= before, 'a report records the device as seen');
  t.deepEqual(body.running, { sha256: ADD_SHA256, model: 'kws', version: '2026.11.24-3' });
  const { at, ...stored } = body.report;
  t.deepEqual(stored, FULL_REPORT);
  t.true(at >= before);
});

test('capabilities without delegates, arena or slot size are accepted (204): each field is optional, as a client that is not ours may send them', async (t) => {
  const gw = await startGateway(t);
  await accepted(t, await report(gw, MAC, { state: 'idle', capabilities: { operators: ['aten::add.out'] } }));
  t.like((await inventoryOf(gw, MAC)).body.capabilities, { operators: ['aten::add.out'], delegates: [] });
  await accepted(t, await report(gw, MAC, { state: 'idle', capabilities: {} }));
  t.like((await inventoryOf(gw, MAC)).body.capabilities, { operators: [], delegates: [] });
});

test('a report with only state is 204; every state of the enum is accepted', async (t) => {
  const gw = await startGateway(t);
  for (const state of ['idle', 'downloading', 'verifying', 'installed', 'failed']) {
    await accepted(t, await report(gw, MAC, { state }));
    t.is((await inventoryOf(gw, MAC)).body.state, state);
  }
  // Boundary values of the numeric fields.
  await accepted(t, await report(gw, MAC, { state: 'downloading', progress: 0, freeHeap: 0, uptimeSeconds: 0 }));
  await accepted(t, await report(gw, MAC, { state: 'downloading', progress: 0.5 }));
  await accepted(t, await report(gw, MAC, { state: 'downloading', progress: 1 }));
});

const INVALID: Array<[field: string, value: unknown, what: string]> = [
  ['state', 'running', 'a state outside the enum'],
  ['state', 'IDLE', 'an upper-case state'],
  ['state', '', 'an empty state'],
  ['state', 3, 'a numeric state'],
  ['state', null, 'a null state'],
  ['sha256', 'abc', 'a short sha256'],
  ['sha256', ADD_SHA256.toUpperCase(), 'an upper-case sha256'],
  ['sha256', `${ADD_SHA256}0`, 'a 65-digit sha256'],
  ['sha256', ADD_SHA256.slice(1), 'a 63-digit sha256'],
  ['sha256', `${ADD_SHA256.slice(1)}g`, 'a sha256 with a non-hex digit'],
  ['sha256', 42, 'a numeric sha256'],
  ['progress', -0.01, 'progress below 0'],
  ['progress', 1.01, 'progress above 1'],
  ['progress', '0.5', 'progress as a string'],
  ['freeHeap', -1, 'a negative freeHeap'],
  ['freeHeap', 1.5, 'a fractional freeHeap'],
  ['freeHeap', '1000', 'freeHeap as a string'],
  ['rssi', 'strong', 'rssi as a word'],
  ['rssi', { dbm: -60 }, 'rssi as an object'],
  ['uptimeSeconds', -1, 'a negative uptimeSeconds'],
  ['uptimeSeconds', '60', 'uptimeSeconds as a string'],
  ['model', 'Not A Name', 'a model that is not a model name'],
  ['model', 7, 'a numeric model'],
  ['version', '-1.0', 'a version that starts with a dash'],
  ['version', 'a'.repeat(65), 'a 65-character version'],
  ['error', 500, 'a numeric error'],
  ['firmware', 1.4, 'a numeric firmware'],
];

for (const [field, value, what] of INVALID) {
  test(`a report with ${what} is 400 invalid_body naming ${field}, and changes nothing`, async (t) => {
    const gw = await startGateway(t);
    await accepted(t, await report(gw, MAC, { state: 'idle', sha256: MUL_SHA256 }));
    const before = await inventoryOf(gw, MAC);
    const body = { ...FULL_REPORT, [field]: value };
    await expectError(t, await report(gw, MAC, body), 400, 'invalid_body', field);
    t.deepEqual(await inventoryOf(gw, MAC), before);
  });
}

test('a report without state is 400 invalid_body naming state', async (t) => {
  const gw = await startGateway(t);
  const { state: _state, ...rest } = FULL_REPORT;
  await expectError(t, await report(gw, MAC, rest), 400, 'invalid_body', 'state');
  t.is((await inventoryOf(gw, MAC)).status, 404, 'a refused report records no device');
});

test('a body that is JSON but not an object is 400 invalid_body', async (t) => {
  const gw = await startGateway(t);
  for (const body of ['[]', '"installed"', '42', 'null', '[{"state":"idle"}]']) {
    await expectError(t, await report(gw, MAC, body), 400, 'invalid_body');
  }
});

test('unknown fields are refused with 400 invalid_body naming them, and nothing is stored', async (t) => {
  const gw = await startGateway(t);
  const response = await report(gw, MAC, { state: 'idle', temperature: 41.5, nested: { a: [1, 2] } });
  await expectError(t, response, 400, 'invalid_body', 'unknown fields "temperature", "nested"');
  t.is((await inventoryOf(gw, MAC)).status, 404);
});

test('a body that is not JSON is 400 invalid_json', async (t) => {
  const gw = await startGateway(t);
  for (const body of ['{"state": ', '{state: "idle"}', "{'state': 'idle'}", '', 'installed', '{"state":"idle"}}']) {
    await expectError(t, await report(gw, MAC, body), 400, 'invalid_json');
  }
  t.is((await inventoryOf(gw, MAC)).status, 404);
});

test('a body over 4 KiB is 413 body_too_large, with or without Content-Length; exactly 4 KiB is accepted', async (t) => {
  const gw = await startGateway(t);
  const padded = (size: number) => {
    // Padded with JSON whitespace: every field is known, so only the size can be wrong.
    const base = JSON.stringify({ state: 'idle' });
    const text = `${' '.repeat(size - base.length)}${base}`;
    t.is(Buffer.byteLength(text), size);
    return text;
  };
  await accepted(t, await report(gw, MAC, padded(4096)));
  const accepted4096 = await inventoryOf(gw, MAC);

  await expectError(t, await report(gw, MAC, padded(4097)), 413, 'body_too_large');
  await expectError(t, await report(gw, MAC, padded(64 * 1024)), 413, 'body_too_large');
  // Chunked, so the size is only known while reading.
  const text = padded(8192);
  const chunked = await gw.fetch(`/v1/devices/${MAC}/report`, {
    method: 'POST',
    headers: { 'Content-Type': 'application/json' },
    body: new ReadableStream({
      start(controller) {
        for (let i = 0; i < text.length; i += 1000) controller.enqueue(new TextEncoder().encode(text.slice(i, i + 1000)));
        controller.close();
      },
    }),
    duplex: 'half',
  } as RequestInit);
  await expectError(t, chunked, 413, 'body_too_large');
  t.deepEqual(await inventoryOf(gw, MAC), accepted4096);
});

test('a Content-Type other than JSON is 415 unsupported_media_type; application/json with a charset, or none, is accepted', async (t) => {
  const gw = await startGateway(t);
  const body = JSON.stringify({ state: 'failed', error: 'flash write' });
  for (const type of ['text/plain', 'text/plain;charset=UTF-8', 'application/octet-stream', 'multipart/form-data; boundary=x', 'application/jsonx', 'text/json']) {
    await expectError(t, await report(gw, MAC, body, { 'Content-Type': type }), 415, 'unsupported_media_type');
  }
  t.is((await inventoryOf(gw, MAC)).status, 404);
  await accepted(t, await report(gw, MAC, body, { 'Content-Type': 'application/json; charset=utf-8' }));
  await accepted(t, await report(gw, MAC, Buffer.from(body), {}));
  t.is((await inventoryOf(gw, MAC)).body.state, 'failed');
});

test('a report for an invalid MAC is 400 invalid_mac; any accepted MAC form reports on the canonical device', async (t) => {
  const gw = await startGateway(t);
  await expectError(t, await report(gw, 'aa:bb:cc:dd:ee', { state: 'idle' }), 400, 'invalid_mac');
  await expectError(t, await report(gw, 'zz-bb-cc-dd-ee-ff', { state: 'idle' }), 400, 'invalid_mac');
  await accepted(t, await report(gw, 'AABBCCDDEE0F', { state: 'verifying' }));
  await accepted(t, await report(gw, 'aa-bb-cc-dd-ee-0f', { state: 'downloading', progress: 0.25 }));
  const devices = await inventory(t, gw);
  t.deepEqual(devices.map((d) => [d.mac, d.state]), [[MAC, 'downloading']]);
});

test('the inventory shows reported state, running sha256, assigned model and inSync false until the device runs what it is assigned, then true', async (t) => {
  const gw = await startGateway(t);
  await pushed(t, gw, 'kws', '1', fixture('mul.pte'));
  await pushed(t, gw, 'kws', '2', fixture('add.pte'));
  await assign(t, gw, 'default', { model: 'kws', version: '2' });
  t.is((await poll(gw, MAC)).status, 200);

  // Polled but never reported: nothing running known, so not in sync.
  let { body } = await inventoryOf(gw, MAC);
  t.is(body.state, null);
  t.is(body.running, null);
  t.like(body.assigned, { model: 'kws', version: '2', sha256: ADD_SHA256 });
  t.is(body.inSync, false);

  // Running the old model while downloading the new one.
  await accepted(t, await report(gw, MAC, { state: 'downloading', sha256: MUL_SHA256, model: 'kws', version: '1', progress: 0.4 }));
  ({ body } = await inventoryOf(gw, MAC));
  t.is(body.state, 'downloading');
  t.deepEqual(body.running, { sha256: MUL_SHA256, model: 'kws', version: '1' });
  t.like(body.assigned, { model: 'kws', version: '2', sha256: ADD_SHA256 });
  t.is(body.inSync, false);

  await accepted(t, await report(gw, MAC, { state: 'installed', sha256: ADD_SHA256, model: 'kws', version: '2' }));
  ({ body } = await inventoryOf(gw, MAC));
  t.is(body.state, 'installed');
  t.is(body.running.sha256, ADD_SHA256);
  t.is(body.inSync, true);

  // The list shows the same as the single record.
  const [listed, ...others] = await inventory(t, gw);
  t.deepEqual(others, []);
  t.deepEqual(listed, body);

  // A new assignment puts it out of sync again without any report.
  await assign(t, gw, 'default', { model: 'kws', version: '1' });
  ({ body } = await inventoryOf(gw, MAC));
  t.like(body.assigned, { model: 'kws', version: '1', sha256: MUL_SHA256 });
  t.is(body.inSync, false);
});

test('a report for a MAC the catalog neither names nor assigns a model to is 404 device_not_found and records nothing; once a default assignment resolves for it, it is kept', async (t) => {
  const gw = await startBareGateway(t);
  const stranger = '02:00:00:00:0f:0f';
  await expectError(t, await report(gw, stranger, { state: 'idle' }), 404, 'device_not_found');
  t.is((await inventoryOf(gw, stranger)).status, 404);
  t.deepEqual(await inventory(t, gw), []);
  await pushed(t, gw, 'kws', '1', fixture('add.pte'));
  await assign(t, gw, 'default', { model: 'kws', version: '1' });
  await accepted(t, await report(gw, stranger, { state: 'idle' }));
  t.is((await inventoryOf(gw, stranger)).body.state, 'idle');
});

test('a device that reports without an assignment (named by a group only) is listed with assigned null', async (t) => {
  const gw = await startGateway(t);
  await accepted(t, await report(gw, MAC, { state: 'idle', sha256: ADD_SHA256 }));
  const { body } = await inventoryOf(gw, MAC);
  t.is(body.assigned, null);
  t.is(body.running.sha256, ADD_SHA256);
});

test('GET /v1/devices/{mac} for a device never seen is 404 device_not_found; an invalid MAC is 400 invalid_mac', async (t) => {
  const gw = await startGateway(t);
  await expectError(t, await gw.fetch(`/v1/devices/${MAC}`, { token: ADMIN_TOKEN }), 404, 'device_not_found');
  await expectError(t, await gw.fetch('/v1/devices/aa:bb:cc', { token: ADMIN_TOKEN }), 400, 'invalid_mac');
  await accepted(t, await report(gw, '02:00:00:00:00:01', { state: 'idle' }));
  await expectError(t, await gw.fetch(`/v1/devices/${MAC}`, { token: ADMIN_TOKEN }), 404, 'device_not_found');
  t.is((await gw.fetch('/v1/devices/02-00-00-00-00-01', { token: ADMIN_TOKEN })).status, 200);
});

test('a refused report of any kind changes nothing in the inventory, lastSeen included', async (t) => {
  const gw = await startGateway(t);
  await pushed(t, gw, 'kws', '1', fixture('add.pte'));
  await assign(t, gw, 'default', { model: 'kws', version: '1' });
  await accepted(t, await report(gw, MAC, { state: 'installed', sha256: ADD_SHA256, rssi: -40 }));
  const before = await inventory(t, gw);
  await new Promise((resolve) => setTimeout(resolve, 20));

  await expectError(t, await report(gw, MAC, { state: 'failed', sha256: 'nope' }), 400, 'invalid_body');
  await expectError(t, await report(gw, MAC, { state: 'exploded', sha256: MUL_SHA256 }), 400, 'invalid_body');
  await expectError(t, await report(gw, MAC, '{"state":"failed"'), 400, 'invalid_json');
  await expectError(t, await report(gw, MAC, JSON.stringify({ state: 'failed', pad: 'x'.repeat(5000) })), 413, 'body_too_large');
  await expectError(t, await report(gw, MAC, JSON.stringify({ state: 'failed' }), { 'Content-Type': 'text/plain' }), 415, 'unsupported_media_type');
  t.deepEqual(await inventory(t, gw), before);
  t.is(before[0].inSync, true);
});

test('reports survive a restart of the gateway', async (t) => {
  const gw = await startGateway(t, { 'devices.seenFlushSeconds': '3600' });
  await accepted(t, await report(gw, MAC, FULL_REPORT));
  const before = await inventoryOf(gw, MAC);
  await gw.restart();
  t.deepEqual(await inventoryOf(gw, MAC), before);
});

test('with devices.token a report needs it: 401 with WWW-Authenticate without or with a wrong one, 204 with it', async (t) => {
  const token = 'device-token-0123456789';
  const gw = await startGateway(t, { 'devices.token': token });
  for (const headers of [{ 'Content-Type': 'application/json' }, { 'Content-Type': 'application/json', Authorization: 'Bearer not-the-device-token' }] as Array<Record<string, string>>) {
    const response = await report(gw, MAC, { state: 'idle' }, headers);
    await expectUnauthorized(t, response);
  }
  t.is((await inventoryOf(gw, MAC)).status, 404);
  await accepted(t, await report(gw, MAC, { state: 'idle' }, { 'Content-Type': 'application/json', Authorization: `Bearer ${token}` }));
  t.is((await inventoryOf(gw, MAC)).body.state, 'idle');
});
