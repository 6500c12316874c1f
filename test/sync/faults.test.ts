import { spawn } from 'node:child_process';
import { readdir, readFile, utimes } from 'node:fs/promises';
import net from 'node:net';
import path from 'node:path';
import test, { type ExecutionContext } from 'ava';
import { generateKeyPair, signModel } from '../../daemon/signing/signature.ts';
import type { ConfigOverrides, TestGateway } from '../helpers/gateway.ts';
import { FaultStore } from '../helpers/fault-store.ts';
import { fixture, makeProgram, sha256 } from '../helpers/programs.ts';
import { ADMIN_TOKEN } from '../helpers/tokens.ts';
import { deviceView, publishBytes, startRunDone, storeDir, synced, syncNow, syncStatus, syncingGateway } from './sync-helpers.ts';
import { testNeeding } from '../helpers/requirements.ts';

// Every fault docs/design.md "Sync" names, against a store server that misbehaves on demand:
// the sync fails with a stable code, /v1/sync and /healthz say why, and what devices see
// (their poll answer byte for byte, and the artifact it names) is exactly what they saw
// before. Once the fault is gone the next sync gets through.

const MAC = '02:00:00:00:20:01';
const V2_SIZE = 256 * 1024;

interface Primed {
  store: string;
  server: FaultStore;
  gw: TestGateway;
  before: Awaited<ReturnType<typeof deviceView>>;
  v2: Buffer;
  v2Path: string;
}

/**
 * A gateway synced to kws@1 (assigned to default); then the store moves on to kws@2, so a
 * sync that got through would change what devices see.
 */
async function primed(t: ExecutionContext, overrides: ConfigOverrides = {}, sign?: (name: string, version: string, bytes: Buffer) => { signature: string; keyId: string; seq?: string | null }): Promise<Primed> {
  const store = await storeDir(t);
  const v1 = fixture('add.pte');
  await publishBytes(store, 'kws', '1', v1, { assign: 'default', signature: sign?.('kws', '1', v1) });
  const server = await FaultStore.start(t, store);
  const gw = await syncingGateway(t, `${server.url}/manifest.json`, overrides);
  // Short timeouts of a fault test may fail the start run on a busy machine: then try again.
  if ((await startRunDone(gw)).lastOutcome.result !== 'updated') await synced(t, gw, 'updated', 3);
  const v2 = makeProgram(V2_SIZE);
  await publishBytes(store, 'kws', '2', v2, { assign: 'default', signature: sign?.('kws', '2', v2) });
  const before = await deviceView(gw, MAC);
  t.is(before.poll.status, 200);
  t.true(before.poll.body.includes(sha256(v1)));
  return { store, server, gw, before, v2, v2Path: `/artifacts/${sha256(v2)}` };
}

/** A sync that fails with `code`; devices see what they saw; the failure is reported. */
async function failsUnseen(t: ExecutionContext, h: Primed, code: string, status = 502): Promise<void> {
  const answer = await syncNow(h.gw);
  t.is(answer.status, status, JSON.stringify(answer.body));
  t.is(answer.body.error, code, JSON.stringify(answer.body));
  t.deepEqual(await deviceView(h.gw, MAC), h.before, 'devices see exactly what they saw before');
  const state = await syncStatus(h.gw);
  t.like(state, { state: 'failing', lastError: { code }, lastOutcome: { result: 'failed', error: { code } } });
  const health = await (await h.gw.fetch('/healthz')).json() as any;
  t.like(health.upstream, { configured: true, state: 'failing', lastError: { code } });
  t.truthy(health.upstream.lastSuccessAt, 'the last success is still reported');
}

/**
 * With the fault gone, the next sync applies kws@2: devices get it, the sync is ok again with
 * a success after the failure and a closed breaker, and the failure stays on record.
 */
async function recovers(t: ExecutionContext, h: Primed): Promise<void> {
  const failed = await syncStatus(h.gw);
  t.not(failed.state, 'ok', 'a failure to recover from');
  h.server.clearFaults();
  await synced(t, h.gw, 'updated', 3);
  const after = await deviceView(h.gw, MAC);
  t.true(after.poll.body.includes(sha256(h.v2)));
  t.is(after.artifact?.split(':')[0], '200');
  const state = await syncStatus(h.gw);
  t.like(state, {
    state: 'ok',
    breaker: { state: 'closed', failures: 0 },
    lastOutcome: { result: 'updated', error: null },
    lastError: failed.lastError,
  });
  t.true(state.lastSuccessAt > failed.lastError.at, `the success (${state.lastSuccessAt}) comes after the failure (${failed.lastError.at})`);
  t.not(state.revision, failed.revision, 'devices are served from the new upstream revision');
  const health = await (await h.gw.fetch('/healthz')).json() as any;
  t.like(health.upstream, { state: 'ok', lastSuccessAt: state.lastSuccessAt });
}

