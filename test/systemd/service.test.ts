import { execFile } from 'node:child_process';
import { existsSync, statSync } from 'node:fs';
import { chmod, chown, cp, mkdir, readFile, rename, writeFile } from 'node:fs/promises';
import path from 'node:path';
import { promisify } from 'node:util';
import YAML from 'yaml';
import { ROOT, cleanEnv, freePort, spawnModelferry, type LogLine } from '../helpers/daemon-process.ts';
import { deviceKey, provenToken } from '../helpers/device-keys.ts';
import { fetchWithToken, tempDir } from '../helpers/harness.ts';
import { fixture } from '../helpers/programs.ts';
import { releaseCopy } from '../helpers/release-copy.ts';
import { testNeeding } from '../helpers/requirements.ts';

// Live config reload as an operator who installed the unit gets it, without a running
// systemd (nspawn.test.ts boots one, in a container): this runs what the unit would run,
// as it would: systemd/install.sh into a root prefix that is an OS image
// (it creates the service's user there with systemd-sysusers), then the installed unit's
// ExecStart word for word (paths under the prefix), as the unit's User= and Group= with no
// other groups, its UMask= and Environment=, and STATE_DIRECTORY / CACHE_DIRECTORY set to
// folders that user owns, as systemd makes them. The operator then edits the config in place,
// with `sed -i` (which replaces the file by rename) and by renaming a new file over it, and
// runs the unit's ExecReload=, also during start-up; every change applies to the same
// process while a long poll stays held. The sandbox (namespaces, seccomp) needs the real
// systemd: nspawn.test.ts.

const run = promisify(execFile);

function unitSettings(unit: string, key: string): string[] {
  return unit.split('\n').filter((line) => line.startsWith(`${key}=`)).map((line) => line.slice(key.length + 1));
}

