import { spawn } from 'node:child_process';
import { existsSync } from 'node:fs';
import { mkdir, readFile, writeFile } from 'node:fs/promises';
import net from 'node:net';
import path from 'node:path';
import test from 'ava';
import YAML from 'yaml';
import {
  ROOT, assignHttp, cleanEnv, freePort, runCli, spawnModelferry, startDaemon, testConfig, type RunningDaemon,
} from '../helpers/daemon-process.ts';
import { Teardowns, tempDir } from '../helpers/harness.ts';
import { releaseCopy } from '../helpers/release-copy.ts';
import { fixture, fixturePath } from '../helpers/programs.ts';
import { ALL_TOKEN } from '../helpers/tokens.ts';
import { testNeeding } from '../helpers/requirements.ts';

// Every mistake a newcomer makes with the `modelferry` command is caught, with the exit
// code docs/cli.md "Exit codes" gives and a message that says what to do. Each case runs the
// real command in a child process.

const shared = new Teardowns();
let gw: RunningDaemon;

test.before(async () => {
  gw = await startDaemon(shared);
  const push = (name: string, version: string, body: Buffer) => gw.fetch(`/v1/models/${name}/${version}`, { method: 'PUT', body, token: ALL_TOKEN });
  for (const response of [await push('kws', '1', fixture('add.pte')), await push('kws', '2', fixture('mul.pte'))]) {
    if (response.status !== 201) throw new Error(`setup push: ${response.status}`);
  }
});

test.after.always(() => shared.run());

const client = () => ['--gateway', gw.url, '--token', ALL_TOKEN];
const ADD = fixturePath('add.pte');

function noStack(t: import('ava').ExecutionContext, text: string): void {
  t.notRegex(text, /^\s+at /m, 'no stack trace');
  t.notRegex(text, /\bE[A-Z]{3,}\b: /, 'no raw Node error');
}

/** The names of every command, from `modelferry --help`. */
async function commandNames(): Promise<string[]> {
  const { stdout } = await runCli(['--help']);
  const list = stdout.slice(stdout.indexOf('commands:\n') + 'commands:\n'.length, stdout.indexOf('\n\n', stdout.indexOf('commands:\n')));
  return list.split('\n').map((line) => line.trim().split(/\s+/)[0]!);
}

test('--version prints the version; --help lists every command with a line saying what it does', async (t) => {
  const { version } = JSON.parse(await readFile(path.join(ROOT, 'package.json'), 'utf8')) as { version: string };
  const shown = await runCli(['--version']);
  t.is(shown.code, 0, shown.stderr);
  t.is(shown.stdout.trim(), `modelferry ${version}`);
  const help = await runCli(['--help']);
  t.is(help.code, 0);
  const names = await commandNames();
  for (const name of ['serve', 'push', 'assign', 'assignments', 'groups', 'ungroup', 'keygen', 'sign']) t.true(names.includes(name), name);
  for (const line of help.stdout.split('\n').filter((l) => names.some((n) => l.startsWith(`  ${n} `)))) {
    t.regex(line, /^ {2}\S+ +\S.{10,}$/, `a line saying what it does: ${line}`);
  }
  const unknown = await runCli(['frobnicate']);
  t.is(unknown.code, 2);
  t.regex(unknown.stderr, /unknown command frobnicate/);
  const close = await runCli(['assigments']);
  t.regex(close.stderr, /did you mean assignments\?/);
});

test('docs/cli.md shows the exact output of modelferry --help', async (t) => {
  const doc = await readFile(path.join(ROOT, 'docs', 'cli.md'), 'utf8');
  const match = /<!-- modelferry --help -->\n```text\n([\s\S]*?)```/.exec(doc);
  t.truthy(match, 'docs/cli.md has a ```text block after <!-- modelferry --help -->');
  const { stdout } = await runCli(['--help']);
  t.is(match![1], stdout);
});