const requestsFor = (h: Primed, pathname: string) => h.server.requests.filter((r) => r.path === pathname);

test('store down (connection refused): upstream_unreachable, devices unaffected; back up, the sync gets through', async (t) => {
  const h = await primed(t);
  const port = Number(new URL(h.server.url).port);
  await h.server.close();
  await failsUnseen(t, h, 'upstream_unreachable');
  await h.server.listen(port);
  await recovers(t, h);
});

test('a store that accepts the request and never answers: upstream_timeout after headersTimeoutSeconds', async (t) => {
  const h = await primed(t, { 'upstream.headersTimeoutSeconds': '1' });
  h.server.fault('/manifest.json', { kind: 'hang' });
  await failsUnseen(t, h, 'upstream_timeout', 504);
  await recovers(t, h);
});

test('an artifact whose body stops mid-way: upstream_timeout after bodyIdleTimeoutSeconds; the next sync resumes with Range', async (t) => {
  const h = await primed(t, { 'upstream.bodyIdleTimeoutSeconds': '1' });
  h.server.fault(h.v2Path, { kind: 'stall', after: 100_000 });
  await failsUnseen(t, h, 'upstream_timeout', 504);
  await recovers(t, h);
  const [first, resumed] = requestsFor(h, h.v2Path);
  t.like(first, { range: '', status: 200 });
  t.like(resumed, { range: 'bytes=100000-', status: 206 });
});

test('HTTP 500 for the manifest: upstream_error', async (t) => {
  const h = await primed(t);
  h.server.fault('/manifest.json', { kind: 'status', status: 500 });
  await failsUnseen(t, h, 'upstream_error');
  await recovers(t, h);
});

test('HTTP 404 for the manifest and for an artifact it names: upstream_error', async (t) => {
  const h = await primed(t);
  h.server.fault('/manifest.json', { kind: 'status', status: 404 });
  await failsUnseen(t, h, 'upstream_error');
  h.server.clearFaults();
  h.server.fault(h.v2Path, { kind: 'status', status: 404 });
  await failsUnseen(t, h, 'upstream_error');
  await recovers(t, h);
});

test('a truncated artifact (connection closed before Content-Length): nothing applied; the next sync fetches only the rest', async (t) => {
  const h = await primed(t);
  h.server.fault(h.v2Path, { kind: 'truncate', after: 65_536 });
  await failsUnseen(t, h, 'upstream_unreachable');
  await recovers(t, h);
  const [first, resumed] = requestsFor(h, h.v2Path);
  t.like(first, { range: '', status: 200 });
  // From what reached the gateway before the cut (at most the 64 KiB sent).
  const from = Number(/^bytes=(\d+)-$/.exec(resumed!.range)?.[1]);
  t.true(from > 0 && from <= 65_536, resumed!.range);
  t.is(resumed!.status, 206);
  t.is(requestsFor(h, h.v2Path).length, 2);
});

test('an artifact whose bytes do not match its sha256: artifact_invalid, the bytes are discarded, never served', async (t) => {
  const h = await primed(t);
  h.server.fault(h.v2Path, { kind: 'body', body: makeProgram(V2_SIZE) });
  await failsUnseen(t, h, 'artifact_invalid');
  t.is((await h.gw.fetch(h.v2Path.replace('/artifacts/', '/v1/artifacts/'))).status, 404);
  t.deepEqual(await readdir(path.join(h.gw.config.paths.cache, 'partial')), [], 'the wrong bytes are not kept for a resume');
  await recovers(t, h);
  t.is(requestsFor(h, h.v2Path).at(-1)!.range, '', 'the next sync starts over');
});

test('an artifact longer than the manifest says: artifact_invalid', async (t) => {
  const h = await primed(t);
  h.server.fault(h.v2Path, { kind: 'body', body: Buffer.concat([h.v2, Buffer.alloc(10)]) });
  await failsUnseen(t, h, 'artifact_invalid');
  await recovers(t, h);
});

