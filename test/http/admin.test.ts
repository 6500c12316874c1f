import { createHash } from 'node:crypto';
import test from 'ava';
import { manifestSchema } from '../../daemon/contract/manifest.ts';
import { expectError, expectUnauthorized, leavesStateUnchanged, push, pushed, sendJson, storedState } from '../helpers/api.ts';
import { startGateway, type TestGateway } from '../helpers/gateway.ts';
import { ADD_SHA256, fixture, makeProgram, MUL_SHA256, sha256 } from '../helpers/programs.ts';
import { ADMIN_TOKEN, ALL_TOKEN, PUSH_TOKEN, SYNC_TOKEN } from '../helpers/tokens.ts';

// The admin API over real HTTP (docs/design.md "Identifiers", "Admin and pipeline API"):
// assignments, groups, model deletes, catalog reads, the manifest, /healthz, /metrics and the
// status page.

interface AssignmentView {
  selector: string;
  model: string;
  version: string;
  rollout: { percent: number; previous: { model: string; version: string } } | null;
  updatedAt: string;
  layer: string;
  resolves: string | null;
  health: { devices: number; inSync: number; failed: number; pending: number };
}

const MAC = 'aa:bb:cc:dd:ee:ff';

/** kws@1.0 (add.pte) then kws@2.0 (mul.pte), so kws@latest is 2.0. */
async function withTwoVersions(t: Parameters<typeof pushed>[0], overrides: Record<string, string> = {}): Promise<TestGateway> {
  const gw = await startGateway(t, overrides);
  await pushed(t, gw, 'kws', '1.0', fixture('add.pte'));
  await pushed(t, gw, 'kws', '2.0', fixture('mul.pte'));
  return gw;
}

async function assignments(gw: TestGateway): Promise<AssignmentView[]> {
  const response = await gw.fetch('/v1/assignments', { token: ADMIN_TOKEN });
  return (await response.json() as { assignments: AssignmentView[] }).assignments;
}

async function pollVersion(gw: TestGateway, mac: string): Promise<string | null> {
  const response = await gw.fetch(`/v1/devices/${mac}/model`);
  if (response.status === 404) return null;
  return (await response.json() as { model: { version: string } }).model.version;
}

function bucket(mac: string, name: string, version: string): number {
  return createHash('sha256').update(`${mac}:${name}:${version}`).digest().readUInt32BE(0) % 100;
}

const metric = (text: string, line: string) => text.split('\n').some((l) => l === line);

// ---------------------------------------------------------------- assignments

test('GET /v1/assignments tallies rollout health from device reports: devices each assignment decides for, in sync, failed, pending', async (t) => {
  const gw = await withTwoVersions(t); // kws@1.0 is add.pte, kws@2.0 is mul.pte
  const [lab, ok, broken, silent] = ['02:00:00:00:00:01', '02:00:00:00:00:02', '02:00:00:00:00:03', '02:00:00:00:00:04'];
  t.is((await sendJson(gw, 'PUT', '/v1/assignments/default', { model: 'kws', version: 'latest' })).status, 201);
  t.is((await sendJson(gw, 'PUT', '/v1/groups/lab', { members: [lab] })).status, 201);
  t.is((await sendJson(gw, 'PUT', '/v1/assignments/group:lab', { model: 'kws', version: '1.0' })).status, 201);
  for (const mac of [lab, ok, broken, silent]) t.is((await gw.fetch(`/v1/devices/${mac}/model`)).status, 200);
  const report = (mac: string, body: object) => sendJson(gw, 'POST', `/v1/devices/${mac}/report`, body);
  t.is((await report(lab, { state: 'installed', sha256: ADD_SHA256 })).status, 204);
  t.is((await report(ok, { state: 'installed', sha256: MUL_SHA256 })).status, 204);
  t.is((await report(broken, { state: 'failed', sha256: ADD_SHA256, error: 'signature' })).status, 204);

  const health = Object.fromEntries((await assignments(gw)).map((a) => [a.selector, a.health]));
  t.deepEqual(health, {
    default: { devices: 3, inSync: 1, failed: 1, pending: 1, incompatible: 0, incompatibleReasons: {} },
    'group:lab': { devices: 1, inSync: 1, failed: 0, pending: 0, incompatible: 0, incompatibleReasons: {} },
  });
});

