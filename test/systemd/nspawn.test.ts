import { execFile } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { copyFile, mkdtemp, readFile, rm, writeFile } from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import { promisify } from 'node:util';
import YAML from 'yaml';
import { ROOT, cleanEnv } from '../helpers/daemon-process.ts';
import { deviceKey, proofOf } from '../helpers/device-keys.ts';
import { until } from '../helpers/harness.ts';
import { Container, debianRootfs } from '../helpers/nspawn.ts';
import { ADD_SHA256, fixturePath } from '../helpers/programs.ts';
import { packedRelease } from '../helpers/release-copy.ts';
import { testNeeding } from '../helpers/requirements.ts';

// The unit under a real systemd: a Debian 12 container booted with systemd-nspawn
// (test/helpers/nspawn.ts: its root file system is built once with debootstrap and kept in
// ~/.cache/modelferry-tests, or $MODELFERRY_NSPAWN_CACHE; the container has only a loopback
// network). The release is packed with npm pack and installed into the container's root by
// systemd/install.sh --root, as onto a Pi's SD card, its production dependencies from
// npm's cache (--offline: the container has no network to fetch them). Then, inside, as an
// operator would: systemctl enable --now, the journal, reload, a bad edit, a SIGKILL, and
// systemd-analyze security on the live unit. dist/ must be built (npm test builds it).

const test = testNeeding('nspawn');
const run = promisify(execFile);
const INSTALL = path.join(ROOT, 'systemd', 'install.sh');
/** The same bar as the offline check of the unit file (unit.test.ts). */
const MAX_EXPOSURE = 1.5;

let work = '';
let container: Container;
let configFile = '';
let tokens: Record<string, string> = {};

interface JournalEntry { PRIORITY: string; MESSAGE: string; _COMM?: string; __REALTIME_TIMESTAMP: string }
interface GatewayLine { level: number; msg: string; trigger?: string; keys?: string[] }

test.before(async (t) => {
  // The first run builds the root file system (debootstrap, from Debian's package mirror).
  t.timeout(20 * 60_000);
  const started = Date.now();
  const rootfs = await debianRootfs((line) => t.log(line));
  const built = Date.now();
  work = await mkdtemp(path.join(os.tmpdir(), 'modelferry-nspawn-'));
  container = new Container(rootfs, work);
  await container.mount();
  const tarball = await packedRelease(work);
  await run('bash', [INSTALL, '--root', container.root, '--tarball', tarball, '--offline'], { env: cleanEnv({ NODE: process.execPath }) });
  configFile = path.join(container.root, 'etc/modelferry/config.yaml');
  const config = YAML.parse(await readFile(configFile, 'utf8')) as { auth: { tokens: Array<{ name: string; token: string }> } };
  tokens = Object.fromEntries(config.auth.tokens.map(({ name, token }) => [name, token]));
  await copyFile(fixturePath('add.pte'), path.join(container.root, 'var/tmp/add.pte'));
  const installed = Date.now();
  await container.boot();
  t.log(`root file system ${Math.round((built - started) / 1000)} s, pack and install ${Math.round((installed - built) / 1000)} s, boot ${Math.round((Date.now() - installed) / 1000)} s`);
});

test.after.always(async () => {
  await container?.stop();
  if (work) await rm(work, { recursive: true, force: true });
});

/** `systemctl show` properties of the service. */
async function unitState(...names: string[]): Promise<Record<string, string>> {
  const { stdout } = await container.exec('systemctl', 'show', ...names.flatMap((name) => ['--property', name]), 'modelferry.service');
  return Object.fromEntries(stdout.trim().split('\n').map((line) => [line.slice(0, line.indexOf('=')), line.slice(line.indexOf('=') + 1)]));
}

/** The service's journal from `sinceMs` on, optionally at `priority` or worse. */
async function journal(sinceMs = 0, priority?: string): Promise<JournalEntry[]> {
  const { stdout } = await container.exec('journalctl', '--unit', 'modelferry.service', '--output', 'json', '--no-pager', ...(priority ? ['--priority', priority] : []));
  return stdout.trim().split('\n').filter(Boolean).map((line) => JSON.parse(line) as JournalEntry)
    .filter((entry) => Number(entry.__REALTIME_TIMESTAMP) / 1000 >= sinceMs);
}

/** The gateway's own lines (JSON from node) with their journal priority. */
const gatewayLines = (entries: JournalEntry[]) => entries.filter((entry) => entry._COMM === 'node' && entry.MESSAGE.startsWith('{'))
  .map((entry) => ({ priority: entry.PRIORITY, line: JSON.parse(entry.MESSAGE) as GatewayLine }));