const manifestFaults: Array<[string, (manifest: any) => unknown, RegExp]> = [
  ['that is not JSON', () => '<html>502 Bad Gateway</html>', /not JSON/],
  ['with the wrong format', (m) => ({ ...m, format: 'modelferry.manifest/v2' }), /format/],
  ['naming an invalid MAC in a group', (m) => ({ ...m, groups: { lab: ['aa:bb:cc:dd:ee'] } }), /groups\.lab\.0/],
  ['naming an invalid digest', (m) => ({ ...m, models: m.models.map((x: any, i: number) => i === 1 ? { ...x, sha256: 'ABC' } : x) }), /models\.1\.sha256/],
  ['assigning a model it does not list', (m) => ({ ...m, assignments: [{ selector: 'default', model: 'nope', version: 'latest' }] }), /nope@latest/],
  ['naming an invalid selector', (m) => ({ ...m, assignments: [{ selector: 'group:', model: 'kws', version: '1' }] }), /selector/],
  ['with models that is not a list', (m) => ({ ...m, models: {} }), /models/],
];

for (const [what, mutate, message] of manifestFaults) {
  test(`a manifest ${what}: manifest_invalid, naming what is wrong`, async (t) => {
    const h = await primed(t);
    const manifest = JSON.parse(await readFile(path.join(h.store, 'manifest.json'), 'utf8'));
    const bad = mutate(manifest);
    h.server.fault('/manifest.json', { kind: 'body', body: typeof bad === 'string' ? bad : JSON.stringify(bad) });
    await failsUnseen(t, h, 'manifest_invalid');
    t.regex((await syncStatus(h.gw)).lastError.message, message);
    await recovers(t, h);
  });
}

test('under trust.requireSignatures, a model whose signature does not verify, or none, fails the sync: manifest_invalid', async (t) => {
  const key = generateKeyPair();
  const sign = (name: string, version: string, bytes: Buffer) => signModel(key.privateKeyPem, { name, version, sha256: sha256(bytes), size: bytes.length });
  const h = await primed(t, { 'trust.keys': JSON.stringify([{ publicKey: key.publicKey }]), 'trust.requireSignatures': 'true' }, sign);
  const manifestFile = path.join(h.store, 'manifest.json');
  const manifest = JSON.parse(await readFile(manifestFile, 'utf8'));
  const forged = { ...manifest, models: manifest.models.map((m: any) => m.version === '2' ? { ...m, signature: sign('kws', '3', h.v2).signature } : m) };
  h.server.fault('/manifest.json', { kind: 'body', body: JSON.stringify(forged) });
  await failsUnseen(t, h, 'manifest_invalid');
  t.regex((await syncStatus(h.gw)).lastError.message, /signature does not verify/);
  const unsigned = { ...manifest, models: manifest.models.map((m: any) => m.version === '2' ? { ...m, signature: null, keyId: null } : m) };
  h.server.fault('/manifest.json', { kind: 'body', body: JSON.stringify(unsigned) });
  await failsUnseen(t, h, 'manifest_invalid');
  t.regex((await syncStatus(h.gw)).lastError.message, /requires signed models/);
  await recovers(t, h);
  t.true((await deviceView(h.gw, MAC)).poll.body.includes(sign('kws', '2', h.v2).signature), 'the signature reaches devices');
});

test('a store signed with sequences: the sync verifies each signatureSeq with its signature and devices get it; a changed sequence fails the sync: manifest_invalid', async (t) => {
  const key = generateKeyPair();
  const seqOf = { '1': '1733000000000', '2': '9007199254740993' } as Record<string, string>;
  const sign = (name: string, version: string, bytes: Buffer) => signModel(key.privateKeyPem, { name, version, sha256: sha256(bytes), size: bytes.length, seq: seqOf[version]! });
  const h = await primed(t, { 'trust.keys': JSON.stringify([{ publicKey: key.publicKey }]), 'trust.requireSignatures': 'true' }, sign);
  const manifestFile = path.join(h.store, 'manifest.json');
  const manifest = JSON.parse(await readFile(manifestFile, 'utf8'));
  t.deepEqual(manifest.models.map((m: any) => m.signatureSeq), ['1733000000000', '9007199254740993'], 'publish writes the sequence as a string');
  const replayed = { ...manifest, models: manifest.models.map((m: any) => m.version === '2' ? { ...m, signatureSeq: '9007199254740992' } : m) };
  h.server.fault('/manifest.json', { kind: 'body', body: JSON.stringify(replayed) });
  await failsUnseen(t, h, 'manifest_invalid');
  t.regex((await syncStatus(h.gw)).lastError.message, /kws@2: the signature does not verify .* with sequence 9007199254740992/);
  await recovers(t, h);
  t.true((await deviceView(h.gw, MAC)).poll.body.includes('"signatureSeq":"9007199254740993"'), 'devices get the sequence');
});