test('an assignment for a MAC accepts colon, dash or bare forms in any case and is stored canonical', async (t) => {
  const gw = await withTwoVersions(t);
  const first = await sendJson(gw, 'PUT', '/v1/assignments/AA:BB:CC:DD:EE:FF', { model: 'kws', version: '1.0' });
  t.is(first.status, 201);
  t.like(await first.json(), { selector: MAC, model: 'kws', version: '1.0', rollout: null });
  for (const form of ['aa-bb-cc-dd-ee-ff', 'AABBCCDDEEFF', 'Aa:bB:cc:DD:ee:fF']) {
    const again = await sendJson(gw, 'PUT', `/v1/assignments/${form}`, { model: 'kws', version: '2.0' });
    t.is(again.status, 200, form);
    t.like(await again.json(), { selector: MAC, version: '2.0' });
  }
  const listed = await assignments(gw);
  t.is(listed.length, 1);
  t.like(listed[0], { selector: MAC, model: 'kws', version: '2.0', resolves: '2.0', layer: 'local' });
  t.is(await pollVersion(gw, MAC), '2.0');

  const removed = await gw.fetch('/v1/assignments/AA-BB-CC-DD-EE-FF', { method: 'DELETE', token: ADMIN_TOKEN });
  t.is(removed.status, 204);
  t.deepEqual(await assignments(gw), []);
  t.is(await pollVersion(gw, MAC), null);
});

test('group and default selectors take an exact version or latest, and devices resolve device, then group, then default', async (t) => {
  const gw = await withTwoVersions(t);
  t.is((await sendJson(gw, 'PUT', '/v1/groups/lab', { members: ['aa:bb:cc:00:00:01'] })).status, 201);
  const group = await sendJson(gw, 'PUT', '/v1/assignments/group:lab', { model: 'kws', version: 'latest' });
  t.is(group.status, 201);
  t.like(await group.json(), { selector: 'group:lab', version: 'latest' });
  t.is((await sendJson(gw, 'PUT', '/v1/assignments/default', { model: 'kws', version: '1.0' })).status, 201);

  const listed = await assignments(gw);
  t.deepEqual(listed.map((a) => [a.selector, a.version, a.resolves]).sort(), [['default', '1.0', '1.0'], ['group:lab', 'latest', '2.0']]);
  t.is(await pollVersion(gw, 'aa:bb:cc:00:00:01'), '2.0');
  t.is(await pollVersion(gw, 'aa:bb:cc:00:00:02'), '1.0');

  // latest follows a new push.
  await pushed(t, gw, 'kws', '3.0', makeProgram(512));
  t.is(await pollVersion(gw, 'aa:bb:cc:00:00:01'), '3.0');
  t.is((await assignments(gw)).find((a) => a.selector === 'group:lab')?.resolves, '3.0');

  // The device's own assignment wins over its group's.
  t.is((await sendJson(gw, 'PUT', '/v1/assignments/aa:bb:cc:00:00:01', { model: 'kws', version: '1.0' })).status, 201);
  t.is(await pollVersion(gw, 'aa:bb:cc:00:00:01'), '1.0');
});

test('replacing an assignment answers 200 and the new one takes effect', async (t) => {
  const gw = await withTwoVersions(t);
  t.is((await sendJson(gw, 'PUT', '/v1/assignments/default', { model: 'kws', version: '1.0' })).status, 201);
  const replaced = await sendJson(gw, 'PUT', '/v1/assignments/default', { model: 'kws', version: '2.0' });
  t.is(replaced.status, 200);
  t.like(await replaced.json(), { selector: 'default', version: '2.0' });
  t.deepEqual((await assignments(gw)).map((a) => [a.selector, a.version]), [['default', '2.0']]);
  t.is(await pollVersion(gw, MAC), '2.0');
});

