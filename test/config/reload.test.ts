import { rename, writeFile } from 'node:fs/promises';
import http from 'node:http';
import test from 'ava';
import YAML from 'yaml';
import { startDaemon, testConfig, type LogLine, type RunningDaemon } from '../helpers/daemon-process.ts';
import { fixture, makeProgram, sha256 } from '../helpers/programs.ts';
import { ALL_TOKEN, TEST_TOKENS } from '../helpers/tokens.ts';

// docs/configuration.md "Live reload": the daemon watches its config file (and takes SIGHUP);
// live keys take effect without a restart and without dropping held long polls, a bad edit is
// refused naming the key, and keys that need a restart are reported as such.

const DEVICE_TOKEN_A = 'device-token-a-0123456789';
const DEVICE_TOKEN_B = 'device-token-b-0123456789';
const NEW_ADMIN = 'rotated-admin-token-0123456789';
const MAC = '02:00:00:00:14:99';

async function rewrite(daemon: RunningDaemon, sections: Record<string, Record<string, unknown>>): Promise<void> {
  await writeFile(daemon.configFile, YAML.stringify(testConfig(daemon.dir, daemon.port, sections)));
}

/** The first log line at or after the time `from` (Date.now()) that matches. */
function logAfter(daemon: RunningDaemon, from: number, match: (line: LogLine) => boolean): Promise<LogLine> {
  return daemon.waitForLog((line) => Number(line.time) >= from && match(line));
}

test('tokens rotated in the config file take effect at once while a held long poll stays held and is answered by the next change', async (t) => {
  const daemon = await startDaemon(t, { config: { devices: { token: DEVICE_TOKEN_A, maxWaitSeconds: 120 } } });
  const put = (name: string, version: string, body: Buffer, token: string) => daemon.fetch(`/v1/models/${name}/${version}`, { method: 'PUT', body, token });
  const assign = (version: string, token: string) => daemon.fetch('/v1/assignments/default', {
    method: 'PUT', token, headers: { 'Content-Type': 'application/json' }, body: JSON.stringify({ model: 'kws', version }),
  });
  t.is((await put('kws', '1', fixture('add.pte'), ALL_TOKEN)).status, 201);
  t.is((await put('kws', '2', fixture('mul.pte'), ALL_TOKEN)).status, 201);
  t.is((await assign('1', ALL_TOKEN)).status, 201);
  const first = await daemon.fetch(`/v1/devices/${MAC}/model`, { token: DEVICE_TOKEN_A });
  t.is(first.status, 200);
  let settled = false;
  const held = daemon.fetch(`/v1/devices/${MAC}/model?wait=100`, { token: DEVICE_TOKEN_A, headers: { 'If-None-Match': first.headers.get('etag')! } })
    .finally(() => { settled = true; });

  const before = Date.now();
  const tokens = [...TEST_TOKENS.filter((entry) => entry.token !== ALL_TOKEN), { name: 'root', token: NEW_ADMIN, scopes: ['push', 'admin', 'sync'] }];
  await rewrite(daemon, { devices: { token: DEVICE_TOKEN_B, maxWaitSeconds: 120 }, auth: { tokens } });
  const reloaded = await logAfter(daemon, before, (line) => line.msg?.startsWith('configuration reloaded') === true);
  t.deepEqual(reloaded.keys, ['auth.tokens', 'devices.token']);
  t.false(JSON.stringify(daemon.logs()).includes(NEW_ADMIN), 'no token in the log');

  t.is((await daemon.fetch(`/v1/devices/${MAC}/model`, { token: DEVICE_TOKEN_A })).status, 401);
  t.is((await daemon.fetch(`/v1/devices/${MAC}/model`, { token: DEVICE_TOKEN_B })).status, 200);
  t.is((await daemon.fetch('/v1/models', { token: ALL_TOKEN })).status, 401);
  t.false(settled, 'the long poll admitted with the old token is still held');
  t.is((await assign('2', NEW_ADMIN)).status, 200);
  const answer = await held;
  t.is(answer.status, 200);
  t.like(await answer.json(), { model: { name: 'kws', version: '2' } });
});

test('an edit that does not validate is refused naming the key and the running config stays; keys that need a restart are reported; SIGHUP reloads', async (t) => {
  const daemon = await startDaemon(t, { config: { devices: { pollIntervalSeconds: 300 } } });
  t.is((await daemon.fetch('/v1/models/kws/1', { method: 'PUT', body: fixture('add.pte'), token: ALL_TOKEN })).status, 201);
  t.is((await daemon.fetch('/v1/assignments/default', { method: 'PUT', token: ALL_TOKEN, headers: { 'Content-Type': 'application/json' }, body: '{"model":"kws","version":"1"}' })).status, 201);

  let from = Date.now();
  await rewrite(daemon, { devices: { pollIntervalSeconds: -5 } });
  const refused = await logAfter(daemon, from, (line) => line.msg?.startsWith('configuration change refused') === true);
  t.is(refused.key, 'devices.pollIntervalSeconds');
  t.is(refused.level, 50);
  const still = await (await daemon.fetch(`/v1/devices/${MAC}/model`)).json() as { poll: { intervalSeconds: number } };
  t.is(still.poll.intervalSeconds, 300, 'the running value stays');

  from = Date.now();
  await rewrite(daemon, { devices: { pollIntervalSeconds: 60 }, http: { host: '127.0.0.1', port: daemon.port + 1, shutdownGraceSeconds: 10 } });
  const restart = await logAfter(daemon, from, (line) => line.msg?.startsWith('configuration change needs a restart') === true);
  t.deepEqual(restart.keys, ['http.port']);
  await logAfter(daemon, from, (line) => line.msg === 'configuration reloaded: devices.pollIntervalSeconds');
  const changed = await (await daemon.fetch(`/v1/devices/${MAC}/model`)).json() as { poll: { intervalSeconds: number } };
  t.is(changed.poll.intervalSeconds, 60);
  t.is((await daemon.fetch('/healthz')).status, 200, 'still listening on the old port');

  from = Date.now();
  daemon.child.kill('SIGHUP');
  const hup = await logAfter(daemon, from, (line) => line.trigger === 'SIGHUP');
  t.truthy(hup.msg);
  t.true(daemon.running, 'SIGHUP does not stop the daemon');
});