test('a manifest from an older store, without signatureSeq, syncs as v1 signatures', async (t) => {
  const key = generateKeyPair();
  const sign = (name: string, version: string, bytes: Buffer) => signModel(key.privateKeyPem, { name, version, sha256: sha256(bytes), size: bytes.length });
  const h = await primed(t, { 'trust.keys': JSON.stringify([{ publicKey: key.publicKey }]), 'trust.requireSignatures': 'true' }, sign);
  const manifest = JSON.parse(await readFile(path.join(h.store, 'manifest.json'), 'utf8'));
  t.deepEqual(manifest.models.map((m: any) => m.signatureSeq), [null, null], 'v1 signatures');
  const older = { ...manifest, models: manifest.models.map(({ signatureSeq: _, ...m }: any) => m) };
  h.server.fault('/manifest.json', { kind: 'body', body: JSON.stringify(older) });
  await synced(t, h.gw, 'updated', 3);
  t.true((await deviceView(h.gw, MAC)).poll.body.includes('"signatureSeq":null'));
});

test('a manifest that changes while the sync downloads: the sync follows it and applies the newer one whole', async (t) => {
  const h = await primed(t);
  const v3 = makeProgram(64 * 1024);
  let changed = false;
  h.server.beforeServe(async (pathname) => {
    if (pathname === h.v2Path && !changed) {
      changed = true;
      await publishBytes(h.store, 'kws', '3', v3, { assign: 'default' });
    }
  });
  const outcome = await synced(t, h.gw);
  const manifest = JSON.parse(await readFile(path.join(h.store, 'manifest.json'), 'utf8'));
  t.is(outcome.revision, manifest.revision, 'the revision applied is the newest');
  t.true((await deviceView(h.gw, MAC)).poll.body.includes(sha256(v3)));
  const models = await (await h.gw.fetch('/v1/models/kws', { token: ADMIN_TOKEN })).json() as any;
  t.deepEqual(models.versions.map((m: any) => [m.version, m.layer, m.cached]).sort(), [['1', 'upstream', true], ['2', 'upstream', true], ['3', 'upstream', true]]);
});

test('devices are answered from the cache while a sync hangs: the request path never waits on the upstream', async (t) => {
  const h = await primed(t, { 'upstream.headersTimeoutSeconds': '30' });
  h.server.fault('/manifest.json', { kind: 'hang' });
  const pending = syncNow(h.gw);
  while (!(await syncStatus(h.gw)).running) await new Promise((resolve) => setTimeout(resolve, 10));
  t.deepEqual(await deviceView(h.gw, MAC), h.before);
  t.true((await syncStatus(h.gw)).running, 'answered while the sync was still waiting');
  await h.server.close();
  t.is((await pending).body.error, 'upstream_unreachable');
});

test('after breakerFailures failed syncs in a row the breaker opens: /healthz, GET /v1/sync and /metrics say so; a success closes it', async (t) => {
  const h = await primed(t, { 'upstream.breakerFailures': '2', 'upstream.breakerCooldownSeconds': '600' });
  const failedRuns = async () => Number(/^modelferry_sync_runs_total\{result="failed"\} (\d+)$/m.exec(await (await h.gw.fetch('/metrics')).text())![1]);
  const failedBefore = await failedRuns();
  h.server.fault('/manifest.json', { kind: 'status', status: 503 });
  await syncNow(h.gw);
  t.like(await syncStatus(h.gw), { state: 'failing', breaker: { state: 'closed', failures: 1 } });
  await syncNow(h.gw);
  const open = await syncStatus(h.gw);
  t.like(open, { state: 'open', breaker: { state: 'open', failures: 2 } });
  t.truthy(open.breaker.openUntil);
  t.like(((await (await h.gw.fetch('/healthz')).json()) as any).upstream, { state: 'open', breaker: { state: 'open' } });
  const metrics = await (await h.gw.fetch('/metrics')).text();
  t.regex(metrics, /^modelferry_upstream_circuit_state\{state="open"\} 1$/m);
  t.is(await failedRuns(), failedBefore + 2);
  t.deepEqual(await deviceView(h.gw, MAC), h.before);
  await recovers(t, h);
  t.like(await syncStatus(h.gw), { state: 'ok', breaker: { state: 'closed', failures: 0, openUntil: null } });
  const after = await (await h.gw.fetch('/metrics')).text();
  t.regex(after, /^modelferry_upstream_circuit_state\{state="closed"\} 1$/m);
  t.regex(after, /^modelferry_sync_bytes_fetched_total \d+$/m);
  t.regex(after, /^modelferry_sync_last_success_timestamp_seconds [1-9]/m);
});