test('every command refuses an unknown option with exit 2, naming the closest known one; serve --prot does not start', async (t) => {
  const names = await commandNames();
  // An option each command has; a command added later is asked for its first one.
  const known: Record<string, string> = { serve: 'port', keygen: 'out', sign: 'name' };
  await Promise.all(names.map(async (name) => {
    let option: string | undefined = known[name];
    if (!option) {
      const help = await runCli([name, '--help']);
      t.is(help.code, 0, `${name} --help`);
      option = /^ {2}--([a-z][a-z-]+)/m.exec(help.stdout)?.[1];
      if (!option) {
        const result = await runCli([name, '--frobnicate', 'x']);
        t.is(result.code, 2, `${name} --frobnicate: ${result.stderr}`);
        t.true(result.stderr.includes('unknown option --frobnicate; this command takes no options'), `${name}: ${result.stderr}`);
        return;
      }
    }
    // Two adjacent letters swapped: the commonest typo.
    const typo = option.length > 3 ? `${option.slice(0, 1)}${option[2]}${option[1]}${option.slice(3)}` : `${option}x`;
    const result = await runCli([name, `--${typo}`, 'x']);
    t.is(result.code, 2, `${name} --${typo}: ${result.stderr}`);
    t.true(result.stderr.includes(`unknown option --${typo}; did you mean --${option}?`), `${name}: ${result.stderr}`);
    t.regex(result.stderr, new RegExp(`usage: modelferry ${name}`));
  }));
  const port = await freePort();
  const serve = await runCli(['serve', '--prot', String(port)]);
  t.is(serve.code, 2);
  t.regex(serve.stderr, /unknown option --prot; did you mean --port\?/);
  t.is(await connects(port), false, 'nothing was started');
});

function connects(port: number): Promise<boolean> {
  return new Promise((resolve) => {
    const socket = net.connect(port, '127.0.0.1');
    socket.once('connect', () => { socket.destroy(); resolve(true); });
    socket.once('error', () => resolve(false));
  });
}

test('config errors name the flags as typed (--port, --log-level) and exit 78', async (t) => {
  const port = await runCli(['serve', '--port', 'eighty']);
  t.is(port.code, 78);
  t.regex(port.stderr, /http\.port = "eighty" \(from flag --port\)/);
  const level = await runCli(['serve', '--log-level', 'loud']);
  t.is(level.code, 78);
  t.regex(level.stderr, /log\.level = "loud" \(from flag --log-level\).*fatal/);
  const set = await runCli(['serve', '--set', 'http.prot=1']);
  t.is(set.code, 78);
  t.regex(set.stderr, /--set http\.prot names no configuration key/);
  const missing = await runCli(['serve', '--config', '/nonexistent/gateway.yaml']);
  t.is(missing.code, 78);
  t.regex(missing.stderr, /--config \/nonexistent\/gateway\.yaml does not exist: name a readable YAML or JSON file/);
  noStack(t, port.stderr + level.stderr + set.stderr + missing.stderr);
});

test('a state folder that cannot be created or written fails at once with 78 naming the setting, before anything is opened (/proc, a file on the way)', async (t) => {
  const dir = await tempDir(t);
  await writeFile(path.join(dir, 'a-file'), '');
  const env = { MODELFERRY_MDNS_ENABLED: 'false', MODELFERRY_HTTP_HOST: '127.0.0.1' };
  // This one spun at 100 % CPU forever (Node's recursive mkdir under /proc).
  const proc = await runCli(['serve', '--state-dir', '/proc/nonexistent/state', '--cache-dir', path.join(dir, 'cache'), '--port', '0'], { env, timeoutMs: 20_000 });
  t.is(proc.code, 78, proc.stderr);
  t.regex(proc.stderr, /paths\.state = \/proc\/nonexistent\/state \(from flag --state-dir\) cannot be used: .*cannot be created there.*--state-dir/);
  const notDir = await runCli(['serve', '--state-dir', path.join(dir, 'state'), '--cache-dir', path.join(dir, 'a-file', 'cache'), '--port', '0'], { env });
  t.is(notDir.code, 78, notDir.stderr);
  t.true(notDir.stderr.includes(`paths.cache = ${path.join(dir, 'a-file', 'cache')} (from flag --cache-dir) cannot be used`), notDir.stderr);
  t.regex(notDir.stderr, /goes through a file where a folder is needed/);
  t.false(existsSync(path.join(dir, 'state', 'CURRENT')), 'the database was not opened');
  noStack(t, proc.stderr + notDir.stderr);
});