test('a staged rollout is stored with percent and previous, and splits devices by the contract bucket', async (t) => {
  const gw = await withTwoVersions(t);
  const body = { model: 'kws', version: '2.0', rollout: { percent: 50, previous: { model: 'kws', version: '1.0' } } };
  const response = await sendJson(gw, 'PUT', '/v1/assignments/default', body);
  t.is(response.status, 201);
  t.like(await response.json(), { selector: 'default', ...body });
  t.like((await assignments(gw))[0], { selector: 'default', rollout: body.rollout });

  const seen = { '1.0': 0, '2.0': 0 };
  for (let i = 0; i < 20; i++) {
    const mac = `02:00:00:00:00:${i.toString(16).padStart(2, '0')}`;
    const expected = bucket(mac, 'kws', '2.0') < 50 ? '2.0' : '1.0';
    t.is(await pollVersion(gw, mac), expected, mac);
    seen[expected]++;
  }
  t.true(seen['1.0'] > 0 && seen['2.0'] > 0, JSON.stringify(seen));
});

test('an assignment naming a model or version not in the catalog is refused with 404 model_not_found, also in rollout.previous', async (t) => {
  const gw = await withTwoVersions(t);
  const refused = [
    { model: 'nope', version: '1.0' },
    { model: 'nope', version: 'latest' },
    { model: 'kws', version: '9.9' },
    { model: 'kws', version: '2.0', rollout: { percent: 10, previous: { model: 'kws', version: '0.9' } } },
    { model: 'kws', version: '2.0', rollout: { percent: 10, previous: { model: 'nope', version: 'latest' } } },
  ];
  for (const selector of ['default', 'group:lab', MAC]) {
    for (const body of refused) {
      await leavesStateUnchanged(t, gw, async () => {
        await expectError(t, await sendJson(gw, 'PUT', `/v1/assignments/${selector}`, body), 404, 'model_not_found');
      });
    }
  }
});

test('a selector that is not a MAC, group:<name> or default is refused with 400 invalid_selector', async (t) => {
  const gw = await withTwoVersions(t);
  const selectors = ['everyone', 'DEFAULT', 'group:', 'group:Lab', 'group:a%2fb', 'aa:bb:cc:dd:ee', 'aa:bb:cc:dd:ee:ff:00', 'aa:bb-cc:dd:ee:ff', 'aa:bb:cc:dd:ee:gg', 'aa%3Abb%3Acc'];
  for (const selector of selectors) {
    await leavesStateUnchanged(t, gw, async () => {
      await expectError(t, await sendJson(gw, 'PUT', `/v1/assignments/${selector}`, { model: 'kws', version: '1.0' }), 400, 'invalid_selector');
      await expectError(t, await gw.fetch(`/v1/assignments/${selector}`, { method: 'DELETE', token: ADMIN_TOKEN }), 400, 'invalid_selector');
    });
  }
});

test('an assignment body that is not JSON is refused with 400 invalid_json', async (t) => {
  const gw = await withTwoVersions(t);
  for (const text of ['{', 'model=kws&version=1.0', '', '{"model":"kws","version":"1.0"}}']) {
    await leavesStateUnchanged(t, gw, async () => {
      await expectError(t, await sendJson(gw, 'PUT', '/v1/assignments/default', text), 400, 'invalid_json');
    });
  }
});

test('an assignment body over 64 KiB is refused with 413 body_too_large, by Content-Length or while streaming', async (t) => {
  const gw = await withTwoVersions(t);
  const big = Buffer.from(JSON.stringify({ model: 'kws', version: '1.0', pad: 'x'.repeat(64 * 1024) }));
  await leavesStateUnchanged(t, gw, async () => {
    await expectError(t, await sendJson(gw, 'PUT', '/v1/assignments/default', big.toString()), 413, 'body_too_large');
  });
  await leavesStateUnchanged(t, gw, async () => {
    let offset = 0;
    const body = new ReadableStream<Uint8Array>({
      pull(controller) {
        if (offset >= big.length) return controller.close();
        controller.enqueue(new Uint8Array(big.subarray(offset, offset + 8192)));
        offset += 8192;
      },
    });
    const response = await gw.fetch('/v1/assignments/default', { method: 'PUT', token: ADMIN_TOKEN, headers: { 'Content-Type': 'application/json' }, body, duplex: 'half' });
    await expectError(t, response, 413, 'body_too_large');
  });
  // A body just under the limit is read (unknown fields are ignored).
  const fits = JSON.stringify({ model: 'kws', version: '1.0', pad: 'x'.repeat(60 * 1024) });
  t.is((await sendJson(gw, 'PUT', '/v1/assignments/default', fits)).status, 201);
});