test('artifacts come upstream.concurrency at a time; when one fails the others stay unserved until a sync applies them all', async (t) => {
  const h = await primed(t, { 'upstream.concurrency': '2' });
  const more = Array.from({ length: 6 }, () => makeProgram(32 * 1024));
  for (const [i, bytes] of more.entries()) await publishBytes(h.store, `extra-${i}`, '1', bytes);
  let inFlight = 0;
  let most = 0;
  h.server.beforeServe(async (pathname) => {
    if (!pathname.startsWith('/artifacts/')) return;
    inFlight++;
    most = Math.max(most, inFlight);
    await new Promise((resolve) => setTimeout(resolve, 50));
    inFlight--;
  });
  const broken = `/artifacts/${sha256(more[5]!)}`;
  h.server.fault(broken, { kind: 'status', status: 404 });
  await failsUnseen(t, h, 'upstream_error');
  t.is(most, 2, 'never more than upstream.concurrency downloads at once');
  for (const bytes of more.slice(0, 5)) {
    t.is((await h.gw.fetch(`/v1/artifacts/${sha256(bytes)}`, { method: 'HEAD' })).status, 404, 'downloaded, but no model names it yet');
  }
  await recovers(t, h);
  const downloads = h.server.requests.filter((r) => r.path.startsWith('/artifacts/') && r.status === 200).map((r) => r.path);
  for (const bytes of more) {
    t.is((await h.gw.fetch(`/v1/artifacts/${sha256(bytes)}`, { method: 'HEAD' })).status, 200);
    t.is(downloads.filter((p) => p === `/artifacts/${sha256(bytes)}`).length, 1, 'each artifact is downloaded once: the next sync fetches only what is missing');
  }
});

test('a store that sends only Last-Modified: the next sync asks If-Modified-Since, and an unchanged store is one 304', async (t) => {
  const store = await storeDir(t);
  await publishBytes(store, 'kws', '1', fixture('add.pte'), { assign: 'default' });
  const manifest = path.join(store, 'manifest.json');
  await utimes(manifest, new Date('2026-11-01T00:00:00Z'), new Date('2026-11-01T00:00:00Z'));
  const server = await FaultStore.start(t, store);
  server.validators = 'last-modified';
  const gw = await syncingGateway(t, `${server.url}/manifest.json`);
  t.like((await startRunDone(gw)).lastOutcome, { result: 'updated' });
  const asked = server.requests.length;
  await synced(t, gw, 'unchanged');
  t.like(server.requests.slice(asked), [{ path: '/manifest.json', ifNoneMatch: '', ifModifiedSince: 'Sun, 01 Nov 2026 00:00:00 GMT', status: 304 }]);
  const v2 = makeProgram(4096);
  await publishBytes(store, 'kws', '2', v2, { assign: 'default' });
  await utimes(manifest, new Date('2026-11-02T00:00:00Z'), new Date('2026-11-02T00:00:00Z'));
  await synced(t, gw);
  t.true((await deviceView(gw, MAC)).poll.body.includes(sha256(v2)));
});

testNeeding('python3')('a store that does not accept the connection: upstream_timeout after connectTimeoutSeconds, devices unaffected', async (t) => {
  // A listener with a full backlog of one that never accepts: the next SYN goes unanswered.
  const listener = spawn('python3', ['-c', 'import socket,time\ns=socket.socket()\ns.bind(("127.0.0.1",0))\ns.listen(0)\nprint(s.getsockname()[1],flush=True)\ntime.sleep(120)'], { stdio: ['ignore', 'pipe', 'inherit'] });
  t.teardown(() => listener.kill());
  const port = await new Promise<number>((resolve) => listener.stdout!.once('data', (data) => resolve(Number(String(data).trim()))));
  const filler = net.connect(port, '127.0.0.1');
  t.teardown(() => filler.destroy());
  await new Promise((resolve) => filler.once('connect', resolve));
  const gw = await syncingGateway(t, `http://127.0.0.1:${port}/manifest.json`, { 'upstream.connectTimeoutSeconds': '1' });
  const status = await startRunDone(gw);
  t.like(status, { state: 'failing', lastError: { code: 'upstream_timeout' } });
  t.regex(status.lastError.message, /did not accept a connection within 1 s/);
  t.is((await deviceView(gw, MAC)).poll.status, 404, 'nothing was assigned before, nothing is now');
});
