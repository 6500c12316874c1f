import { readdir, writeFile } from 'node:fs/promises';
import path from 'node:path';
import test, { type ExecutionContext } from 'ava';
import YAML from 'yaml';
import { applyDelta } from 'fossil-delta';
import { pollAnswerSchema } from '../../daemon/contract/model-wire.ts';
import { newShare } from '../../daemon/deltas/make-delta.ts';
import { assign, expectError, expectUnauthorized, poll, pushed, sendJson, untilLongPollsHeld, type PushedModel } from '../helpers/api.ts';
import { startDaemon, testConfig } from '../helpers/daemon-process.ts';
import { startGateway, type TestGateway } from '../helpers/gateway.ts';
import { until } from '../helpers/harness.ts';
import { MODEL_CHANGES, modelVersions, seededBytes } from '../helpers/model-versions.ts';
import { sha256 } from '../helpers/programs.ts';
import { ADMIN_TOKEN, ALL_TOKEN } from '../helpers/tokens.ts';

// Deltas on the gateway (docs/design.md "Deltas"): offered beside the full artifact to a
// device that applies them, from the model it reports running, once made and only when
// worth it; served like an artifact; held long polls wait for them; kept under
// cache.deltaBytes, least recently used dropped first; gone with their blobs.

const SIZE = 256 * 1024;
const DEVICE = 'aa:bb:cc:00:00:01';
const FOSSIL = { patch: ['fossil'] };

async function report(t: ExecutionContext, gw: TestGateway, mac: string, model: PushedModel, capabilities: Record<string, unknown> | null = FOSSIL): Promise<void> {
  const response = await sendJson(gw, 'POST', `/v1/devices/${mac}/report`, {
    state: 'installed', sha256: model.sha256, model: model.name, version: model.version, ...(capabilities ? { capabilities } : {}),
  }, '');
  t.is(response.status, 204, await response.text());
}

/** A gateway with v1 assigned, a device reporting it runs v1 (and applies deltas), then v2 assigned. */
async function updated(t: ExecutionContext, change: Parameters<typeof modelVersions>[1] = 'fine-tuned head', overrides: Record<string, string> = {}) {
  const gw = await startGateway(t, overrides, { logs: true });
  const { before, after } = modelVersions(SIZE, change, t.title);
  const v1 = await pushed(t, gw, 'kws', '1', before);
  await assign(t, gw, 'default', { model: 'kws', version: '1' });
  await report(t, gw, DEVICE, v1);
  const v2 = await pushed(t, gw, 'kws', '2', after);
  await assign(t, gw, 'default', { model: 'kws', version: '2' });
  return { gw, before, after, v1, v2 };
}

/** Polls until the answer carries a delta. */
function deltaOffered(gw: TestGateway, mac = DEVICE) {
  return until('a poll answer with a delta', async () => {
    const answer = await poll(gw, mac);
    return answer.json?.delta ? answer : undefined;
  });
}

async function fetchDelta(gw: TestGateway, url: string, headers: Record<string, string> = {}): Promise<{ response: Response; bytes: Buffer }> {
  const response = await gw.fetch(url, { headers });
  return { response, bytes: Buffer.from(await response.arrayBuffer()) };
}

async function deltaFiles(gw: TestGateway): Promise<string[]> {
  const names = await readdir(path.join(gw.config.paths.cache, 'deltas')).catch(() => [] as string[]);
  return names.filter((name) => name !== 'tmp').sort();
}

test('a device that applies deltas is offered one from the model it runs, beside the full artifact, and it makes the new bytes', async (t) => {
  const { gw, before, after, v1, v2 } = await updated(t);
  const answer = await deltaOffered(gw);
  const body = pollAnswerSchema.parse(answer.json);
  t.deepEqual(Object.keys(answer.json), ['device', 'model', 'delta', 'poll'], 'the delta sits beside the model, in a fixed order (the ETag is over the bytes)');
  t.is(body.model.sha256, v2.sha256);
  t.is(body.model.url, `/v1/artifacts/${v2.sha256}`, 'the full artifact is still offered');
  t.is(body.delta!.from, v1.sha256);
  t.is(body.delta!.url, `/v1/deltas/${v1.sha256}/${v2.sha256}`);
  const { response, bytes } = await fetchDelta(gw, body.delta!.url);
  t.is(response.status, 200);
  t.is(bytes.length, body.delta!.size);
  t.is(sha256(bytes), body.delta!.sha256);
  t.true(bytes.length < 0.05 * after.length, `a 2 % change makes a small delta (${bytes.length} of ${after.length} bytes)`);
  t.true(Buffer.from(applyDelta(before, bytes)).equals(after));
  const made = gw.logs().find((line) => line.msg === 'delta made');
  t.truthy(made, 'the gateway logs the delta it made');
  t.is(made!.size, bytes.length);
});

