import test, { type ExecutionContext } from 'ava';
import { assign, expectError, inventoryOf, poll, pushed, sendJson } from '../helpers/api.ts';
import { deviceKey, proofOf, type DeviceKey } from '../helpers/device-keys.ts';
import { startGateway, type TestGateway } from '../helpers/gateway.ts';
import { ADD_SHA256, fixture } from '../helpers/programs.ts';
import { ADMIN_TOKEN, TEST_TOKENS } from '../helpers/tokens.ts';

// Device identity (docs/security.md "Device identity"): each device proves its own Ed25519
// key by signing the gateway's challenge and gets a short-lived token for its MAC. Under
// `pinned` the first key a MAC proves is pinned; under `accepted` a new device waits until
// an operator accepts it or its key was preauthorized. A request without the MAC's token
// gets 401 and changes nothing.

async function challengeOf(gw: TestGateway, mac: string): Promise<string> {
  const response = await gw.fetch(`/v1/devices/${mac}/challenge`, { method: 'POST' });
  const body = await response.json() as { challenge: string; expiresInSeconds: number };
  return body.challenge;
}

async function tokenRequest(gw: TestGateway, dev: DeviceKey, body: unknown): Promise<Response> {
  return gw.fetch(`/v1/devices/${dev.mac}/token`, { method: 'POST', headers: { 'Content-Type': 'application/json' }, body: JSON.stringify(body) });
}

async function deviceToken(t: ExecutionContext, gw: TestGateway, dev: DeviceKey): Promise<string> {
  const response = await tokenRequest(gw, dev, proofOf(dev, await challengeOf(gw, dev.mac)));
  const body = await response.json() as { token: string; expiresInSeconds: number };
  t.is(response.status, 200, JSON.stringify(body));
  return body.token;
}

function report(gw: TestGateway, mac: string, body: unknown, token?: string): Promise<Response> {
  return gw.fetch(`/v1/devices/${mac}/report`, {
    method: 'POST', headers: { 'Content-Type': 'application/json' }, body: JSON.stringify(body), ...(token === undefined ? {} : { token }),
  });
}

async function refusals(gw: TestGateway, reason: string): Promise<number> {
  const text = await (await gw.fetch('/metrics')).text();
  return Number(new RegExp(`^modelferry_device_auth_refusals_total\\{reason="${reason}"\\} (\\d+)$`, 'm').exec(text)?.[1] ?? 0);
}

async function servedGateway(t: ExecutionContext, policy: string): Promise<TestGateway> {
  const gw = await startGateway(t, { 'devices.admission': policy });
  await pushed(t, gw, 'kws', '1', fixture('add.pte'));
  await assign(t, gw, 'default', { model: 'kws', version: '1' });
  return gw;
}

test('pinned: the first key a device proves is pinned and its token admits it; without the token a poll or report is 401 and nothing is stored', async (t) => {
  const gw = await servedGateway(t, 'pinned');
  const dev = deviceKey('02:aa:00:00:00:01');
  await expectError(t, await gw.fetch(`/v1/devices/${dev.mac}/model`), 401, 'unauthorized', 'device token');
  const token = await deviceToken(t, gw, dev);
  const answered = await poll(gw, dev.mac, { token });
  t.is(answered.status, 200);
  t.is(answered.json.model.sha256, ADD_SHA256);
  t.is((await report(gw, dev.mac, { state: 'installed', sha256: ADD_SHA256 }, token)).status, 204);
  const before = (await inventoryOf(gw, dev.mac)).body;
  t.like(before, { admission: 'pinned', state: 'installed' });

  // Spoofed: a report for the admitted MAC with no token, or with another device's token.
  const other = deviceKey('02:aa:00:00:00:02');
  const otherToken = await deviceToken(t, gw, other);
  for (const credential of [undefined, otherToken, TEST_TOKENS[0]!.token]) {
    await expectError(t, await report(gw, dev.mac, { state: 'failed', sha256: ADD_SHA256, error: 'spoofed', capabilities: { operators: ['aten::nothing.out'] } }, credential), 401, 'unauthorized');
  }
  const after = (await inventoryOf(gw, dev.mac)).body;
  t.deepEqual({ ...after, lastSeen: before.lastSeen }, before, 'no report, capability or last-seen change from a refused request');
});

