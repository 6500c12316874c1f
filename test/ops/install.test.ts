import { execFile, spawn } from 'node:child_process';
import { existsSync } from 'node:fs';
import { chmod, cp, lstat, mkdir, readFile, readdir, writeFile } from 'node:fs/promises';
import path from 'node:path';
import { promisify } from 'node:util';
import test from 'ava';
import YAML from 'yaml';
import { loadConfig } from '../../daemon/config/load.ts';
import { ROOT, cleanEnv, freePort } from '../helpers/daemon-process.ts';
import { tempDir } from '../helpers/harness.ts';
import { packedRelease } from '../helpers/release-copy.ts';

// systemd/install.sh run for real into a temporary root (--root, DESTDIR-style): the npm
// pack release, installed with production dependencies from npm's cache (--offline: no
// network in tests; `npm ci` on this machine filled the cache), then upgraded and removed.
// Every file it writes is checked with its mode and owner. dist/ must be built (npm test
// builds it first).

const run = promisify(execFile);
const INSTALL = path.join(ROOT, 'systemd', 'install.sh');
const uid = process.getuid!();
const gid = process.getgid!();

interface Entry { path: string; mode: number; uid: number; gid: number; type: 'file' | 'dir' | 'link' }

async function walk(root: string, under = ''): Promise<Entry[]> {
  const entries: Entry[] = [];
  for (const name of (await readdir(path.join(root, under))).sort()) {
    const relative = path.join(under, name);
    const stat = await lstat(path.join(root, relative));
    const type = stat.isSymbolicLink() ? 'link' : stat.isDirectory() ? 'dir' : 'file';
    entries.push({ path: relative, mode: stat.mode & 0o7777, uid: stat.uid, gid: stat.gid, type });
    if (type === 'dir') entries.push(...await walk(root, relative));
  }
  return entries;
}

function statMode(stat: { mode: number; gid: number }): { mode: string; gid: number } {
  return { mode: (stat.mode & 0o7777).toString(8), gid: stat.gid };
}

function unitEnvironment(unit: string): Record<string, string> {
  return Object.fromEntries([...unit.matchAll(/^Environment=([A-Z_]+)=(.*)$/gm)].map((m) => [m[1]!, m[2]!]));
}

async function install(root: string, ...args: string[]): Promise<string> {
  const { stdout, stderr } = await run('bash', [INSTALL, '--root', root, ...args], { env: cleanEnv() });
  return stdout + stderr;
}