// Root, to become the service's user (setpriv, from util-linux).
testNeeding('root', 'systemd-sysusers')('the installed unit, run as its user: config edits in place and by rename, and systemctl reload, apply to the running gateway; held long polls stay', async (t) => {
  const work = await tempDir(t, 'modelferry-service-');
  await chmod(work, 0o755);
  const root = path.join(work, 'root');
  await mkdir(path.join(root, 'etc'), { recursive: true });
  for (const file of ['passwd', 'group']) await cp(`/etc/${file}`, path.join(root, 'etc', file));
  // The production dependencies already in place with the same lock file, as after an
  // earlier install: install.sh keeps them (no npm, no network). test/ops/install.test.ts
  // covers the npm part.
  const opt = path.join(root, 'opt', 'modelferry');
  await mkdir(path.dirname(opt), { recursive: true });
  await rename(await releaseCopy(path.join(work, 'seed')), opt);
  await cp(path.join(ROOT, 'package-lock.json'), path.join(opt, 'package-lock.json'));
  const { stdout: installed } = await run('bash', [path.join(ROOT, 'systemd', 'install.sh'), '--root', root, '--no-start'], { env: cleanEnv() });
  t.regex(installed, /dependencies unchanged: reusing the installed ones/);

  const unit = await readFile(path.join(root, 'etc/systemd/system/modelferry.service'), 'utf8');
  const [user] = unitSettings(unit, 'User');
  const entry = (await readFile(path.join(root, 'etc/passwd'), 'utf8')).split('\n').find((line) => line.startsWith(`${user}:`))!.split(':');
  const [serviceUid, serviceGid, home] = [Number(entry[2]), Number(entry[3]), entry[5]!];
  t.is(unitSettings(unit, 'Group')[0], user);
  const asService = ['/usr/bin/setpriv', `--reuid=${serviceUid}`, `--regid=${serviceGid}`, '--clear-groups', '--'];
  const underRoot = (word: string) => /^\/(opt|etc|var)\/modelferry(\/|$)/.test(word) ? root + word : word;

  // The folders systemd makes for StateDirectory= and CacheDirectory=, the user's own.
  const folders: Record<string, string> = {};
  for (const [key, variable, base] of [['StateDirectory', 'STATE_DIRECTORY', '/var/lib'], ['CacheDirectory', 'CACHE_DIRECTORY', '/var/cache']] as const) {
    const folder = path.join(root, base, unitSettings(unit, key)[0]!);
    await mkdir(path.dirname(folder), { recursive: true });
    await mkdir(folder);
    await chown(folder, serviceUid, serviceGid);
    await chmod(folder, Number.parseInt(unitSettings(unit, `${key}Mode`)[0] ?? '0755', 8));
    folders[variable] = folder;
  }

  // The operator's edits to the installed config: loopback only, no mDNS (tests send nothing
  // beyond loopback). Written in place, as root, like any edit.
  const configFile = path.join(root, 'etc/modelferry/config.yaml');
  const installedConfig = YAML.parse(await readFile(configFile, 'utf8')) as { auth: { tokens: Array<{ name: string; token: string }> } };
  const tokenOf = (name: string) => installedConfig.auth.tokens.find((entry) => entry.name === name)!.token;
  const [jenkins, ops] = [tokenOf('jenkins'), tokenOf('ops')];
  const port = await freePort();
  await writeFile(configFile, YAML.stringify({ ...installedConfig, http: { host: '127.0.0.1', port }, mdns: { enabled: false } }));
  const stamp = (file: string) => { const s = statSync(file); return { mode: (s.mode & 0o7777).toString(8), uid: s.uid, gid: s.gid }; };
  t.deepEqual(stamp(configFile), { mode: '640', uid: 0, gid: serviceGid });
  t.deepEqual(stamp(path.dirname(configFile)), { mode: '2750', uid: 0, gid: serviceGid });

  // ExecStart= word for word ($VARIABLES are not used in it), under the unit's UMask=.
  const execStart = unitSettings(unit, 'ExecStart')[0]!.split(' ').map(underRoot);
  t.deepEqual(execStart.slice(2), ['serve', '--config', configFile]);
  if (!existsSync(execStart[0]!)) execStart[0] = process.execPath;
  const environment = Object.fromEntries(unitSettings(unit, 'Environment').map((text) => [text.slice(0, text.indexOf('=')), text.slice(text.indexOf('=') + 1)]));
  const daemon = spawnModelferry(t, [], {
    prefix: ['/bin/sh', '-c', `umask ${unitSettings(unit, 'UMask')[0]} && exec "$@"`, 'sh', ...asService],
    command: execStart,
    cwd: '/',
    env: { ...environment, ...folders, HOME: home, USER: user, LOGNAME: user, SHELL: '/usr/sbin/nologin' },
  });
  // ExecReload=, as the service's user with $MAINPID filled in.
  const reload = () => run(asService[0]!, [...asService.slice(1), ...unitSettings(unit, 'ExecReload')[0]!.replace('$MAINPID', String(daemon.child.pid)).split(' ')]);
  const after = (from: number, msg: string, trigger: string) => daemon.waitForLog((line: LogLine) => Number(line.time) >= from && line.trigger === trigger && line.msg?.startsWith(msg) === true);

  // A `systemctl reload` while the gateway starts does not stop it: it is done once it is up.
  let from = Date.now();
  await daemon.waitForLog('configuration loaded');
  await reload();
  await daemon.waitForLog('gateway ready');
  await after(from, 'configuration unchanged', 'SIGHUP');
  t.true(daemon.running);
  const pid = daemon.child.pid;
  daemon.url = `http://127.0.0.1:${port}`;

  // A model, assigned, and a device holding a long poll on it.
  const call = (pathname: string, token: string, init: RequestInit = {}) => fetchWithToken(daemon.url, pathname, { ...init, token });
  t.is((await call('/v1/models/kws/1', ops, { method: 'PUT', body: fixture('add.pte') })).status, 201);
  const assign = (version: string, token: string) => call('/v1/assignments/default', token, { method: 'PUT', headers: { 'Content-Type': 'application/json' }, body: JSON.stringify({ model: 'kws', version }) });
  t.is((await assign('1', ops)).status, 201);
  // The installed config pins device keys: the device proves its own for a token.
  const device = deviceKey('02:00:00:00:12:01');
  const deviceAuth = { Authorization: `Bearer ${await provenToken(daemon.url, device)}` };
  const first = await daemon.fetch(`/v1/devices/${device.mac}/model`, { headers: deviceAuth });
  t.is(first.status, 200);
  let settled = false;
  const held = daemon.fetch(`/v1/devices/${device.mac}/model?wait=120`, { headers: { ...deviceAuth, 'If-None-Match': first.headers.get('etag')! } }).finally(() => { settled = true; });

  // 1. In place (an editor that rewrites the file): the ops token is rotated.
  const ops2 = `rotated-ops-${'a'.repeat(40)}`;
  from = Date.now();
  await writeFile(configFile, (await readFile(configFile, 'utf8')).replace(ops, ops2));
  t.deepEqual((await after(from, 'configuration reloaded', 'file')).keys, ['auth.tokens']);
  t.is((await call('/v1/models', ops)).status, 401);
  t.is((await call('/v1/models', ops2)).status, 200);

  // 2. `sed -i`: a new file renamed over the old one (its mode and owner copied by sed).
  const jenkins2 = `rotated-jenkins-${'b'.repeat(40)}`;
  const inode = statSync(configFile).ino;
  from = Date.now();
  await run('sed', ['-i', `s/${jenkins}/${jenkins2}/`, configFile]);
  t.not(statSync(configFile).ino, inode, 'sed -i replaced the file');
  t.deepEqual((await after(from, 'configuration reloaded', 'file')).keys, ['auth.tokens']);
  t.is((await call('/v1/models/kws/2', jenkins, { method: 'PUT', body: fixture('mul.pte') })).status, 401);
  t.is((await call('/v1/models/kws/2', jenkins2, { method: 'PUT', body: fixture('mul.pte') })).status, 201);

  // 3. A new file written by a tool with its own umask (0644, root's group) and renamed into
  // place: the set-group-id folder gives it the service's group, so the service reads it,
  // and the folder's 2750 still keeps everyone else from reading it.
  const fresh = `${configFile}.new`;
  const text = await readFile(configFile, 'utf8');
  t.regex(text, /maxBytes: 16 MiB/);
  await writeFile(fresh, text.replace('maxBytes: 16 MiB', 'maxBytes: 64 KiB'), { mode: 0o644 });
  from = Date.now();
  await rename(fresh, configFile);
  t.deepEqual(stamp(configFile), { mode: '644', uid: 0, gid: serviceGid });
  t.deepEqual((await after(from, 'configuration reloaded', 'file')).keys, ['artifacts.maxBytes']);
  t.is((await call('/v1/models/big/1', ops2, { method: 'PUT', body: Buffer.alloc(100 * 1024) })).status, 413);
  const nobody = await run('/usr/bin/setpriv', ['--reuid=65534', '--regid=65534', '--clear-groups', 'cat', configFile]).then(() => 'read', (error: { stderr: string }) => error.stderr);
  t.regex(nobody, /Permission denied/, 'a user outside the group cannot read the tokens');
  const serviceWrites = await run(asService[0]!, [...asService.slice(1), '/bin/sh', '-c', `: >> ${configFile}`]).then(() => 'wrote', (error: { stderr: string }) => error.stderr);
  t.regex(serviceWrites, /Permission denied/, 'the service cannot change its own config');

  // 4. systemctl reload once it runs: the file is read again.
  from = Date.now();
  await reload();
  await after(from, 'configuration unchanged', 'SIGHUP');

  t.true(daemon.running);
  t.is(daemon.child.pid, pid);
  t.is(daemon.logs().filter((line) => line.msg === 'gateway ready').length, 1, 'never restarted');
  t.false(settled, 'the long poll is still held after four reloads');
  t.is((await assign('2', ops2)).status, 200);
  const answer = await held;
  t.is(answer.status, 200);
  t.like(await answer.json(), { model: { name: 'kws', version: '2' } });
  const logText = daemon.lines.join('\n');
  for (const secret of [ops, ops2, jenkins, jenkins2]) t.false(logText.includes(secret), 'no token in the log');
  t.deepEqual(daemon.logs().filter((line) => line.level >= 50), [], 'no errors');
  t.deepEqual(await daemon.stop(), { code: 0, signal: null });
});
