import { spawn } from 'node:child_process';
import { mkdirSync, openSync, closeSync, fstatSync, readFileSync, writeFileSync } from 'node:fs';
import path from 'node:path';
import test from 'ava';
import YAML from 'yaml';
import { SYSLOG_PRIORITY, createLogger } from '../../daemon/log.ts';
import { CLI_ARGS, ROOT, cleanEnv, freePort, testConfig } from '../helpers/daemon-process.ts';
import { tempDir } from '../helpers/harness.ts';

// Under systemd every log line starts with its syslog priority, so that
// `journalctl -p warning` shows exactly the warnings and worse.

function capture() {
  const lines: string[] = [];
  return { lines, stream: { write: (line: string) => { lines.push(line); } } };
}

const LEVELS = ['trace', 'debug', 'info', 'warn', 'error', 'fatal'] as const;
/** journalctl -p names: 0 emerg … 7 debug. */
const EXPECTED = { trace: 7, debug: 7, info: 6, warn: 4, error: 3, fatal: 2 };

test('each level carries its syslog priority, and warning or worse is exactly warn, error and fatal', (t) => {
  const { lines, stream } = capture();
  const log = createLogger('trace', stream, { priorityPrefix: true });
  for (const level of LEVELS) log[level]({ n: 1 }, `a ${level} line`);
  t.is(lines.length, LEVELS.length);
  for (const [i, level] of LEVELS.entries()) {
    const match = /^<(\d)>(\{.*\})\n$/.exec(lines[i]!);
    t.truthy(match, lines[i]);
    t.is(Number(match![1]), EXPECTED[level], level);
    const parsed = JSON.parse(match![2]!) as { msg: string; level: number };
    t.is(parsed.msg, `a ${level} line`);
    t.is(SYSLOG_PRIORITY[parsed.level], EXPECTED[level]);
  }
  // `journalctl -p warning` keeps priorities 0..4.
  const shown = lines.filter((line) => Number(line[1]) <= 4).map((line) => (JSON.parse(line.slice(3)) as { msg: string }).msg);
  t.deepEqual(shown, ['a warn line', 'a error line', 'a fatal line']);
});

test('without the prefix a line is plain JSON', (t) => {
  const { lines, stream } = capture();
  createLogger('info', stream).info('plain');
  t.is(lines.length, 1);
  t.like(JSON.parse(lines[0]!), { msg: 'plain', level: 30, service: 'modelferry' });
});

test('tokens, authorization headers and private keys are redacted wherever they are logged', (t) => {
  const { lines, stream } = capture();
  const log = createLogger('info', stream);
  const secrets = ['tok-0123456789abcdef', 'Bearer tok-fedcba9876543210', 'PRIVATE-KEY-MATERIAL', 'upstream-secret-000111'];
  log.info({
    token: secrets[0],
    req: { headers: { authorization: secrets[1] } },
    signing: { privateKey: secrets[2] },
    config: { upstream: { token: secrets[3] }, auth: { tokens: [{ name: 'jenkins', token: secrets[0] }] } },
    auth: { tokens: [{ name: 'ops', token: secrets[0] }] },
  }, 'everything at once');
  const line = lines.join('');
  for (const secret of secrets) t.false(line.includes(secret), `${secret} leaked: ${line}`);
  t.true(line.includes('jenkins'), 'names stay readable');
  t.true(line.includes('[redacted]'));
});

test('secrets are redacted at any depth and under any spelling of their name, and the logged objects are left as they were', (t) => {
  const { lines, stream } = capture();
  const log = createLogger('info', stream);
  const secrets = ['Bearer deep-0123456789', 'deep-token-abcdef', 'AKIA-SECRET-KEY-xyz', 'cookie=session-42', 'hunter2-password'];
  const headers = Object.assign(Object.create(null) as Record<string, string>, { Authorization: secrets[0], 'x-trace': 'kept' });
  const logged = {
    a: { b: { c: { d: { e: { request: { headers } } } } } },
    list: [[{ options: { devices_token: secrets[1] } }]],
    upstream: { s3: { secretAccessKey: secrets[2], region: 'eu-west-1' } },
    proxy: { headers: { 'Set-Cookie': secrets[3] } },
    user: { Password: secrets[4] },
  };
  const before = JSON.stringify(logged);
  log.warn(logged, 'nested');
  log.info({ err: new Error('kept message'), tokens: [{ name: 'ci', token: secrets[1] }] }, 'with an error');
  const text = lines.join('');
  for (const secret of secrets) t.false(text.includes(secret), `${secret} leaked: ${text}`);
  for (const kept of ['kept', 'eu-west-1', 'kept message', '"name":"ci"']) t.true(text.includes(kept), `${kept} is still logged`);
  t.is(JSON.stringify(logged), before, "the caller's objects are not modified");
  t.is(headers.Authorization, secrets[0]);
});

test('a daemon whose stdout is the journal stream (JOURNAL_STREAM matches) prefixes every line', async (t) => {
  const dir = await tempDir(t);
  const port = await freePort();
  const config = testConfig(dir, port);
  const configFile = path.join(dir, 'config.yaml');
  writeFileSync(configFile, YAML.stringify(config));
  // A leftover upload makes the blob store warn at start: one warning among info lines.
  const cache = String((config.paths as { cache: string }).cache);
  mkdirSync(path.join(cache, 'tmp'), { recursive: true });
  writeFileSync(path.join(cache, 'tmp', 'upload-left-by-a-crash'), 'x');
  const out = path.join(dir, 'journal-stream');
  const fd = openSync(out, 'w');
  const stat = fstatSync(fd, { bigint: true });
  const child = spawn(process.execPath, [...CLI_ARGS, 'serve', '--config', configFile], {
    cwd: ROOT,
    env: cleanEnv({ JOURNAL_STREAM: `${stat.dev}:${stat.ino}` }),
    stdio: ['ignore', fd, 'pipe'],
  });
  closeSync(fd);
  const exited = new Promise<number | null>((resolve) => child.once('close', (code) => resolve(code)));
  t.teardown(() => { if (child.exitCode === null) child.kill('SIGKILL'); });
  for (let i = 0; i < 600 && !readFileSync(out, 'utf8').includes('gateway ready'); i++) {
    await new Promise((resolve) => setTimeout(resolve, 50));
    if (child.exitCode !== null) break;
  }
  child.kill('SIGTERM');
  t.is(await exited, 0);
  const lines = readFileSync(out, 'utf8').split('\n').filter(Boolean);
  t.true(lines.some((line) => line.includes('gateway ready')));
  const priorities = lines.map((line) => {
    const match = /^<(\d)>(\{.*\})$/.exec(line);
    t.truthy(match, line);
    const parsed = JSON.parse(match![2]!) as { level: number };
    t.is(Number(match?.[1]), SYSLOG_PRIORITY[parsed.level] ?? -1, line);
    return Number(match?.[1]);
  });
  t.true(priorities.includes(4), 'the leftover upload was logged as a warning');
  t.true(priorities.includes(6));
});