test('an assignment body of the wrong shape is refused with 400 invalid_body', async (t) => {
  const gw = await withTwoVersions(t);
  const previous = { model: 'kws', version: '1.0' };
  const bodies: unknown[] = [
    [],
    {},
    null,
    'kws',
    { model: 'kws' },
    { version: '1.0' },
    { model: 1, version: '1.0' },
    { model: 'kws', version: 2 },
    { model: 'kws', version: '2.0', rollout: { percent: 101, previous } },
    { model: 'kws', version: '2.0', rollout: { percent: -1, previous } },
    { model: 'kws', version: '2.0', rollout: { percent: '50', previous } },
    { model: 'kws', version: '2.0', rollout: { percent: 50 } },
    { model: 'kws', version: '2.0', rollout: { percent: 50, previous: { model: 'kws' } } },
  ];
  for (const body of bodies) {
    await leavesStateUnchanged(t, gw, async () => {
      await expectError(t, await sendJson(gw, 'PUT', '/v1/assignments/default', JSON.stringify(body)), 400, 'invalid_body');
    });
  }
  // Identifiers in the body follow the grammar of section 1.
  await leavesStateUnchanged(t, gw, async () => {
    await expectError(t, await sendJson(gw, 'PUT', '/v1/assignments/default', { model: 'KWS', version: '1.0' }), 400, 'invalid_name');
    await expectError(t, await sendJson(gw, 'PUT', '/v1/assignments/default', { model: 'kws', version: '../1.0' }), 400, 'invalid_version');
    await expectError(t, await sendJson(gw, 'PUT', '/v1/assignments/default', { model: 'kws', version: '2.0', rollout: { percent: 5, previous: { model: 'kws', version: '1 0' } } }), 400, 'invalid_version');
  });
});

test('deleting an assignment that does not exist is refused with 404 assignment_not_found', async (t) => {
  const gw = await withTwoVersions(t);
  for (const selector of ['default', 'group:lab', MAC]) {
    await leavesStateUnchanged(t, gw, async () => {
      await expectError(t, await gw.fetch(`/v1/assignments/${selector}`, { method: 'DELETE', token: ADMIN_TOKEN }), 404, 'assignment_not_found');
    });
  }
});

// ---------------------------------------------------------------- groups

test('a group is stored with canonical, de-duplicated members: 201 new, 200 replaced', async (t) => {
  const gw = await startGateway(t);
  const created = await sendJson(gw, 'PUT', '/v1/groups/lab', { members: ['AA-BB-CC-00-00-02', 'aabbcc000001', 'aa:bb:cc:00:00:02'] });
  t.is(created.status, 201);
  t.deepEqual(await created.json(), { name: 'lab', members: ['aa:bb:cc:00:00:01', 'aa:bb:cc:00:00:02'] });
  const replaced = await sendJson(gw, 'PUT', '/v1/groups/lab', { members: ['aa:bb:cc:00:00:03'] });
  t.is(replaced.status, 200);
  t.deepEqual((await storedState(gw)).groups, { groups: [{ name: 'lab', members: ['aa:bb:cc:00:00:03'], layer: 'local' }] });
  const one = await gw.fetch('/v1/groups/lab', { token: ADMIN_TOKEN });
  t.like(await one.json(), { name: 'lab', members: ['aa:bb:cc:00:00:03'] });
});

test('a device is in at most one group: putting it in a second is refused with 409 group_conflict', async (t) => {
  const gw = await startGateway(t);
  t.is((await sendJson(gw, 'PUT', '/v1/groups/lab', { members: ['aa:bb:cc:00:00:01'] })).status, 201);
  await leavesStateUnchanged(t, gw, async () => {
    await expectError(t, await sendJson(gw, 'PUT', '/v1/groups/field', { members: ['aa:bb:cc:00:00:09', 'AA-BB-CC-00-00-01'] }), 409, 'group_conflict');
  });
  // Re-putting the same group with the same device is not a conflict.
  t.is((await sendJson(gw, 'PUT', '/v1/groups/lab', { members: ['aa:bb:cc:00:00:01', 'aa:bb:cc:00:00:02'] })).status, 200);
});