test('pinned: another key for a pinned MAC is refused, logged and counted; an operator can accept the new key after a reflash', async (t) => {
  const gw = await servedGateway(t, 'pinned');
  const dev = deviceKey('02:aa:00:00:00:11');
  const first = await deviceToken(t, gw, dev);
  const impostor = { ...deviceKey(dev.mac) };
  await expectError(t, await tokenRequest(gw, impostor, proofOf(impostor, await challengeOf(gw, dev.mac))), 401, 'device_auth_failed', 'known with another key');
  t.is(await refusals(gw, 'key_mismatch'), 1);
  t.is((await poll(gw, dev.mac, { token: first })).status, 200, 'the pinned device is unaffected');

  const accepted = await gw.fetch(`/v1/devices/${dev.mac}/accept`, { method: 'POST', token: ADMIN_TOKEN });
  t.is(accepted.status, 200);
  t.like(await accepted.json(), { mac: dev.mac, publicKey: impostor.publicKey, state: 'accepted' });
  t.is((await poll(gw, dev.mac, { token: first })).status, 401, "the old key's token ended with the change");
  t.is((await poll(gw, dev.mac, { token: await deviceToken(t, gw, impostor) })).status, 200);
});

test('a challenge answers once: a replayed token request fails, as do a challenge for another MAC, a wrong signature and a malformed key', async (t) => {
  const gw = await servedGateway(t, 'pinned');
  const dev = deviceKey('02:aa:00:00:00:21');
  const answer = proofOf(dev, await challengeOf(gw, dev.mac));
  t.is((await tokenRequest(gw, dev, answer)).status, 200);
  await expectError(t, await tokenRequest(gw, dev, answer), 401, 'device_auth_failed', 'already used');
  const elsewhere = deviceKey('02:aa:00:00:00:22');
  await expectError(t, await tokenRequest(gw, dev, proofOf(dev, await challengeOf(gw, elsewhere.mac))), 401, 'device_auth_failed');
  await expectError(t, await tokenRequest(gw, dev, proofOf(dev, await challengeOf(gw, dev.mac), deviceKey(dev.mac).privateKey)), 401, 'device_auth_failed', 'does not verify');
  await expectError(t, await tokenRequest(gw, dev, { ...proofOf(dev, await challengeOf(gw, dev.mac)), publicKey: 'bm90IGEga2V5' }), 400, 'invalid_body', '32-byte');
  await expectError(t, await tokenRequest(gw, dev, { ...answer, extra: 1 }), 400, 'invalid_body');
  t.is(await refusals(gw, 'challenge'), 2);
  t.is(await refusals(gw, 'signature'), 1);
});

test('pipeline and sync tokens are not device credentials: refused on poll and report under every policy; artifacts take a sync token', async (t) => {
  for (const policy of ['pinned', 'accepted']) {
    const gw = await servedGateway(t, policy);
    const mac = '02:aa:00:00:00:31';
    for (const { token, scopes } of TEST_TOKENS) {
      t.is((await poll(gw, mac, { token })).status, 401, `${policy}: a ${scopes.join('+')} token does not poll`);
      t.is((await report(gw, mac, { state: 'idle' }, token)).status, 401);
    }
    const sync = TEST_TOKENS.find(({ scopes }) => scopes.includes('sync') && !scopes.includes('admin'))!;
    t.is((await gw.fetch(`/v1/artifacts/${ADD_SHA256}`, { token: sync.token })).status, 200, 'a downstream gateway fetches artifacts');
    t.is((await gw.fetch(`/v1/artifacts/${ADD_SHA256}`)).status, 401);
  }
});