// Only root can become another user (setpriv, from util-linux, which every Debian has).
testNeeding('root')('a folder this user may not write is refused with 78 naming the setting (run as nobody)', async (t) => {
  const dir = await tempDir(t);
  // The built CLI from a copy every user can read: the checkout may be where nobody cannot go.
  const release = await releaseCopy(dir);
  await mkdir(path.join(dir, 'locked'), { mode: 0o755 });
  const child = spawn('/usr/bin/setpriv', ['--reuid=65534', '--regid=65534', '--clear-groups', process.execPath, path.join(release, 'dist', 'cli', 'main.js'),
    'serve', '--state-dir', path.join(dir, 'locked', 'state'), '--cache-dir', path.join(dir, 'locked', 'cache'), '--port', '0', '--host', '127.0.0.1'], {
    env: cleanEnv({ HOME: '/nonexistent', MODELFERRY_MDNS_ENABLED: 'false' }), stdio: ['ignore', 'pipe', 'pipe'], cwd: '/',
  });
  // A gateway that wrongly starts would serve forever: stop it so the test fails, not hangs.
  const guard = setTimeout(() => child.kill('SIGKILL'), 30_000);
  t.teardown(() => { clearTimeout(guard); if (child.exitCode === null) child.kill('SIGKILL'); });
  let stderr = '';
  child.stderr.setEncoding('utf8').on('data', (text: string) => { stderr += text; });
  const code = await new Promise<number | null>((resolve) => child.once('close', resolve));
  t.is(code, 78, stderr);
  t.regex(stderr, /paths\.state = .*locked\/state \(from flag --state-dir\) cannot be used: the folder is not accessible to this user \(permission denied\)/);
  t.false(existsSync(path.join(dir, 'locked', 'state')));
  noStack(t, stderr);
});

test('a port in use exits 1 naming --port before the database is opened; a port of another address 78', async (t) => {
  const dir = await tempDir(t);
  const blocker = net.createServer();
  await new Promise<void>((resolve) => blocker.listen(0, '127.0.0.1', () => resolve()));
  t.teardown(() => new Promise<void>((resolve) => blocker.close(() => resolve())));
  const { port } = blocker.address() as net.AddressInfo;
  const env = { MODELFERRY_MDNS_ENABLED: 'false' };
  const state = path.join(dir, 'state');
  const inUse = await runCli(['serve', '--host', '127.0.0.1', '--port', String(port), '--state-dir', state, '--cache-dir', path.join(dir, 'cache')], { env });
  t.is(inUse.code, 1, inUse.stderr);
  t.true(inUse.stderr.includes(`http.port = ${port} (from flag --port) on http.host = 127.0.0.1 (from flag --host): the port is in use by another process`), inUse.stderr);
  t.regex(inUse.stderr, /choose another port with --port/);
  t.false(existsSync(path.join(state, 'CURRENT')), 'the database was not opened');
  const foreign = await runCli(['serve', '--host', '192.0.2.1', '--port', String(port), '--state-dir', state, '--cache-dir', path.join(dir, 'cache')], { env });
  t.is(foreign.code, 78, foreign.stderr);
  t.regex(foreign.stderr, /192\.0\.2\.1 is not an address of this machine/);
  noStack(t, inUse.stderr + foreign.stderr);
});

test('keygen over an existing key, sign with the public key, a missing model file: sentences naming the argument, exit 1', async (t) => {
  const dir = await tempDir(t);
  const prefix = path.join(dir, 'site');
  const made = await runCli(['keygen', '--out', prefix]);
  t.is(made.code, 0, made.stderr);
  const before = await readFile(`${prefix}.key`, 'utf8');
  const again = await runCli(['keygen', '--out', prefix]);
  t.is(again.code, 1);
  t.true(again.stderr.includes(`--out ${prefix}: ${prefix}.key already exists: it is not overwritten`), again.stderr);
  t.is(await readFile(`${prefix}.key`, 'utf8'), before, 'the private key is untouched');

  const withPublic = await runCli(['sign', ADD, '--name', 'kws', '--version', '1', '--key', `${prefix}.pub`]);
  t.is(withPublic.code, 1);
  t.true(withPublic.stderr.includes(`--key ${prefix}.pub is the public key; sign with the private key (${prefix}.key)`), withPublic.stderr);
  const notAKey = await runCli(['sign', ADD, '--name', 'kws', '--version', '1', '--key', ADD]);
  t.is(notAKey.code, 1);
  t.regex(notAKey.stderr, /is not a private key: expected the PEM file modelferry keygen wrote/);

  const missing = path.join(dir, 'kws.pte');
  const push = await runCli(['push', missing, '--name', 'kws', '--version', '9', ...client()]);
  t.is(push.code, 1);
  t.true(push.stderr.includes(`FILE ${missing} does not exist: check the path`), push.stderr);
  const folder = await runCli(['sign', dir, '--name', 'kws', '--version', '1', '--key', `${prefix}.key`]);
  t.is(folder.code, 1);
  t.regex(folder.stderr, /is not a regular file/);
  const noKey = await runCli(['push', ADD, '--name', 'kws', '--version', '9', '--sign-key', path.join(dir, 'none.key'), ...client()]);
  t.is(noKey.code, 1);
  t.regex(noKey.stderr, /--sign-key .*none\.key does not exist/);
  noStack(t, again.stderr + withPublic.stderr + notAKey.stderr + push.stderr + folder.stderr + noKey.stderr);
});