test('a group with a member that is not a MAC, a bad name or a bad body is refused with 400', async (t) => {
  const gw = await startGateway(t);
  const cases: Array<[string, unknown, string]> = [
    ['/v1/groups/lab', { members: ['aa:bb:cc:00:00:01', 'not-a-mac'] }, 'invalid_mac'],
    ['/v1/groups/lab', { members: ['aa:bb:cc:00:00'] }, 'invalid_mac'],
    ['/v1/groups/lab', { members: ['aa:bb-cc:00:00:01'] }, 'invalid_mac'],
    ['/v1/groups/lab', { members: 'aa:bb:cc:00:00:01' }, 'invalid_body'],
    ['/v1/groups/lab', { members: [1] }, 'invalid_body'],
    ['/v1/groups/lab', {}, 'invalid_body'],
    ['/v1/groups/Lab', { members: [] }, 'invalid_name'],
  ];
  for (const [pathname, body, code] of cases) {
    await leavesStateUnchanged(t, gw, async () => {
      const response = await sendJson(gw, 'PUT', pathname, body);
      await expectError(t, response, 400, code);
    });
  }
});

// ---------------------------------------------------------------- model deletes

test('deleting an unassigned model answers 204 and removes it from the catalog', async (t) => {
  const gw = await withTwoVersions(t);
  const response = await gw.fetch('/v1/models/kws/1.0', { method: 'DELETE', token: ADMIN_TOKEN });
  t.is(response.status, 204);
  t.is(await response.text(), '');
  const models = await (await gw.fetch('/v1/models', { token: ADMIN_TOKEN })).json() as { models: Array<{ version: string }> };
  t.deepEqual(models.models.map((m) => m.version), ['2.0']);
  await expectError(t, await gw.fetch('/v1/models/kws/1.0', { token: ADMIN_TOKEN }), 404, 'model_not_found');
});

test('a model still assigned, exactly, through latest or as a rollout previous, is refused with 409 in_use', async (t) => {
  const gw = await withTwoVersions(t);
  const del = (version: string) => gw.fetch(`/v1/models/kws/${version}`, { method: 'DELETE', token: ADMIN_TOKEN });

  // Exact.
  t.is((await sendJson(gw, 'PUT', `/v1/assignments/${MAC}`, { model: 'kws', version: '1.0' })).status, 201);
  await leavesStateUnchanged(t, gw, async () => expectError(t, await del('1.0'), 409, 'in_use'));
  t.is((await gw.fetch(`/v1/assignments/${MAC}`, { method: 'DELETE', token: ADMIN_TOKEN })).status, 204);

  // Through latest: the newest version is in use.
  t.is((await sendJson(gw, 'PUT', '/v1/assignments/group:lab', { model: 'kws', version: 'latest' })).status, 201);
  await leavesStateUnchanged(t, gw, async () => expectError(t, await del('2.0'), 409, 'in_use'));
  t.is((await gw.fetch('/v1/assignments/group:lab', { method: 'DELETE', token: ADMIN_TOKEN })).status, 204);

  // As rollout.previous.
  await pushed(t, gw, 'kws', '3.0', makeProgram(512));
  t.is((await sendJson(gw, 'PUT', '/v1/assignments/default', { model: 'kws', version: '3.0', rollout: { percent: 10, previous: { model: 'kws', version: '1.0' } } })).status, 201);
  await leavesStateUnchanged(t, gw, async () => {
    await expectError(t, await del('1.0'), 409, 'in_use');
    await expectError(t, await del('3.0'), 409, 'in_use');
  });
  // 2.0 is referenced by nothing now.
  t.is((await del('2.0')).status, 204);
  t.is((await gw.fetch('/v1/assignments/default', { method: 'DELETE', token: ADMIN_TOKEN })).status, 204);
  t.is((await del('1.0')).status, 204);
  t.is((await del('3.0')).status, 204);
});