test('the delta of a pushed model, from the version devices run, is made before it is assigned: the first poll after the assignment gets it', async (t) => {
  const gw = await startGateway(t, {}, { logs: true });
  const { before, after } = modelVersions(SIZE, 'fine-tuned head', t.title);
  const v1 = await pushed(t, gw, 'kws', '1', before);
  await assign(t, gw, 'default', { model: 'kws', version: '1' });
  await report(t, gw, DEVICE, v1);
  const v2 = await pushed(t, gw, 'kws', '2', after);
  await until('the delta made', async () => gw.logs().find((line) => line.msg === 'delta made' && line.to === v2.sha256));
  t.false('delta' in (await poll(gw, DEVICE)).json, 'not assigned yet: v1 is the answer');
  await assign(t, gw, 'default', { model: 'kws', version: '2' });
  const answer = await poll(gw, DEVICE);
  t.is(answer.json.model.sha256, v2.sha256);
  t.is(answer.json.delta?.from, v1.sha256);
});

test('a delta is served as an artifact is: ETag and Repr-Digest of its bytes, Range, If-Range, 304, HEAD, 416', async (t) => {
  const { gw } = await updated(t);
  const { delta } = (await deltaOffered(gw)).json;
  const full = await fetchDelta(gw, delta.url);
  t.is(full.response.headers.get('etag'), `"${delta.sha256}"`);
  t.is(full.response.headers.get('repr-digest'), `sha-256=:${Buffer.from(delta.sha256, 'hex').toString('base64')}:`);
  t.is(full.response.headers.get('accept-ranges'), 'bytes');
  t.is(full.response.headers.get('content-type'), 'application/octet-stream');
  const tail = await fetchDelta(gw, delta.url, { Range: 'bytes=100-', 'If-Range': `"${delta.sha256}"` });
  t.is(tail.response.status, 206);
  t.is(tail.response.headers.get('content-range'), `bytes 100-${delta.size - 1}/${delta.size}`);
  t.true(tail.bytes.equals(full.bytes.subarray(100)));
  const stale = await fetchDelta(gw, delta.url, { Range: 'bytes=100-', 'If-Range': '"another"' });
  t.is(stale.response.status, 200, 'If-Range with another ETag: the whole delta');
  t.is((await fetchDelta(gw, delta.url, { 'If-None-Match': `"${delta.sha256}"` })).response.status, 304);
  const head = await gw.fetch(delta.url, { method: 'HEAD' });
  t.is(head.status, 200);
  t.is(head.headers.get('content-length'), String(delta.size));
  await expectError(t, await gw.fetch(delta.url, { headers: { Range: `bytes=${delta.size}-` } }), 416, 'range_not_satisfiable');
});

test('the share of a model found new, from samples, tells a retrain from the changes a delta is worth for', (t) => {
  const shares = Object.fromEntries(MODEL_CHANGES.map((change) => {
    const { before, after } = modelVersions(SIZE, change, 'share');
    return [change, newShare(before, after)];
  }));
  t.true(shares['fine-tuned head']! <= 0.1, JSON.stringify(shares));
  t.true(shares['two regions']! <= 0.1);
  t.true(shares['re-export']! <= 0.05);
  t.true(shares['full retrain']! >= 0.9);
});

