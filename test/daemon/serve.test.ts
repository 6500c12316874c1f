import { existsSync } from 'node:fs';
import { readdir, realpath, writeFile } from 'node:fs/promises';
import http from 'node:http';
import path from 'node:path';
import test from 'ava';
import YAML from 'yaml';
import {
  ROOT, freePort, spawnModelferry, startDaemon, testConfig, type DaemonProcess, type LogLine,
} from '../helpers/daemon-process.ts';
import { tempDir } from '../helpers/harness.ts';
import { makeProgram, sha256 } from '../helpers/programs.ts';
import { ADMIN_TOKEN, ALL_TOKEN } from '../helpers/tokens.ts';

// `modelferry serve` as systemd or `npm start` runs it: a child process, configured by the
// embedded default, a file, the environment and flags, stopped by a signal.

const SYSTEM_CONFIG = '/etc/modelferry/config.yaml';

/** Every stdout line is one JSON object with a numeric level, a time and a message. */
function assertJsonLogLines(t: import('ava').ExecutionContext, daemon: DaemonProcess): void {
  t.true(daemon.lines.length > 0);
  for (const line of daemon.lines) {
    let parsed: LogLine | undefined;
    t.notThrows(() => { parsed = JSON.parse(line) as LogLine; }, `not a JSON log line: ${line}`);
    t.is(typeof parsed?.level, 'number', line);
    t.is(typeof parsed?.time, 'number', line);
    t.is(typeof parsed?.msg, 'string', line);
  }
}

test('with no config file serve runs on the embedded default, keeping state in the user\'s XDG folders (not under the working directory, here /) and logging where it listens and keeps state', async (t) => {
  t.false(existsSync(SYSTEM_CONFIG), `${SYSTEM_CONFIG} exists on this machine, so the embedded default cannot be tested`);
  const home = await realpath(await tempDir(t));
  const port = await freePort();
  const daemon = spawnModelferry(t, ['serve'], {
    cwd: '/',
    env: { HOME: home, MODELFERRY_HTTP_PORT: String(port), MODELFERRY_HTTP_HOST: '127.0.0.1', MODELFERRY_MDNS_ENABLED: 'false' },
  });
  const ready = await daemon.waitForLog('gateway ready');
  const state = path.join(home, '.local', 'state', 'modelferry');
  const cache = path.join(home, '.cache', 'modelferry');
  t.is(ready.state, state);
  t.is(ready.cache, cache);
  t.like(daemon.logs().find((line) => line.msg === 'configuration loaded'), {
    state, stateFrom: 'default ($XDG_STATE_HOME/modelferry)', cache, cacheFrom: 'default ($XDG_CACHE_HOME/modelferry)',
  });
  const listening = daemon.logs().find((line) => line.msg === 'listening')!;
  t.like(listening, { address: '127.0.0.1', port, url: `http://127.0.0.1:${port}/` });
  t.deepEqual(daemon.logs().find((line) => line.msg === 'configuration loaded')?.files, [path.join(ROOT, 'config', 'default.yaml')]);

  t.true(existsSync(path.join(state, 'CURRENT')), 'a LevelDB database in the XDG state folder');
  t.deepEqual(await readdir(cache), [], 'the cache folder stays empty until an upstream or a delta fills it');
  t.deepEqual(await readdir(path.join(state, 'blobs')), ['tmp'], 'pushed blobs go under the state folder');

  const health = await fetch(`http://127.0.0.1:${port}/healthz`);
  t.is(health.status, 200);
  t.like(await health.json(), { status: 'ok', models: 0 });
  // No tokens in the default: the admin API refuses everyone.
  const models = await fetch(`http://127.0.0.1:${port}/v1/models`, { headers: { Authorization: `Bearer ${ADMIN_TOKEN}` } });
  t.is(models.status, 401);

  t.deepEqual(await daemon.stop('SIGTERM'), { code: 0, signal: null });
  assertJsonLogLines(t, daemon);
  t.is(daemon.stderr, '', 'logs go to stdout, nothing to stderr');
});

test('a bad config value stops serve with exit code 78 and a message naming the key, the value and where it came from', async (t) => {
  const dir = await tempDir(t);
  const file = path.join(dir, 'config.yaml');
  const config = testConfig(dir, 70000);
  await writeFile(file, YAML.stringify(config));
  const fromFile = spawnModelferry(t, ['serve', '--config', file]);

  const goodFile = path.join(dir, 'good.yaml');
  await writeFile(goodFile, YAML.stringify(testConfig(dir, await freePort())));
  const fromEnv = spawnModelferry(t, ['serve', '--config', goodFile], { env: { MODELFERRY_DEVICES_MAX_WAIT_SECONDS: 'forever' } });

  const [fileExit, envExit] = await Promise.all([fromFile.exited, fromEnv.exited]);
  t.deepEqual(fileExit, { code: 78, signal: null });
  t.regex(fromFile.stderr, /http\.port = 70000/);
  t.true(fromFile.stderr.includes(`(from ${file})`), fromFile.stderr);
  t.regex(fromFile.stderr, /65535/, 'says what is allowed');

  t.deepEqual(envExit, { code: 78, signal: null });
  t.regex(fromEnv.stderr, /devices\.maxWaitSeconds = "forever" \(from environment MODELFERRY_DEVICES_MAX_WAIT_SECONDS\)/);

  t.notRegex(fromFile.stderr + fromEnv.stderr, /^\s+at /m, 'no stack trace');
  // Refused before anything was opened.
  t.false(existsSync(path.join(dir, 'state')));
});