test('deleting a model that is not in the catalog is refused with 404 model_not_found; a bad version with 400', async (t) => {
  const gw = await withTwoVersions(t);
  for (const pathname of ['/v1/models/nope/1.0', '/v1/models/kws/9.9']) {
    await leavesStateUnchanged(t, gw, async () => {
      await expectError(t, await gw.fetch(pathname, { method: 'DELETE', token: ADMIN_TOKEN }), 404, 'model_not_found');
    });
  }
  await leavesStateUnchanged(t, gw, async () => {
    await expectError(t, await gw.fetch('/v1/models/kws/latest', { method: 'DELETE', token: ADMIN_TOKEN }), 400, 'invalid_version');
  });
});

// ---------------------------------------------------------------- catalog reads

test('GET /v1/models lists the catalog and GET /v1/models/{name} its versions, newest first; unknown names are 404', async (t) => {
  const gw = await withTwoVersions(t);
  const all = await gw.fetch('/v1/models', { token: ADMIN_TOKEN });
  t.is(all.status, 200);
  const catalog = await all.json() as { revision: string; models: Array<Record<string, unknown>> };
  t.regex(catalog.revision, /^\S+$/);
  t.deepEqual(catalog.models.map((m) => [m.name, m.version, m.sha256, m.cached]).sort(), [['kws', '1.0', ADD_SHA256, true], ['kws', '2.0', MUL_SHA256, true]]);

  const named = await (await gw.fetch('/v1/models/kws', { token: ADMIN_TOKEN })).json() as { name: string; versions: Array<{ version: string }> };
  t.is(named.name, 'kws');
  t.deepEqual(named.versions.map((v) => v.version), ['2.0', '1.0']);
  t.like(await (await gw.fetch('/v1/models/kws/1.0', { token: ADMIN_TOKEN })).json(), { name: 'kws', version: '1.0', sha256: ADD_SHA256, size: fixture('add.pte').length });

  await expectError(t, await gw.fetch('/v1/models/nope', { token: ADMIN_TOKEN }), 404, 'model_not_found');
  await expectError(t, await gw.fetch('/v1/models/NOPE', { token: ADMIN_TOKEN }), 400, 'invalid_name');
});

// ---------------------------------------------------------------- auth

test('reading routes accept any configured token and refuse a missing or wrong one with 401', async (t) => {
  const gw = await withTwoVersions(t);
  for (const pathname of ['/v1/models', '/v1/models/kws', '/v1/assignments', '/v1/groups', '/v1/devices']) {
    for (const token of [PUSH_TOKEN, ADMIN_TOKEN, SYNC_TOKEN, ALL_TOKEN]) {
      t.is((await gw.fetch(pathname, { token })).status, 200, `${pathname} with ${token}`);
    }
    for (const token of [undefined, 'not-a-configured-token-at-all']) {
      const response = await gw.fetch(pathname, token ? { token } : {});
      await expectUnauthorized(t, response);
    }
  }
});

test('writing admin routes need the admin scope: 403 forbidden for push or sync tokens, 401 without one', async (t) => {
  const gw = await withTwoVersions(t);
  t.is((await sendJson(gw, 'PUT', '/v1/assignments/default', { model: 'kws', version: '1.0' })).status, 201);
  const writes: Array<[string, string, unknown]> = [
    ['PUT', '/v1/assignments/default', { model: 'kws', version: '2.0' }],
    ['DELETE', '/v1/assignments/default', undefined],
    ['PUT', '/v1/groups/lab', { members: [MAC] }],
    ['DELETE', '/v1/models/kws/2.0', undefined],
  ];
  for (const [method, pathname, body] of writes) {
    const init = (token?: string) => ({
      method,
      ...(token ? { token } : {}),
      ...(body === undefined ? {} : { body: JSON.stringify(body), headers: { 'Content-Type': 'application/json' } }),
    });
    await leavesStateUnchanged(t, gw, async () => {
      for (const token of [PUSH_TOKEN, SYNC_TOKEN]) {
        await expectError(t, await gw.fetch(pathname, init(token)), 403, 'forbidden');
      }
      const anonymous = await gw.fetch(pathname, init());
      await expectUnauthorized(t, anonymous);
    });
  }
  // The all-scopes token may write.
  t.is((await sendJson(gw, 'PUT', '/v1/assignments/default', { model: 'kws', version: '2.0' }, ALL_TOKEN)).status, 200);
});