/** An HTTP request from inside the container (curl), answering status and body. */
async function request(pathname: string, token?: string, json?: unknown): Promise<{ status: number; body: string }> {
  const post = json === undefined ? [] : ['-X', 'POST', '-H', 'Content-Type: application/json', '--data-binary', JSON.stringify(json)];
  const { stdout } = await container.exec('curl', '-s', '-w', '\n%{http_code}', ...post, ...(token ? ['-H', `Authorization: Bearer ${token}`] : []), `http://127.0.0.1:8080${pathname}`);
  const cut = stdout.lastIndexOf('\n');
  return { status: Number(stdout.slice(cut + 1)), body: stdout.slice(0, cut) };
}

async function writeConfig(edit: (config: { auth: { tokens: Array<{ name: string; token: string; scopes: string[] }> } }) => void): Promise<void> {
  const config = YAML.parse(await readFile(configFile, 'utf8'));
  edit(config);
  // In place, as an editor does: the file keeps its owner and mode.
  await writeFile(configFile, YAML.stringify(config));
}

test.serial('systemctl enable --now starts the sandboxed unit as its own user, and it answers /healthz', async (t) => {
  await container.exec('systemctl', 'enable', '--now', 'modelferry.service');
  const health = await until('the gateway to answer /healthz', async () => {
    const answer = await request('/healthz').catch(() => undefined);
    return answer?.status === 200 ? JSON.parse(answer.body) as { status: string } : undefined;
  });
  t.is(health.status, 'ok');
  const state = await unitState('ActiveState', 'SubState', 'UnitFileState', 'MainPID', 'NRestarts');
  t.like(state, { ActiveState: 'active', SubState: 'running', UnitFileState: 'enabled', NRestarts: '0' });
  t.is((await container.exec('ps', '-o', 'user=', '-p', state.MainPID!)).stdout.trim(), 'modelferry');
  t.is((await request('/v1/models', tokens.ops)).status, 200, 'the tokens install.sh wrote work');
});

test.serial('the journal keeps the gateway\'s priorities: its start-up warning under -p warning, its info lines at info', async (t) => {
  // The container's network has only loopback, so the mDNS advertisement warns at start.
  const warnings = await until('the start-up warning in the journal', async () => {
    const lines = gatewayLines(await journal(0, 'warning'));
    return lines.some(({ line }) => line.msg.startsWith('mDNS: no address of this machine')) ? lines : undefined;
  });
  t.true(warnings.every(({ line }) => line.level >= 40), 'journalctl -p warning shows no info line');
  const lines = gatewayLines(await journal());
  t.like(lines.find(({ line }) => line.msg === 'gateway ready'), { priority: '6' });
  t.like(lines.find(({ line }) => line.msg.startsWith('mDNS: no address')), { priority: '4' });
  // Every line at the priority of its level: pino's 30 info, 40 warn, 50 error.
  const syslog: Record<number, string> = { 20: '7', 30: '6', 40: '4', 50: '3', 60: '2' };
  t.deepEqual(lines.filter(({ priority, line }) => syslog[line.level] !== priority), []);
  t.true(lines.length >= 4, `${lines.length} lines`);
});

test.serial('systemctl reload applies a config edit in the same process', async (t) => {
  const { MainPID: pid } = await unitState('MainPID');
  const added = randomBytes(24).toString('hex');
  t.is((await request('/v1/models', added)).status, 401);
  const since = Date.now();
  await writeConfig((config) => { config.auth.tokens.push({ name: 'added', token: added, scopes: ['push'] }); });
  await container.exec('systemctl', 'reload', 'modelferry.service');
  // The file watch may see the edit first; the SIGHUP from reload is then "unchanged".
  const reloads = await until('the reload in the journal', async () => {
    const lines = gatewayLines(await journal(since)).map(({ line }) => line);
    return lines.some((line) => line.trigger === 'SIGHUP') && lines.some((line) => line.msg.startsWith('configuration reloaded')) ? lines : undefined;
  });
  t.log(`applied by: ${reloads.find((line) => line.msg.startsWith('configuration reloaded'))!.trigger}`);
  t.deepEqual(reloads.find((line) => line.msg.startsWith('configuration reloaded'))!.keys, ['auth.tokens']);
  t.is((await request('/v1/models', added)).status, 200, 'the new token works');
  t.like(await unitState('MainPID', 'ActiveState', 'NRestarts'), { MainPID: pid, ActiveState: 'active', NRestarts: '0' });
});