test('only a device that says it applies deltas, runs another model the gateway holds, gets one', async (t) => {
  const { gw, v1, v2 } = await updated(t);
  await deltaOffered(gw);
  const [plain, inSync, unknown, otherFormat] = ['aa:bb:cc:00:00:02', 'aa:bb:cc:00:00:03', 'aa:bb:cc:00:00:04', 'aa:bb:cc:00:00:05'];
  await report(t, gw, plain, v1, null);
  await report(t, gw, inSync, v2);
  await report(t, gw, unknown, { ...v1, sha256: sha256(Buffer.from('a model this gateway never held')) });
  await report(t, gw, otherFormat, v1, { patch: ['vcdiff'] });
  for (const mac of [plain, inSync, unknown, otherFormat]) {
    const answer = await poll(gw, mac);
    t.is(answer.status, 200);
    t.is(answer.json.model.sha256, v2.sha256);
    t.false('delta' in answer.json, `${mac} downloads the full artifact`);
  }
});

test('a full retrain gets no delta: its bytes are found new before any delta is made', async (t) => {
  const { gw } = await updated(t, 'full retrain');
  await poll(gw, DEVICE);
  const line = await until('the delta judged', async () => gw.logs().find((l) => typeof l.msg === 'string' && l.msg.startsWith('delta')));
  t.is(line.msg, 'delta not made: most of the model is new');
  t.true((line.share as number) >= 0.8);
  const answer = await poll(gw, DEVICE);
  t.false('delta' in answer.json);
  t.deepEqual(await deltaFiles(gw), [], 'nothing kept for it');
  const metrics = await (await gw.fetch('/metrics')).text();
  t.regex(metrics, /^modelferry_deltas_made_total\{outcome="too_large"\} 1$/m);
});

test('deltas.maxShare raised by a live reload makes a delta that was not worth it worth offering', async (t) => {
  const daemon = await startDaemon(t, { config: { deltas: { maxShare: 0.01 } } });
  const { before, after } = modelVersions(SIZE, 'two regions', t.title);
  for (const [version, bytes] of [['1', before], ['2', after]] as const) {
    t.is((await daemon.fetch(`/v1/models/kws/${version}`, { method: 'PUT', body: bytes, token: ALL_TOKEN })).status, 201);
  }
  const setDefault = (version: string) => daemon.fetch('/v1/assignments/default', {
    method: 'PUT', token: ALL_TOKEN, headers: { 'Content-Type': 'application/json' }, body: JSON.stringify({ model: 'kws', version }),
  });
  t.true((await setDefault('1')).ok);
  const reported = await daemon.fetch(`/v1/devices/${DEVICE}/report`, {
    method: 'POST', headers: { 'Content-Type': 'application/json' }, body: JSON.stringify({ state: 'installed', sha256: sha256(before), capabilities: FOSSIL }),
  });
  t.is(reported.status, 204);
  t.true((await setDefault('2')).ok);
  const answer = async () => (await (await daemon.fetch(`/v1/devices/${DEVICE}/model`)).json()) as { delta?: unknown };
  await answer();
  await daemon.waitForLog((line) => line.msg === 'delta made, not worth offering');
  t.false('delta' in await answer());
  const from = Date.now();
  await writeFile(daemon.configFile, YAML.stringify(testConfig(daemon.dir, daemon.port, { deltas: { maxShare: 0.6 } })));
  await daemon.waitForLog((line) => Number(line.time) >= from && line.msg?.startsWith('configuration reloaded') === true);
  t.truthy(await until('the delta offered', async () => (await answer()).delta));
});

test('a long poll held when the new model comes waits for its delta, and gets it', async (t) => {
  const gw = await startGateway(t);
  const { before, after } = modelVersions(SIZE, 'fine-tuned head', t.title);
  const v1 = await pushed(t, gw, 'kws', '1', before);
  await assign(t, gw, 'default', { model: 'kws', version: '1' });
  await report(t, gw, DEVICE, v1);
  const first = await poll(gw, DEVICE);
  const held = poll(gw, DEVICE, { etag: first.etag!, wait: 60 });
  await untilLongPollsHeld(gw, 1);
  const v2 = await pushed(t, gw, 'kws', '2', after);
  await assign(t, gw, 'default', { model: 'kws', version: '2' });
  const answer = await held;
  t.is(answer.status, 200);
  t.is(answer.json.model.sha256, v2.sha256);
  t.is(answer.json.delta?.from, v1.sha256, 'answered with the delta, not before it was made');
});