test('install.sh installs the release into a root prefix: exactly these files, modes and owners; upgrade keeps state and config; uninstall keeps them too', async (t) => {
  t.true(existsSync(path.join(ROOT, 'dist', 'cli', 'main.js')), 'dist/ is not built: run npm run build (npm test does)');
  const work = await tempDir(t, 'modelferry-install-');
  const tarball = await packedRelease(work);
  const root = path.join(work, 'root');
  await mkdir(root);
  // As root, the prefix is an OS image with a user database (this machine's), to which
  // install.sh adds the service's user as it would on a Pi; as anyone else it cannot.
  if (uid === 0) {
    await mkdir(path.join(root, 'etc'));
    for (const file of ['passwd', 'group']) await cp(`/etc/${file}`, path.join(root, 'etc', file));
  }

  const first = await install(root, '--tarball', tarball, '--offline');
  t.regex(first, /wrote .*\/etc\/modelferry\/config\.yaml with new tokens/);
  // The service's group: it may read the config, and no one else but root.
  let serviceGid = gid;
  if (uid === 0) {
    const user = /^modelferry:x:(\d+):(\d+):[^:]*:\/var\/lib\/modelferry:\/usr\/sbin\/nologin$/m.exec(await readFile(path.join(root, 'etc/passwd'), 'utf8'));
    t.truthy(user, 'install.sh created the user modelferry in the image');
    t.true(Number(user![1]) > 0 && Number(user![1]) < 1000, 'a system user');
    t.regex(await readFile(path.join(root, 'etc/group'), 'utf8'), new RegExp(`^modelferry:x:${user![2]}:$`, 'm'));
    serviceGid = Number(user![2]);
  } else {
    t.regex(first, /skipped \(root prefix without etc\/passwd, or not root\): creating the user modelferry/);
  }
  t.regex(first, /skipped \(root prefix\): systemctl enable modelferry\.service/);
  t.regex(first, /installed modelferry \d+\.\d+\.\d+/);

  const entries = await walk(root);
  const image = (p: string) => /^etc\/(passwd|group|shadow|gshadow|\.pwd\.lock)-?$/.test(p);
  const outside = entries.filter((e) => !e.path.startsWith('opt/modelferry/') && !image(e.path));
  t.deepEqual(outside.map((e) => [e.path, e.type, e.mode.toString(8)]), [
    ['etc', 'dir', '755'],
    ['etc/modelferry', 'dir', '2750'],
    ['etc/modelferry/config.yaml', 'file', '640'],
    ['etc/systemd', 'dir', '755'],
    ['etc/systemd/system', 'dir', '755'],
    ['etc/systemd/system/modelferry.service', 'file', '644'],
    ['opt', 'dir', '755'],
    ['opt/modelferry', 'dir', '755'],
    ['usr', 'dir', '755'],
    ['usr/local', 'dir', '755'],
    ['usr/local/bin', 'dir', '755'],
    ['usr/local/bin/modelferry', 'file', '755'],
    ['usr/local/lib', 'dir', '755'],
    ['usr/local/lib/sysusers.d', 'dir', '755'],
    ['usr/local/lib/sysusers.d/modelferry.conf', 'file', '644'],
  ]);
  // The release itself: what npm pack shipped (the lock under its usual name) plus node_modules.
  const top = entries.filter((e) => /^opt\/modelferry\/[^/]+$/.test(e.path)).map((e) => e.path.slice('opt/modelferry/'.length));
  t.deepEqual(top, ['README.md', 'config', 'dist', 'docs', 'node_modules', 'package-lock.json', 'package.json', 'systemd']);
  for (const entry of entries) {
    if (image(entry.path)) continue;
    const secret = entry.path.startsWith('etc/modelferry');
    t.is(entry.uid, uid, `${entry.path} owner`);
    t.is(entry.gid, secret ? serviceGid : gid, `${entry.path} group`);
    if (entry.type === 'link') continue; // a symbolic link's own mode means nothing
    t.is(entry.mode & 0o022, 0, `${entry.path} is writable by group or others (${entry.mode.toString(8)})`);
    if (secret) t.is(entry.mode & 0o007, 0, `${entry.path} holds tokens: nothing for others`);
    else if (entry.type === 'dir') t.is(entry.mode & 0o755, 0o755, `${entry.path} must be readable and searchable`);
    if (entry.type === 'file' && !entry.path.startsWith('etc/modelferry/')) t.is(entry.mode & 0o444, 0o444, `${entry.path} must be readable`);
  }
  t.is(await readFile(path.join(root, 'etc/systemd/system/modelferry.service'), 'utf8'), await readFile(path.join(ROOT, 'systemd/modelferry.service'), 'utf8'));
  t.regex(await readFile(path.join(root, 'usr/local/bin/modelferry'), 'utf8'), /^exec \/usr\/bin\/node \/opt\/modelferry\/dist\/cli\/main\.js "\$@"$/m);
  t.is(await readFile(path.join(root, 'usr/local/lib/sysusers.d/modelferry.conf'), 'utf8'), await readFile(path.join(ROOT, 'systemd/modelferry.sysusers'), 'utf8'));

  // Production dependencies only.
  const modules = new Set(await readdir(path.join(root, 'opt/modelferry/node_modules')));
  const pkg = JSON.parse(await readFile(path.join(ROOT, 'package.json'), 'utf8')) as { dependencies: Record<string, string>; devDependencies: Record<string, string> };
  for (const name of Object.keys(pkg.dependencies)) t.true(modules.has(name.split('/')[0]!), `${name} is installed`);
  for (const name of Object.keys(pkg.devDependencies)) t.false(existsSync(path.join(root, 'opt/modelferry/node_modules', name)), `devDependency ${name} is installed`);

  // The config: the example with fresh tokens, valid as the service will load it.
  const configFile = path.join(root, 'etc/modelferry/config.yaml');
  const configText = await readFile(configFile, 'utf8');
  t.false(/replace-with-a-long-random-secret/.test(configText), 'every token placeholder is filled');
  // What the file says about itself is what the installer made it.
  t.regex(configText, /keep it root:modelferry mode 0640, as\n# the installer makes it/);
  t.notRegex(configText, /0600/);
  const { config } = loadConfig({ file: configFile, env: { STATE_DIRECTORY: '/var/lib/modelferry', CACHE_DIRECTORY: '/var/cache/modelferry' }, flags: {} });
  const tokens = config.auth.tokens.map((token) => token.token);
  t.true(tokens.length >= 2);
  for (const token of tokens) t.regex(token, /^[0-9a-f]{48}$/);
  t.is(new Set(tokens).size, tokens.length);

  // The installed tree runs on plain node with only its production dependencies.
  const dir = path.join(work, 'run');
  await mkdir(dir);
  const port = await freePort();
  const runConfig = path.join(dir, 'config.yaml');
  const tlsPort = await freePort();
  const example = YAML.parse(configText) as Record<string, Record<string, unknown>>;
  await writeFile(runConfig, YAML.stringify({ ...example, http: { host: '127.0.0.1', port }, tls: { ...example.tls, port: tlsPort }, mdns: { enabled: false } }));
  const child = spawn(process.execPath, [path.join(root, 'opt/modelferry/dist/cli/main.js'), 'serve', '--config', runConfig], {
    // The environment the unit gives it (NODE_OPTIONS, NODE_ENV), as systemd would.
    cwd: dir, env: cleanEnv({ ...unitEnvironment(await readFile(path.join(root, 'etc/systemd/system/modelferry.service'), 'utf8')), STATE_DIRECTORY: path.join(dir, 'state'), CACHE_DIRECTORY: path.join(dir, 'cache') }), stdio: ['ignore', 'pipe', 'pipe'],
  });
  const exited = new Promise<number | null>((resolve) => child.once('exit', resolve));
  t.teardown(() => { if (child.exitCode === null) child.kill('SIGKILL'); });
  let health: Response | undefined;
  for (let i = 0; i < 400 && !health && child.exitCode === null; i++) {
    health = await fetch(`http://127.0.0.1:${port}/healthz`).catch(() => undefined);
    if (!health) await new Promise((resolve) => setTimeout(resolve, 50));
  }
  t.is(health?.status, 200);
  t.like(await health!.json(), { tls: { port: tlsPort } }, 'HTTPS is on, with the certificate the gateway made');
  const models = await fetch(`http://127.0.0.1:${port}/v1/models`, { headers: { Authorization: `Bearer ${tokens[0]}` } });
  t.is(models.status, 200, 'the generated tokens work');
  const rss = /VmRSS:\s+(\d+) kB/.exec(await readFile(`/proc/${child.pid}/status`, 'utf8'))?.[1];
  t.log(`installed service, idle: RSS ${Math.round(Number(rss) / 1024)} MiB`);
  child.kill('SIGTERM');
  t.is(await exited, 0);

  // Again, over the layout of releases that gave the config as a credential (root only):
  // the config is never overwritten, and the service's group is given read access.
  await chmod(configFile, 0o600);
  await chmod(path.dirname(configFile), 0o755);
  const second = await install(root, '--tarball', tarball, '--offline');
  t.regex(second, /kept .*\/etc\/modelferry\/config\.yaml/);
  t.is(await readFile(configFile, 'utf8'), configText);
  t.like(statMode(await lstat(configFile)), { mode: '640', gid: serviceGid });
  t.like(statMode(await lstat(path.dirname(configFile))), { mode: '2750', gid: serviceGid });

  // Upgrade: new code, same dependencies reused (no npm), state and config untouched.
  const state = path.join(root, 'var/lib/private/modelferry');
  await mkdir(state, { recursive: true });
  await writeFile(path.join(state, 'CURRENT'), 'MANIFEST-000001\n');
  await writeFile(path.join(root, 'opt/modelferry/dist/left-by-the-old-release.js'), '');
  const upgraded = await install(root, '--upgrade', '--tarball', tarball);
  t.regex(upgraded, /dependencies unchanged: reusing the installed ones/);
  t.regex(upgraded, /skipped \(root prefix\): systemctl restart modelferry\.service/);
  t.regex(upgraded, /upgraded modelferry \S+ -> \S+/);
  t.false(existsSync(path.join(root, 'opt/modelferry/dist/left-by-the-old-release.js')), 'the code is replaced, not merged');
  t.true(existsSync(path.join(root, 'opt/modelferry/node_modules/koa')));
  t.is(await readFile(path.join(state, 'CURRENT'), 'utf8'), 'MANIFEST-000001\n');
  t.is(await readFile(configFile, 'utf8'), configText);
  t.deepEqual((await readdir(path.join(root, 'opt'))), ['modelferry'], 'no staging or old release left');

  // Uninstall: code, unit and command go; config and state stay.
  const removed = await install(root, '--uninstall');
  t.true(removed.includes(`kept: ${root}/etc/modelferry (config and tokens), ${root}/var/lib/modelferry`), removed);
  t.deepEqual((await walk(root)).map((e) => e.path).filter((p) => p !== 'var' && !p.startsWith('var/') && !image(p)), [
    'etc', 'etc/modelferry', 'etc/modelferry/config.yaml', 'etc/systemd', 'etc/systemd/system', 'opt', 'usr', 'usr/local', 'usr/local/bin', 'usr/local/lib', 'usr/local/lib/sysusers.d',
  ]);
  t.is(await readFile(configFile, 'utf8'), configText);
  t.true(existsSync(path.join(state, 'CURRENT')));

  // What it says to run to remove the rest names the prefix's paths and user database,
  // never this machine's: run as printed (less sudo), it empties the prefix and only it.
  const removeAll = /to remove those too: (.*)$/m.exec(removed)?.[1];
  t.truthy(removeAll, removed);
  const [rm, userdel] = removeAll!.split(' && ');
  const rmWords = rm!.split(' ');
  t.deepEqual(rmWords.slice(0, 3), ['sudo', 'rm', '-rf']);
  t.deepEqual(rmWords.slice(3), ['etc/modelferry', 'var/lib/private/modelferry', 'var/lib/modelferry', 'var/cache/private/modelferry', 'var/cache/modelferry'].map((p) => path.join(root, p)));
  t.is(userdel, `sudo userdel --root ${root} modelferry`);
  const hostPasswd = await readFile('/etc/passwd', 'utf8');
  await run('sh', ['-c', (uid === 0 ? removeAll! : rm!).replaceAll('sudo ', '')]);
  t.deepEqual((await walk(root)).map((e) => e.path).filter((p) => p.includes('modelferry')), [], 'nothing of modelferry is left in the prefix');
  if (uid === 0) t.notRegex(await readFile(path.join(root, 'etc/passwd'), 'utf8'), /^modelferry:/m, 'the user is removed from the image');
  t.is(await readFile('/etc/passwd', 'utf8'), hostPasswd, "this machine's users are untouched");
});

test('install.sh says what it needs: an old Node, a missing release, no release to upgrade', async (t) => {
  const work = await tempDir(t, 'modelferry-install-');
  const fakeNode = path.join(work, 'node');
  await writeFile(fakeNode, '#!/bin/sh\ncase "$1" in -p) echo 18.19.0 ;; *) exit 1 ;; esac\n', { mode: 0o755 });
  const fail = async (args: string[], env: NodeJS.ProcessEnv = {}) => {
    const error = await run('bash', [INSTALL, '--root', work, ...args], { env: cleanEnv(env) }).then(() => undefined, (e: { code: number; stderr: string }) => e);
    t.truthy(error, `install.sh ${args.join(' ')} should fail`);
    t.is(error?.code, 1);
    return error?.stderr ?? '';
  };
  t.regex(await fail([], { NODE: fakeNode }), /Node\.js 18\.19\.0 .* is too old: modelferry needs >= 20\.19 \(22 LTS recommended\)/);
  t.regex(await fail([], { NODE: path.join(work, 'nowhere') }), /Node\.js >= 20\.19 is needed at .*nowhere/);
  t.regex(await fail(['--tarball', path.join(work, 'none.tgz')]), /no release tarball at/);
  t.regex(await fail(['--upgrade']), /nothing to upgrade .*: install first/);
  t.regex(await fail(['--bogus']), /unknown option --bogus/);
  t.deepEqual(await readdir(work), ['node'], 'nothing written');
});