test('a large download in flight across a reload that rotates every token completes with the right bytes; a long poll held across it is answered normally', async (t) => {
  const daemon = await startDaemon(t, { config: { devices: { token: DEVICE_TOKEN_A, maxWaitSeconds: 120 }, artifacts: { maxBytes: '32 MiB', memoryCacheBytes: 0 } } });
  const big = makeProgram(12 * 1024 * 1024);
  t.is((await daemon.fetch('/v1/models/kws/1', { method: 'PUT', body: big, token: ALL_TOKEN })).status, 201);
  t.is((await daemon.fetch('/v1/assignments/default', { method: 'PUT', token: ALL_TOKEN, headers: { 'Content-Type': 'application/json' }, body: '{"model":"kws","version":"1"}' })).status, 201);
  const first = await daemon.fetch(`/v1/devices/${MAC}/model`, { token: DEVICE_TOKEN_A });
  t.is(first.status, 200);
  const offer = await first.json() as { model: { url: string; sha256: string; size: number } };
  t.is(offer.model.sha256, sha256(big));

  // The device starts the download, takes one chunk and stops reading: the rest waits in the
  // gateway while the configuration changes under it.
  const download = await new Promise<http.IncomingMessage>((resolve, reject) => {
    http.get(new URL(offer.model.url, daemon.url), { headers: { Authorization: `Bearer ${DEVICE_TOKEN_A}` } }, resolve).on('error', reject);
  });
  t.is(download.statusCode, 200);
  const chunks: Buffer[] = [];
  // Paused in the handler itself: data emitted with no listener would be lost.
  const firstChunk = await new Promise<Buffer>((resolve) => download.once('data', (chunk: Buffer) => { download.pause(); resolve(chunk); }));
  chunks.push(firstChunk);
  t.true(firstChunk.length < big.length, 'the download is still in flight');
  let settled = false;
  const held = daemon.fetch(`/v1/devices/${MAC}/model?wait=100`, { token: DEVICE_TOKEN_A, headers: { 'If-None-Match': first.headers.get('etag')! } })
    .finally(() => { settled = true; });

  // Every token rotated and signalled (the file watch and SIGHUP both reload). The new file
  // is renamed over the old one, as editors and config management do: the watch is on the
  // folder, so it sees the new file.
  const from = Date.now();
  const tokens = [{ name: 'root', token: NEW_ADMIN, scopes: ['push', 'admin', 'sync'] }];
  await writeFile(`${daemon.configFile}.new`, YAML.stringify(testConfig(daemon.dir, daemon.port, {
    devices: { token: DEVICE_TOKEN_B, maxWaitSeconds: 120 }, artifacts: { maxBytes: '32 MiB', memoryCacheBytes: 0 }, auth: { tokens },
  })));
  await rename(`${daemon.configFile}.new`, daemon.configFile);
  t.deepEqual((await logAfter(daemon, from, (line) => line.msg?.startsWith('configuration reloaded') === true)).keys, ['auth.tokens', 'devices.token']);
  daemon.child.kill('SIGHUP');
  await logAfter(daemon, from, (line) => line.trigger === 'SIGHUP');
  t.is((await daemon.fetch(offer.model.url, { token: DEVICE_TOKEN_A })).status, 401, 'a new download needs the new token');
  t.is((await daemon.fetch('/v1/models', { token: ALL_TOKEN })).status, 401);

  // The device reads the rest, slowly.
  for await (const chunk of download) {
    chunks.push(chunk as Buffer);
    if (chunks.length % 16 === 0) await new Promise((resolve) => setTimeout(resolve, 5));
  }
  const body = Buffer.concat(chunks);
  t.is(body.length, big.length);
  t.is(sha256(body), offer.model.sha256);

  t.false(settled, 'the long poll admitted before the reload is still held');
  t.is((await daemon.fetch('/v1/models/kws/2', { method: 'PUT', body: fixture('mul.pte'), token: NEW_ADMIN })).status, 201);
  t.is((await daemon.fetch('/v1/assignments/default', { method: 'PUT', token: NEW_ADMIN, headers: { 'Content-Type': 'application/json' }, body: '{"model":"kws","version":"2"}' })).status, 200);
  const answer = await held;
  t.is(answer.status, 200);
  t.like(await answer.json(), { model: { name: 'kws', version: '2' } });
  t.true(daemon.running);
});