test('a poll whose answer changed while its delta is made: a long poll waits for it, a plain one gets the full artifact at once', async (t) => {
  // A delta that takes a while: a larger model.
  const gw = await startGateway(t);
  const { before, after } = modelVersions(4 * SIZE, 'fine-tuned head', t.title);
  const v1 = await pushed(t, gw, 'kws', '1', before);
  await assign(t, gw, 'default', { model: 'kws', version: '1' });
  await report(t, gw, DEVICE, v1);
  const old = await poll(gw, DEVICE);
  await pushed(t, gw, 'kws', '2', after);
  await assign(t, gw, 'default', { model: 'kws', version: '2' });
  const [plain, long] = await Promise.all([poll(gw, DEVICE), poll(gw, DEVICE, { etag: old.etag!, wait: 60 })]);
  t.is(long.json.delta?.from, v1.sha256, 'the long poll came back with the delta');
  t.is(plain.status, 200);
  if (plain.json.delta) t.log('the delta was ready before the plain poll was answered');
  else t.pass('the plain poll was answered with the full artifact');
});

test('a long poll held for a delta that turns out not worth making (a retrain) is answered as soon as that is known, not after deltas.waitSeconds', async (t) => {
  const gw = await startGateway(t, { 'deltas.waitSeconds': '600', 'devices.maxWaitSeconds': '600' }, { logs: true });
  const { before, after } = modelVersions(4 * SIZE, 'full retrain', t.title);
  const v1 = await pushed(t, gw, 'kws', '1', before);
  await assign(t, gw, 'default', { model: 'kws', version: '1' });
  await report(t, gw, DEVICE, v1);
  const old = await poll(gw, DEVICE);
  const v2 = await pushed(t, gw, 'kws', '2', after);
  await assign(t, gw, 'default', { model: 'kws', version: '2' });
  let answered = false;
  const long = poll(gw, DEVICE, { etag: old.etag!, wait: 600 }).finally(() => { answered = true; });
  await until('the retrain judged', async () => gw.logs().find((l) => l.msg === 'delta not made: most of the model is new'));
  // The judgement may come before the poll is held; either way nothing is left to wait for.
  await until('the long poll answered', async () => (answered ? true : undefined), 10_000);
  const answer = await long;
  t.is(answer.json.model.sha256, v2.sha256);
  t.false('delta' in answer.json, 'the full artifact');
});

test('with deltas.waitSeconds 0 a held long poll is answered with the full artifact as soon as the model changes', async (t) => {
  const gw = await startGateway(t, { 'deltas.waitSeconds': '0' });
  const { before, after } = modelVersions(SIZE, 'fine-tuned head', t.title);
  const v1 = await pushed(t, gw, 'kws', '1', before);
  await assign(t, gw, 'default', { model: 'kws', version: '1' });
  await report(t, gw, DEVICE, v1);
  const held = poll(gw, DEVICE, { etag: (await poll(gw, DEVICE)).etag!, wait: 60 });
  await untilLongPollsHeld(gw, 1);
  const v2 = await pushed(t, gw, 'kws', '2', after);
  await assign(t, gw, 'default', { model: 'kws', version: '2' });
  const answer = await held;
  t.is(answer.json.model.sha256, v2.sha256);
  // The delta may have been ready first; either way the poll was not held for it.
  t.pass(answer.json.delta ? 'the delta was ready' : 'the full artifact');
});

test('deltas are kept under cache.deltaBytes, the least recently used dropped first', async (t) => {
  const gw = await startGateway(t, { 'cache.deltaBytes': String(14 * 1024) });
  t.deepEqual(await readdir(gw.config.paths.cache), [], 'no folder for deltas before the first one');
  const target = modelVersions(SIZE, 'fine-tuned head', 'lru').after;
  // Three older versions, each differing from the target in its head (2 %: about 5 KiB of delta).
  const olds: PushedModel[] = [];
  for (const [i, seed] of ['a', 'b', 'c'].entries()) {
    const bytes = Buffer.from(target);
    seededBytes(Math.round(0.02 * SIZE), seed).copy(bytes, bytes.length - Math.round(0.02 * SIZE));
    olds.push(await pushed(t, gw, 'kws', `0.${i}`, bytes));
  }
  const v = await pushed(t, gw, 'kws', '1', target);
  await assign(t, gw, 'default', { model: 'kws', version: '1' });
  const devices = ['aa:bb:cc:00:01:01', 'aa:bb:cc:00:01:02', 'aa:bb:cc:00:01:03'];
  const pair = (i: number) => `${olds[i]!.sha256}-${v.sha256}`;
  await report(t, gw, devices[0]!, olds[0]!);
  const first = (await deltaOffered(gw, devices[0])).json.delta;
  await report(t, gw, devices[1]!, olds[1]!);
  await deltaOffered(gw, devices[1]);
  // The first one is downloaded again: the second is now the least recently used.
  t.is((await fetchDelta(gw, first.url)).response.status, 200);
  await report(t, gw, devices[2]!, olds[2]!);
  await deltaOffered(gw, devices[2]);
  const files = await deltaFiles(gw);
  t.deepEqual(files.map((name) => name.split('.')[0]), [pair(0), pair(2)].sort());
  const health = await (await gw.fetch('/healthz')).json() as { deltas: { count: number; bytes: number } };
  t.is(health.deltas.count, 2);
  t.true(health.deltas.bytes <= 14 * 1024);
});