test('accepted: a new device waits as pending (listed, on the status page) and installs once an operator accepts it; a rejected one is refused', async (t) => {
  const gw = await servedGateway(t, 'accepted');
  const dev = deviceKey('02:aa:00:00:00:41');
  await expectError(t, await tokenRequest(gw, dev, proofOf(dev, await challengeOf(gw, dev.mac))), 403, 'device_pending', 'modelferry devices accept');
  const pending = await (await gw.fetch('/v1/admission?state=pending', { token: ADMIN_TOKEN })).json() as any;
  t.like(pending, { policy: 'accepted', devices: [{ mac: dev.mac, publicKey: dev.publicKey, state: 'pending' }] });
  const page = await (await gw.fetch('/')).text();
  t.regex(page, /Waiting for acceptance/);
  t.true(page.includes(dev.mac));
  t.is((await poll(gw, dev.mac)).status, 401, 'a pending device is not served');

  t.is((await gw.fetch(`/v1/devices/${dev.mac}/accept`, { method: 'POST', token: TEST_TOKENS.find((x) => !x.scopes.includes('admin'))!.token })).status, 403, 'accepting needs admin');
  t.is((await gw.fetch(`/v1/devices/${dev.mac}/accept`, { method: 'POST', token: ADMIN_TOKEN })).status, 200);
  const token = await deviceToken(t, gw, dev);
  const answered = await poll(gw, dev.mac, { token });
  t.is(answered.json.model.sha256, ADD_SHA256);
  t.is((await gw.fetch(answered.json.model.url, { token })).status, 200, 'and downloads its model with the same token');
  t.is((await report(gw, dev.mac, { state: 'installed', sha256: ADD_SHA256 }, token)).status, 204);
  t.like((await inventoryOf(gw, dev.mac)).body, { admission: 'accepted', inSync: true });

  t.is((await gw.fetch(`/v1/devices/${dev.mac}/reject`, { method: 'POST', token: ADMIN_TOKEN })).status, 200);
  t.is((await poll(gw, dev.mac, { token })).status, 401, 'its token ended');
  await expectError(t, await tokenRequest(gw, dev, proofOf(dev, await challengeOf(gw, dev.mac))), 403, 'device_rejected');
  await expectError(t, await gw.fetch('/v1/devices/02:aa:00:00:00:49/accept', { method: 'POST', token: ADMIN_TOKEN }), 404, 'device_not_found');
});

test('accepted: a preauthorized device gets its token at once; a preauthorization with a bad key is refused whole', async (t) => {
  const gw = await servedGateway(t, 'accepted');
  const [a, b] = [deviceKey('02:aa:00:00:00:51'), deviceKey('02:aa:00:00:00:52')];
  await expectError(t, await sendJson(gw, 'POST', '/v1/admission/preauthorize', { devices: [{ mac: a.mac, publicKey: a.publicKey }, { mac: b.mac, publicKey: 'short' }] }), 400, 'invalid_body', b.mac);
  t.deepEqual((await (await gw.fetch('/v1/admission', { token: ADMIN_TOKEN })).json() as any).devices, [], 'nothing was stored');
  const response = await sendJson(gw, 'POST', '/v1/admission/preauthorize', { devices: [a, b].map(({ mac, publicKey }) => ({ mac, publicKey })) });
  t.is(response.status, 200);
  t.deepEqual(await response.json(), { preauthorized: 2 });
  t.is((await poll(gw, a.mac, { token: await deviceToken(t, gw, a) })).status, 200);
  // Kept across a restart; tokens are not (devices prove their key again).
  const token = await deviceToken(t, gw, b);
  await gw.restart();
  t.is((await poll(gw, b.mac, { token })).status, 401);
  t.is((await poll(gw, b.mac, { token: await deviceToken(t, gw, b) })).status, 200);
});

test('open (the default): devices need no key, and the inventory says open', async (t) => {
  const gw = await servedGateway(t, 'open');
  const mac = '02:aa:00:00:00:61';
  t.is((await poll(gw, mac)).status, 200);
  t.like((await inventoryOf(gw, mac)).body, { admission: 'open' });
});
