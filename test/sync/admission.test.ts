import { mkdir, readFile, writeFile } from 'node:fs/promises';
import path from 'node:path';
import test, { type ExecutionContext } from 'ava';
import { FaultStore } from '../helpers/fault-store.ts';
import { fixture, makeProgram, sha256 } from '../helpers/programs.ts';
import { ADMIN_TOKEN } from '../helpers/tokens.ts';
import type { ConfigOverrides } from '../helpers/gateway.ts';
import { deviceView, publishBytes, startRunDone, storeDir, synced, syncNow, syncStatus, syncingGateway } from './sync-helpers.ts';

// A synced model enters the catalog the way a pushed one does (daemon/admission): what a
// push would refuse, a sync refuses too, as a fault of the store, and applies nothing.

const MAC = '02:00:00:00:21:01';

/** A gateway synced to kws@1 (assigned to default), with the store at hand to change. */
async function synced1(t: ExecutionContext, overrides: ConfigOverrides = {}) {
  const store = await storeDir(t);
  await publishBytes(store, 'kws', '1', fixture('add.pte'), { assign: 'default' });
  const server = await FaultStore.start(t, store);
  const gw = await syncingGateway(t, `${server.url}/manifest.json`, overrides);
  t.like((await startRunDone(gw)).lastOutcome, { result: 'updated' });
  return { store, server, gw, before: await deviceView(gw, MAC) };
}

/** Adds an entry for `bytes` to the store's manifest as-is, as a store that does not check would. */
async function listUnchecked(store: string, name: string, version: string, bytes: Buffer): Promise<void> {
  const digest = sha256(bytes);
  await mkdir(path.join(store, 'artifacts'), { recursive: true });
  await writeFile(path.join(store, 'artifacts', digest), bytes);
  const file = path.join(store, 'manifest.json');
  const manifest = JSON.parse(await readFile(file, 'utf8'));
  manifest.models.push({ name, version, sha256: digest, size: bytes.length, url: `artifacts/${digest}`, signature: null, keyId: null, createdAt: '2026-11-24T12:00:00Z' });
  manifest.revision = `${manifest.revision}-unchecked`;
  await writeFile(file, JSON.stringify(manifest));
}

test('a manifest naming a model larger than artifacts.maxBytes fails the sync as manifest_invalid before its artifact is asked for', async (t) => {
  const { store, server, gw, before } = await synced1(t, { 'artifacts.maxBytes': '128 KiB' });
  const big = makeProgram(256 * 1024);
  await publishBytes(store, 'kws', '2', big, { assign: 'default' });
  const answer = await syncNow(gw);
  t.is(answer.status, 502, JSON.stringify(answer.body));
  t.is(answer.body.error, 'manifest_invalid');
  t.regex((await syncStatus(gw)).lastError.message, /^kws@2: .*more than artifacts\.maxBytes/);
  t.false(server.requests.some((r) => r.path === `/artifacts/${sha256(big)}`), 'nothing was downloaded');
  t.deepEqual(await deviceView(gw, MAC), before);
});

test('an artifact that is not an ExecuTorch program fails the sync as artifact_invalid; nothing is applied and it is not served', async (t) => {
  const { store, gw, before } = await synced1(t);
  const text = Buffer.from('not a program, whatever the store says\n');
  await listUnchecked(store, 'kws', '2', text);
  const answer = await syncNow(gw);
  t.is(answer.status, 502, JSON.stringify(answer.body));
  t.is(answer.body.error, 'artifact_invalid');
  t.regex((await syncStatus(gw)).lastError.message, /^kws@2: the body is not an ExecuTorch program/);
  t.deepEqual(await deviceView(gw, MAC), before);
  t.is((await gw.fetch('/v1/models/kws/2', { token: ADMIN_TOKEN })).status, 404);
  t.is((await gw.fetch(`/v1/artifacts/${sha256(text)}`, { method: 'HEAD' })).status, 404);
});

test('with artifacts.formats [executorch, any] the same artifact is synced with format unknown, as a push would store it', async (t) => {
  const { store, gw } = await synced1(t, { 'artifacts.formats': '[executorch, any]' });
  const text = Buffer.from('other bytes, let in by artifacts.formats\n');
  await listUnchecked(store, 'kws', '2', text);
  await synced(t, gw);
  const model = await (await gw.fetch('/v1/models/kws/2', { token: ADMIN_TOKEN })).json() as { format: string; sha256: string; layer: string };
  t.like(model, { format: 'unknown', sha256: sha256(text), layer: 'upstream' });
});