test('--gateway without a scheme is taken as http://; a URL of another scheme is a usage error naming where it came from', async (t) => {
  const bare = await runCli(['models', '--gateway', gw.url.replace('http://', ''), '--token', ALL_TOKEN]);
  t.is(bare.code, 0, bare.stderr);
  t.truthy(JSON.parse(bare.stdout).models);
  const fromEnv = await runCli(['models', '--token', ALL_TOKEN], { env: { MODELFERRY_GATEWAY: gw.url.replace('http://', '') } });
  t.is(fromEnv.code, 0, fromEnv.stderr);
  const ftp = await runCli(['models', '--token', ALL_TOKEN], { env: { MODELFERRY_GATEWAY: 'ftp://gw.lan' } });
  t.is(ftp.code, 2);
  t.regex(ftp.stderr, /MODELFERRY_GATEWAY "ftp:\/\/gw\.lan" uses ftp; the gateway speaks http:\/\/ or https:\/\//);
});

test('assign to a group that does not exist or has no members is refused without --force, exit 1', async (t) => {
  const nosuch = await runCli(['assign', 'group:nosuch', 'kws', '1', ...client()]);
  t.is(nosuch.code, 1);
  t.regex(nosuch.stderr, /group:nosuch names no group on this gateway, so no device would get it: create it with "modelferry group nosuch MAC \.\.\."/);
  t.regex(nosuch.stderr, /--force/);
  const viaPush = await runCli(['push', ADD, '--name', 'kws', '--version', '1', '--assign', 'group:nosuch', ...client()]);
  t.is(viaPush.code, 1);
  t.regex(viaPush.stderr, /group:nosuch names no group/);
  const put = await gw.fetch('/v1/groups/empty', { method: 'PUT', token: ALL_TOKEN, headers: { 'Content-Type': 'application/json' }, body: '{"members":[]}' });
  t.is(put.status, 201);
  const empty = await runCli(['assign', 'group:empty', 'kws', '1', ...client()]);
  t.is(empty.code, 1);
  t.regex(empty.stderr, /group empty has no members/);
  const forced = await runCli(['assign', 'group:nosuch', 'kws', '1', '--force', ...client()]);
  t.is(forced.code, 0, forced.stderr);
  const list = await runCli(['assignments', ...client()]);
  t.is(list.code, 0, list.stderr);
  t.like(JSON.parse(list.stdout).assignments.find((a: { selector: string }) => a.selector === 'group:nosuch'), { model: 'kws', version: '1' });
});

test('--rollout is checked in the CLI; --previous defaults to the current assignment, and raising a rollout keeps its previous', async (t) => {
  for (const bad of ['abc', '101', '-5', '12.5']) {
    const result = await runCli(['assign', 'group:ro', 'kws', '2', `--rollout=${bad}`, ...client()]);
    t.is(result.code, 2, bad);
    t.true(result.stderr.includes(`--rollout takes a whole percentage from 0 to 100, not "${bad}"`), result.stderr);
  }
  const mac = '02:00:00:00:13:01';
  t.is((await runCli(['group', 'ro', mac, ...client()])).code, 0);
  const none = await runCli(['assign', 'group:ro', 'kws', '2', '--rollout', '30', ...client()]);
  t.is(none.code, 2);
  t.regex(none.stderr, /group:ro has no assignment today.*--previous NAME@VERSION/);
  await assignHttp(gw, 'group:ro', 'kws', '1');
  const staged = await runCli(['assign', 'group:ro', 'kws', '2', '--rollout', '30', ...client()]);
  t.is(staged.code, 0, staged.stderr);
  t.regex(staged.stdout, /assigned kws@2 to group:ro for 30% \(others: kws@1\)/);
  const raised = await runCli(['assign', 'group:ro', 'kws', '2', '--rollout', '60', ...client()]);
  t.is(raised.code, 0, raised.stderr);
  t.regex(raised.stdout, /for 60% \(others: kws@1\)/);
  const { assignments } = await (await gw.fetch('/v1/assignments', { token: ALL_TOKEN })).json() as { assignments: Array<{ selector: string; rollout: unknown }> };
  t.like(assignments.find((a) => a.selector === 'group:ro')?.rollout, { percent: 60, previous: { model: 'kws', version: '1' } });
});

test('groups lists the groups, ungroup takes a device out of its group and says when a device is in none', async (t) => {
  const [a, b] = ['02:00:00:00:13:11', '02:00:00:00:13:12'];
  t.is((await runCli(['group', 'lab', a, b, ...client()])).code, 0);
  const listed = await runCli(['groups', ...client()]);
  t.is(listed.code, 0, listed.stderr);
  t.like(JSON.parse(listed.stdout).groups.find((g: { name: string }) => g.name === 'lab'), { members: [a, b] });
  const removed = await runCli(['ungroup', a.toUpperCase(), ...client()]);
  t.is(removed.code, 0, removed.stderr);
  t.regex(removed.stdout, new RegExp(`removed ${a} from group lab \\(1 members left\\)`));
  const one = await runCli(['groups', 'lab', ...client()]);
  t.deepEqual(JSON.parse(one.stdout).members, [b]);
  const again = await runCli(['ungroup', a, ...client()]);
  t.is(again.code, 1);
  t.regex(again.stderr, /is in no group/);
  const bad = await runCli(['ungroup', 'not-a-mac', ...client()]);
  t.is(bad.code, 2);
  t.regex(bad.stderr, /is not a MAC address/);
});

test('a gateway with no tokens warns at start, and a client is told that no tokens are configured and how to add one', async (t) => {
  const bare = await startDaemon(t, { config: { auth: { tokens: [] } } });
  t.truthy(bare.logs().find((line) => line.level === 40 && /no tokens configured/.test(String(line.msg))));
  const result = await runCli(['models', '--gateway', bare.url, '--token', ALL_TOKEN]);
  t.is(result.code, 1);
  t.regex(result.stderr, /this gateway has no tokens configured \(auth\.tokens is empty\).*add \{name, token, scopes\} entries under auth\.tokens/);
  const noToken = await runCli(['models', '--gateway', gw.url]);
  t.is(noToken.code, 1);
  t.regex(noToken.stderr, /no token was sent: pass --token TOKEN or set MODELFERRY_TOKEN/);
});

test('a device asking for ?wait= above devices.maxWaitSeconds is held for the maximum; a report with an unknown field is refused naming it', async (t) => {
  const short = await startDaemon(t, { config: { devices: { maxWaitSeconds: 1 } } });
  await short.fetch('/v1/models/kws/1', { method: 'PUT', body: fixture('add.pte'), token: ALL_TOKEN });
  await assignHttp(short, 'default', 'kws', '1');
  const mac = '02:00:00:00:13:21';
  const first = await short.fetch(`/v1/devices/${mac}/model?wait=9999`);
  t.is(first.status, 200);
  const held = await short.fetch(`/v1/devices/${mac}/model?wait=9999`, { headers: { 'If-None-Match': first.headers.get('etag')! } });
  t.is(held.status, 304);
  const report = await short.fetch(`/v1/devices/${mac}/report`, { method: 'POST', headers: { 'Content-Type': 'application/json' }, body: '{"state":"idle","temprature":40}' });
  t.is(report.status, 400);
  t.like(await report.json(), { error: 'invalid_body', message: 'body: unknown field "temprature"' });
});

test('npm start hands SIGTERM to the gateway: it stops cleanly and nothing is left running', async (t) => {
  const dir = await tempDir(t);
  const port = await freePort();
  const file = path.join(dir, 'config.yaml');
  await writeFile(file, YAML.stringify(testConfig(dir, port)));
  const npm = spawn('npm', ['start', '--silent', '--', '--config', file], { cwd: ROOT, env: cleanEnv(), stdio: ['ignore', 'pipe', 'pipe'] });
  t.teardown(() => { if (npm.exitCode === null) npm.kill('SIGKILL'); });
  let out = '';
  npm.stdout.setEncoding('utf8').on('data', (text: string) => { out += text; });
  const closed = new Promise<number | null>((resolve) => npm.once('close', resolve));
  for (let i = 0; i < 600 && !out.includes('"gateway ready"'); i++) await new Promise((resolve) => setTimeout(resolve, 100));
  t.true(out.includes('"gateway ready"'), out);
  npm.kill('SIGTERM');
  await closed;
  t.regex(out, /"msg":"stopped"/, 'the gateway itself got the signal and stopped cleanly');
  t.false(await connects(port), 'no gateway is left listening');
});

test('a serve started before its folders exist creates them; its start log says where state and cache are and where that came from', async (t) => {
  const dir = await tempDir(t);
  const daemon = spawnModelferry(t, ['serve', '--state-dir', 'deep/state', '--cache-dir', path.join(dir, 'cache'), '--port', '0', '--host', '127.0.0.1', '--no-mdns'], { cwd: dir });
  const loaded = await daemon.waitForLog('configuration loaded');
  t.like(loaded, { state: path.join(dir, 'deep', 'state'), stateFrom: 'flag --state-dir', cacheFrom: 'flag --cache-dir' });
  await daemon.waitForLog('gateway ready');
  t.deepEqual(await daemon.stop(), { code: 0, signal: null });
});