test.serial('a bad edit is refused with a warning in the journal, and the gateway keeps running on its config', async (t) => {
  const { MainPID: pid } = await unitState('MainPID');
  const good = await readFile(configFile, 'utf8');
  const since = Date.now();
  await writeConfig((config) => { config.auth.tokens[0]!.token = 'short'; });
  await container.exec('systemctl', 'reload', 'modelferry.service');
  const refusals = await until('the refusal in the journal', async () => {
    const lines = gatewayLines(await journal(since, 'warning'));
    return lines.some(({ line }) => line.trigger === 'SIGHUP' && line.msg.startsWith('configuration change refused')) ? lines : undefined;
  });
  t.regex(refusals[0]!.line.msg, /^configuration change refused \(auth\.tokens\); the running configuration stays: .*at least 16 characters/);
  t.true(['3', '4'].includes(refusals[0]!.priority));
  t.like(await unitState('MainPID', 'ActiveState', 'NRestarts'), { MainPID: pid, ActiveState: 'active', NRestarts: '0' });
  t.is((await request('/v1/models', tokens.jenkins)).status, 200, 'the token the bad edit broke still works');

  // Put the file back: the running configuration already is that.
  const restored = Date.now();
  await writeFile(configFile, good);
  await container.exec('systemctl', 'reload', 'modelferry.service');
  await until('the reload of the good file', async () => (gatewayLines(await journal(restored)).some(({ line }) => line.trigger === 'SIGHUP' && line.msg === 'configuration unchanged') ? true : undefined));
});

test.serial('systemd restarts the gateway after a SIGKILL, and a model pushed and assigned before is still served', async (t) => {
  // The installed command, with the installer's jenkins token (push and assign), as the
  // README's Jenkins recipe runs it.
  const pushed = await container.execWith({ MODELFERRY_TOKEN: tokens.jenkins! }, 'modelferry', 'push', '/var/tmp/add.pte', '--name', 'kws', '--version', '1', '--assign', 'default');
  t.regex(pushed.stdout, /^stored kws@1 .*\nassigned kws@1 to default$/m);
  const { MainPID: pid } = await unitState('MainPID');

  await container.exec('systemctl', 'kill', '--signal', 'KILL', 'modelferry.service');
  const after = await until('systemd to restart the gateway', async () => {
    const state = await unitState('MainPID', 'ActiveState', 'NRestarts');
    if (state.MainPID === pid || state.MainPID === '0' || state.ActiveState !== 'active') return undefined;
    return (await request('/healthz').catch(() => undefined))?.status === 200 ? state : undefined;
  });
  t.is(after.NRestarts, '1');
  // The installer's config pins device keys: a device proves its own key for a token first.
  const device = deviceKey('02:00:00:00:00:01');
  t.is((await request(`/v1/devices/${device.mac}/model`)).status, 401);
  const { challenge } = JSON.parse((await request(`/v1/devices/${device.mac}/challenge`, undefined, {})).body) as { challenge: string };
  const { token } = JSON.parse((await request(`/v1/devices/${device.mac}/token`, undefined, proofOf(device, challenge))).body) as { token: string };
  const answer = await request(`/v1/devices/${device.mac}/model`, token);
  t.is(answer.status, 200);
  t.like(JSON.parse(answer.body), { model: { name: 'kws', version: '1', sha256: ADD_SHA256 } });
  await container.exec('curl', '-sf', '-H', `Authorization: Bearer ${token}`, '-o', '/var/tmp/downloaded.pte', `http://127.0.0.1:8080/v1/artifacts/${ADD_SHA256}`);
  t.is((await container.exec('sha256sum', '/var/tmp/downloaded.pte')).stdout.split(' ')[0], ADD_SHA256);
});

test.serial(`systemd-analyze security rates the live unit ${MAX_EXPOSURE} or lower`, async (t) => {
  const { stdout } = await container.exec('systemd-analyze', 'security', '--no-pager', 'modelferry.service');
  const score = Number(/Overall exposure level for modelferry\.service: (\d+\.\d+)/.exec(stdout)?.[1]);
  t.log(`live exposure ${score}`);
  t.true(score <= MAX_EXPOSURE, `exposure ${score} > ${MAX_EXPOSURE}:\n${stdout.split('\n').filter((line) => line.includes('✗')).join('\n')}`);
});