test('cache.deltaBytes 0: no device is offered a delta', async (t) => {
  const { gw } = await updated(t, 'fine-tuned head', { 'cache.deltaBytes': '0' });
  const answer = await poll(gw, DEVICE);
  t.is(answer.status, 200);
  t.false('delta' in answer.json);
  t.is((await (await gw.fetch('/healthz')).json() as { deltas: { queued: number } }).deltas.queued, 0);
});

test('deltas go with the blobs they come from, and survive a restart otherwise', async (t) => {
  const { gw, v1 } = await updated(t, 'fine-tuned head', { 'cache.gcGraceHours': '0' });
  const { delta } = (await deltaOffered(gw)).json;
  // A leftover of a delta being written when the gateway stopped.
  await writeFile(path.join(gw.config.paths.cache, 'deltas', 'tmp', 'leftover.part'), 'half a delta');
  await gw.restart();
  t.deepEqual(await readdir(path.join(gw.config.paths.cache, 'deltas', 'tmp')).catch(() => []), [], 'unfinished deltas are removed at start');
  t.is((await poll(gw, DEVICE)).json.delta?.sha256, delta.sha256, 'the delta is offered again at once after the restart');
  t.is((await gw.fetch(delta.url)).status, 200);

  // The device moves on, v1 is deleted and collected: its delta goes with it.
  await report(t, gw, DEVICE, { ...v1, sha256: (await poll(gw, DEVICE)).json.model.sha256, version: '2' });
  t.is((await gw.fetch('/v1/models/kws/1', { method: 'DELETE', token: ADMIN_TOKEN })).status, 204);
  const gc = await gw.fetch('/v1/cache/gc', { method: 'POST', token: ADMIN_TOKEN });
  t.deepEqual(((await gc.json()) as { removed: Array<{ sha256: string }> }).removed.map((r) => r.sha256), [v1.sha256]);
  await until('the delta file gone', async () => ((await deltaFiles(gw)).length === 0 ? true : undefined));
  await expectError(t, await gw.fetch(delta.url), 404, 'delta_not_found');
});

test('refusals: a malformed digest, an unknown pair, a missing device token; nothing is stored', async (t) => {
  const gw = await startGateway(t, { 'devices.token': 'a-device-token-0123456789' });
  const { before, after } = modelVersions(SIZE, 'fine-tuned head', t.title);
  const v1 = await pushed(t, gw, 'kws', '1', before);
  const v2 = await pushed(t, gw, 'kws', '2', after);
  await expectUnauthorized(t, await gw.fetch(`/v1/deltas/${v1.sha256}/${v2.sha256}`));
  const token = 'a-device-token-0123456789';
  await expectError(t, await gw.fetch(`/v1/deltas/${v1.sha256.toUpperCase()}/${v2.sha256}`, { token }), 400, 'invalid_digest');
  await expectError(t, await gw.fetch(`/v1/deltas/${v1.sha256}/not-a-digest`, { token }), 400, 'invalid_digest');
  await expectError(t, await gw.fetch(`/v1/deltas/${v2.sha256}/${v1.sha256}`, { token }), 404, 'delta_not_found', '/v1/artifacts/');
  t.deepEqual(await deltaFiles(gw), [], 'a request for a delta never makes one');
});