// ---------------------------------------------------------------- manifest

test('GET /v1/manifest needs a token with the sync scope: 401 without a valid one, 403 for push or admin only', async (t) => {
  const gw = await withTwoVersions(t);
  for (const token of [SYNC_TOKEN, ALL_TOKEN]) t.is((await gw.fetch('/v1/manifest', { token })).status, 200);
  for (const token of [ADMIN_TOKEN, PUSH_TOKEN]) await expectError(t, await gw.fetch('/v1/manifest', { token }), 403, 'forbidden');
  for (const token of [undefined, 'not-a-configured-token-at-all']) {
    const response = await gw.fetch('/v1/manifest', token ? { token } : {});
    await expectUnauthorized(t, response);
  }
});

test('GET /v1/manifest serves the catalog in the modelferry.manifest/v1 store format with artifact urls relative to it', async (t) => {
  const gw = await withTwoVersions(t);
  t.is((await sendJson(gw, 'PUT', '/v1/groups/lab', { members: ['AA:BB:CC:00:00:01'] })).status, 201);
  t.is((await sendJson(gw, 'PUT', '/v1/assignments/default', { model: 'kws', version: 'latest' })).status, 201);
  t.is((await sendJson(gw, 'PUT', '/v1/assignments/group:lab', { model: 'kws', version: '2.0', rollout: { percent: 25, previous: { model: 'kws', version: '1.0' } } })).status, 201);

  const response = await gw.fetch('/v1/manifest', { token: SYNC_TOKEN });
  t.is(response.status, 200);
  t.regex(response.headers.get('content-type') ?? '', /^application\/json/);
  // What a downstream gateway's sync reads it with: the contract's own schema.
  const manifest = manifestSchema.parse(await response.json());
  t.is(manifest.format, 'modelferry.manifest/v1');
  t.is(typeof manifest.revision, 'string');
  t.false(Number.isNaN(Date.parse(manifest.generatedAt)));
  t.deepEqual(manifest.models.map((m) => [m.name, m.version, m.sha256, m.size, m.signature, m.keyId]).sort(), [
    ['kws', '1.0', ADD_SHA256, fixture('add.pte').length, null, null],
    ['kws', '2.0', MUL_SHA256, fixture('mul.pte').length, null, null],
  ]);
  for (const model of manifest.models) {
    t.false(Number.isNaN(Date.parse(model.createdAt)));
    t.false(/^[a-z]+:|^\//i.test(model.url), `url ${model.url} is relative`);
    // Resolved against the manifest's own URL, as a downstream gateway does.
    const artifact = await fetch(new URL(model.url, `${gw.url}/v1/manifest`));
    t.is(artifact.status, 200);
    t.is(sha256(Buffer.from(await artifact.arrayBuffer())), model.sha256);
  }
  t.deepEqual(
    [...manifest.assignments].sort((a, b) => a.selector.localeCompare(b.selector)),
    [
      { selector: 'default', model: 'kws', version: 'latest' },
      { selector: 'group:lab', model: 'kws', version: '2.0', rollout: { percent: 25, previous: { model: 'kws', version: '1.0' } } },
    ],
  );
  t.deepEqual(manifest.groups, { lab: ['aa:bb:cc:00:00:01'] });
});

test('GET /v1/manifest answers 304 to If-None-Match while the revision is unchanged, and 200 with a new ETag after a change', async (t) => {
  const gw = await withTwoVersions(t);
  const first = await gw.fetch('/v1/manifest', { token: SYNC_TOKEN });
  t.is(first.status, 200);
  const etag = first.headers.get('etag');
  t.truthy(etag);
  const { revision } = await first.json() as { revision: string };

  const again = await gw.fetch('/v1/manifest', { token: SYNC_TOKEN, headers: { 'If-None-Match': etag! } });
  t.is(again.status, 304);
  t.is(await again.text(), '');
  t.is(again.headers.get('etag'), etag);

  t.is((await sendJson(gw, 'PUT', '/v1/assignments/default', { model: 'kws', version: '1.0' })).status, 201);
  const changed = await gw.fetch('/v1/manifest', { token: SYNC_TOKEN, headers: { 'If-None-Match': etag! } });
  t.is(changed.status, 200);
  t.not(changed.headers.get('etag'), etag);
  t.not((await changed.json() as { revision: string }).revision, revision);
  t.is((await gw.fetch('/v1/manifest', { token: SYNC_TOKEN, headers: { 'If-None-Match': changed.headers.get('etag')! } })).status, 304);
});

// ---------------------------------------------------------------- outside /v1

test('GET /healthz answers JSON with status, upstream state, last sync and cache use', async (t) => {
  const gw = await startGateway(t);
  const empty = await gw.fetch('/healthz');
  t.is(empty.status, 200);
  t.regex(empty.headers.get('content-type') ?? '', /^application\/json/);
  const before = await empty.json() as Record<string, unknown>;
  t.like(before, { status: 'ok', models: 0, cache: { blobs: 0, bytes: 0 } });
  t.true('upstream' in before && 'lastSync' in before);

  await pushed(t, gw, 'kws', '1.0', fixture('add.pte'));
  t.like(await (await gw.fetch('/healthz')).json(), { status: 'ok', models: 1, cache: { blobs: 1, bytes: fixture('add.pte').length } });
});

test('GET /metrics is Prometheus text whose modelferry_ counters move with pushes and polls', async (t) => {
  const gw = await startGateway(t);
  const scrape = async () => {
    const response = await gw.fetch('/metrics');
    t.is(response.status, 200);
    t.regex(response.headers.get('content-type') ?? '', /^text\/plain/);
    return response.text();
  };
  const before = await scrape();
  t.regex(before, /^# HELP modelferry_pushes_total /m);
  t.regex(before, /^# TYPE modelferry_pushes_total counter$/m);
  t.false(metric(before, 'modelferry_pushes_total{outcome="created"} 1'));

  await pushed(t, gw, 'kws', '1.0', fixture('add.pte'));
  t.is((await push(gw, 'kws', '1.0', fixture('mul.pte'))).status, 409);
  t.is((await sendJson(gw, 'PUT', '/v1/assignments/default', { model: 'kws', version: '1.0' })).status, 201);
  t.is((await gw.fetch(`/v1/devices/${MAC}/model`)).status, 200);

  const after = await scrape();
  t.true(metric(after, 'modelferry_pushes_total{outcome="created"} 1'), after);
  t.true(metric(after, 'modelferry_pushes_total{outcome="version_conflict"} 1'));
  t.true(metric(after, 'modelferry_device_polls_total{status="200"} 1'));
  t.true(metric(after, 'modelferry_models 1'));
});

test('GET / is an HTML status page for people, listing assignments', async (t) => {
  const gw = await withTwoVersions(t);
  t.is((await sendJson(gw, 'PUT', '/v1/assignments/group:lab', { model: 'kws', version: 'latest' })).status, 201);
  const response = await gw.fetch('/');
  t.is(response.status, 200);
  t.regex(response.headers.get('content-type') ?? '', /^text\/html/);
  const html = await response.text();
  t.regex(html, /^<!doctype html>/i);
  t.true(html.includes('group:lab'));
  t.true(html.includes('kws@latest'));
});

test('an unknown route answers 404 not_found as JSON, and a known path with another method 405', async (t) => {
  const gw = await startGateway(t);
  for (const [method, pathname] of [['GET', '/v1/nothing'], ['GET', '/v2/models'], ['POST', '/nope'], ['GET', '/v1/models/kws/1.0/extra']]) {
    await leavesStateUnchanged(t, gw, async () => {
      await expectError(t, await gw.fetch(pathname!, { method: method!, token: ALL_TOKEN }), 404, 'not_found');
    });
  }
  for (const [method, pathname] of [['POST', '/v1/models'], ['DELETE', '/v1/assignments']]) {
    await leavesStateUnchanged(t, gw, async () => {
      await expectError(t, await gw.fetch(pathname!, { method: method!, token: ALL_TOKEN }), 405, 'method_not_allowed');
    });
  }
});
