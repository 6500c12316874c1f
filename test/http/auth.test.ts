import test, { type ExecutionContext } from 'ava';
import type { Context, Middleware } from 'koa';
import { ModelferryError, type ErrorCode } from '../../daemon/errors.ts';
import { TokenAuth } from '../../daemon/http/auth.ts';

// Bearer tokens (docs/design.md "Tokens and scopes"): reads of the admin API take any
// configured token, writes need the scope they name, device routes are open unless
// devices.token is set.

const PUSHER = { name: 'jenkins', token: 'push-secret-000000001', scopes: ['push' as const] };
const ADMIN = { name: 'ops', token: 'admin-secret-00000001', scopes: ['admin' as const, 'push' as const] };
const SYNCER = { name: 'downstream', token: 'sync-secret-000000001', scopes: ['sync' as const] };
const ASSIGNER = { name: 'rollouts', token: 'assign-secret-0000001', scopes: ['assign' as const] };
const DEVICE_TOKEN = 'device-secret-0000001';

const tokens = { tokens: [PUSHER, ADMIN, SYNCER, ASSIGNER] };
const openDevices = { token: null, maxWaitSeconds: 300, pollIntervalSeconds: 300, pollJitterSeconds: 30, seenFlushSeconds: 30 };
const closedDevices = { ...openDevices, token: DEVICE_TOKEN };

const bearer = (token: string) => `Bearer ${token}`;
const MAC = 'aa:bb:cc:dd:ee:01';

/** Runs a middleware with an Authorization header; resolves with whether it passed on. */
async function run(middleware: Middleware, authorization?: string): Promise<{ passed: boolean; client: unknown }> {
  const state: Record<string, unknown> = {};
  const ctx = { get: (name: string) => (name === 'Authorization' ? authorization ?? '' : ''), state } as unknown as Context;
  let passed = false;
  await middleware(ctx, async () => { passed = true; });
  return { passed, client: state.client };
}

async function refused(t: ExecutionContext, middleware: Middleware, authorization: string | undefined, code: ErrorCode, status: number) {
  const error = await t.throwsAsync(run(middleware, authorization), { instanceOf: ModelferryError });
  t.is(error?.code, code);
  t.is(error?.status, status);
  return error;
}

test('identify() finds the configured token, whatever the case of "Bearer" and trailing space', (t) => {
  const auth = new TokenAuth(tokens, openDevices);
  t.is(auth.identify(bearer(ADMIN.token))?.name, 'ops');
  t.is(auth.identify(`bearer ${PUSHER.token}  `)?.name, 'jenkins');
  t.is(auth.identify(bearer('not-a-configured-token')), undefined);
  t.is(auth.identify(undefined), undefined);
  t.is(auth.identify(`Basic ${ADMIN.token}`), undefined);
});

test('anyToken() admits every configured token, whatever its scopes, and names the client', async (t) => {
  const auth = new TokenAuth(tokens, openDevices);
  for (const { name, token } of [PUSHER, ADMIN, SYNCER]) {
    t.deepEqual(await run(auth.anyToken(), bearer(token)), { passed: true, client: name });
  }
});

test('anyToken() refuses a missing or unknown token with 401 and a Bearer challenge', async (t) => {
  const auth = new TokenAuth(tokens, openDevices);
  const missing = await refused(t, auth.anyToken(), undefined, 'unauthorized', 401);
  t.is(missing?.headers['WWW-Authenticate'], 'Bearer realm="modelferry"');
  await refused(t, auth.anyToken(), bearer('wrong-token-000000000'), 'unauthorized', 401);
});

test('scope(s) admits only tokens that have that scope; others get 403 forbidden', async (t) => {
  const auth = new TokenAuth(tokens, openDevices);
  t.true((await run(auth.scope('admin'), bearer(ADMIN.token))).passed);
  t.true((await run(auth.scope('push'), bearer(ADMIN.token))).passed);
  t.true((await run(auth.scope('push'), bearer(PUSHER.token))).passed);
  t.true((await run(auth.scope('sync'), bearer(SYNCER.token))).passed);
  const error = await refused(t, auth.scope('admin'), bearer(PUSHER.token), 'forbidden', 403);
  t.regex(error!.message, /jenkins.*admin/);
  await refused(t, auth.scope('sync'), bearer(ADMIN.token), 'forbidden', 403);
  await refused(t, auth.scope('push'), undefined, 'unauthorized', 401);
});

test('scope(a, b) admits a token with either scope: assignment writes take assign or admin, and assign alone opens nothing else', async (t) => {
  const auth = new TokenAuth(tokens, openDevices);
  const assignments = auth.scope('assign', 'admin');
  t.deepEqual(await run(assignments, bearer(ASSIGNER.token)), { passed: true, client: 'rollouts' });
  t.deepEqual(await run(assignments, bearer(ADMIN.token)), { passed: true, client: 'ops' });
  const error = await refused(t, assignments, bearer(PUSHER.token), 'forbidden', 403);
  t.is(error!.message, 'token "jenkins" lacks the assign or admin scope');
  await refused(t, assignments, bearer(SYNCER.token), 'forbidden', 403);
  for (const scope of ['push', 'admin', 'sync'] as const) {
    t.regex((await refused(t, auth.scope(scope), bearer(ASSIGNER.token), 'forbidden', 403))!.message, new RegExp(`"rollouts" lacks the ${scope} scope$`));
  }
});

test('with no tokens configured the admin API refuses everyone', async (t) => {
  const auth = new TokenAuth({ tokens: [] }, openDevices);
  await refused(t, auth.anyToken(), bearer(ADMIN.token), 'unauthorized', 401);
  await refused(t, auth.scope('admin'), bearer(ADMIN.token), 'unauthorized', 401);
});

test('without devices.token, device routes admit anyone, with or without a header', async (t) => {
  const auth = new TokenAuth(tokens, openDevices);
  t.true(auth.admitsDevice(undefined, MAC));
  t.true(auth.admitsDevice(bearer('anything'), MAC));
  t.true((await run(auth.deviceAccess())).passed);
});

test('with devices.token, a device\'s routes admit that token and nothing else; artifacts also admit a sync token, for a downstream gateway', async (t) => {
  const auth = new TokenAuth(tokens, closedDevices);
  t.true(auth.admitsDevice(bearer(DEVICE_TOKEN), MAC));
  for (const other of [PUSHER, ADMIN, SYNCER]) t.false(auth.admitsDevice(bearer(other.token), MAC), `${other.name} is not a device`);
  t.false(auth.admitsDevice(undefined, MAC));
  t.false(auth.admitsDevice(bearer('device-secret-0000002'), MAC));
  t.true(auth.admitsArtifactReader(bearer(DEVICE_TOKEN)));
  t.true(auth.admitsArtifactReader(bearer(SYNCER.token)));
  t.false(auth.admitsArtifactReader(bearer(PUSHER.token)));
  t.false(auth.admitsArtifactReader(bearer(ADMIN.token)));
  t.true((await run(auth.deviceAccess(), bearer(DEVICE_TOKEN))).passed);
  const error = await refused(t, auth.deviceAccess(), undefined, 'unauthorized', 401);
  t.is(error?.headers['WWW-Authenticate'], 'Bearer realm="modelferry"');
});

test('the device token alone does not open the admin API', async (t) => {
  const auth = new TokenAuth(tokens, closedDevices);
  await refused(t, auth.anyToken(), bearer(DEVICE_TOKEN), 'unauthorized', 401);
});