test('flags override the environment, which overrides the config file', async (t) => {
  const dir = await tempDir(t);
  const [envPort, flagPort] = [await freePort(), await freePort()];
  const envCache = path.join(dir, 'cache-from-env');
  const daemon = await startDaemon(t, {
    dir,
    env: { MODELFERRY_HTTP_PORT: String(envPort), MODELFERRY_PATHS_CACHE: envCache },
    args: ['--port', String(flagPort)],
  });
  t.is(daemon.port, flagPort);
  const ready = daemon.logs().find((line) => line.msg === 'gateway ready')!;
  t.is(ready.cache, envCache, 'the environment beat the file');
  t.is(ready.state, path.join(dir, 'state'), 'the file beat the embedded default');
  t.is((await fetch(`http://127.0.0.1:${flagPort}/healthz`)).status, 200);
});

test('a second serve on a state folder in use exits 1 saying the database is in use, and the first keeps running', async (t) => {
  // A JSON config file is read like YAML.
  const first = await startDaemon(t, { configFormat: 'json' });
  t.deepEqual(first.logs().find((line) => line.msg === 'configuration loaded')?.files, [path.join(ROOT, 'config', 'default.yaml'), first.configFile]);
  const second = spawnModelferry(t, ['serve', '--config', first.configFile, '--port', String(await freePort())]);
  t.deepEqual(await second.exited, { code: 1, signal: null });
  t.regex(second.stderr, /in use by another modelferry process/);
  t.true(first.running);
  t.is((await first.fetch('/healthz')).status, 200);
});

test('SIGINT (Ctrl-C) stops the daemon like SIGTERM, with exit code 0', async (t) => {
  const daemon = await startDaemon(t);
  t.deepEqual(await daemon.stop('SIGINT'), { code: 0, signal: null });
  t.truthy(daemon.logs().find((line) => line.msg === 'stopping' && line.signal === 'SIGINT'));
  t.truthy(daemon.logs().find((line) => line.msg === 'stopped'));
});

test('SIGTERM stops accepting connections, lets an in-flight download finish with the exact bytes, exits 0, and leaves the database closed', async (t) => {
  const size = 24 * 1024 * 1024;
  const daemon = await startDaemon(t, { config: { artifacts: { maxBytes: '64 MiB' }, http: { shutdownGraceSeconds: 60 } } });
  const program = makeProgram(size);
  const digest = sha256(program);
  const pushed = await daemon.fetch('/v1/models/big/1', { method: 'PUT', body: program, token: ALL_TOKEN });
  t.is(pushed.status, 201);

  // A slow reader: takes the first chunk, then stops reading with most of the body unsent.
  const chunks: Buffer[] = [];
  let received = 0;
  const response = await new Promise<http.IncomingMessage>((resolve, reject) => {
    http.get(`${daemon.url}/v1/artifacts/${digest}`, { agent: false }, resolve).once('error', reject);
  });
  t.is(response.statusCode, 200);
  const done = new Promise<void>((resolve, reject) => {
    response.once('end', resolve).once('error', reject).once('aborted', () => reject(new Error('download aborted')));
  });
  await new Promise<void>((resolve) => {
    response.once('data', (chunk: Buffer) => {
      response.pause();
      chunks.push(chunk);
      received += chunk.length;
      response.on('data', (more: Buffer) => {
        chunks.push(more);
        received += more.length;
      });
      resolve();
    });
  });

  daemon.child.kill('SIGTERM');
  await daemon.waitForLog('stopping');
  // No new connections...
  await t.throwsAsync(fetch(`${daemon.url}/healthz`), undefined, 'refuses new connections while draining');
  // ...but the download is still being served: the daemon waits for it.
  await new Promise((resolve) => setTimeout(resolve, 300));
  t.true(daemon.running, 'the daemon waits for the in-flight download');
  t.true(received < size, 'the download was still in flight at SIGTERM');

  response.resume();
  await done;
  const body = Buffer.concat(chunks);
  t.is(body.length, size);
  t.is(sha256(body), digest);

  t.deepEqual(await daemon.exited, { code: 0, signal: null });
  t.truthy(daemon.logs().find((line) => line.msg === 'stopped'));
  t.falsy(daemon.logs().find((line) => line.level >= 40), 'no warning or error on a clean stop');
  assertJsonLogLines(t, daemon);

  // The database was released: a new daemon opens the same folders and has the model.
  const next = await startDaemon(t, { dir: daemon.dir, config: { artifacts: { maxBytes: '64 MiB' } } });
  const model = await next.fetch('/v1/models/big/1', { token: ADMIN_TOKEN });
  t.is(model.status, 200);
  t.like(await model.json(), { sha256: digest, size, cached: true });
});

test('without a config file, systemd\'s STATE_DIRECTORY and CACHE_DIRECTORY place the state and the cache', async (t) => {
  t.false(existsSync(SYSTEM_CONFIG), `${SYSTEM_CONFIG} exists on this machine`);
  const dir = await tempDir(t);
  const port = await freePort();
  const state = path.join(dir, 'lib', 'modelferry');
  const cache = path.join(dir, 'cache', 'modelferry');
  const daemon = spawnModelferry(t, ['serve', '--host', '127.0.0.1', '--port', String(port), '--no-mdns'], {
    cwd: dir,
    // systemd passes a colon-separated list when a unit names several directories.
    env: { STATE_DIRECTORY: `${state}:${path.join(dir, 'other')}`, CACHE_DIRECTORY: cache },
  });
  const ready = await daemon.waitForLog('gateway ready');
  t.like(ready, { state, cache });
  t.true(existsSync(path.join(state, 'CURRENT')));
  t.false(existsSync(path.join(dir, 'var')));
  t.deepEqual(await daemon.stop(), { code: 0, signal: null });
});
