import { execFile } from 'node:child_process';
import { existsSync, readFileSync } from 'node:fs';
import { writeFile } from 'node:fs/promises';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { promisify } from 'node:util';
import test from 'ava';
import { testNeeding } from '../helpers/requirements.ts';
import { loadConfig } from '../../daemon/config/load.ts';
import { EXIT_CONFIG } from '../../daemon/cli/serve.ts';
import { tempDir } from '../helpers/harness.ts';

// The unit and the example config that systemd/install.sh puts on a Raspberry Pi.

const run = promisify(execFile);
const ROOT = fileURLToPath(new URL('../../', import.meta.url));
const UNIT = `${ROOT}systemd/modelferry.service`;
const unit = readFileSync(UNIT, 'utf8');
const settings = (key: string) => unit.split('\n').filter((line) => line.startsWith(`${key}=`)).map((line) => line.slice(key.length + 1));
const setting = (key: string) => settings(key).at(-1);

/** The bar for `systemd-analyze security`: lower is more locked down. */
const MAX_EXPOSURE = 1.5;

const analyzeTest = testNeeding('systemd-analyze');

analyzeTest('systemd-analyze verify accepts the unit file', async (t) => {
  const { stdout, stderr } = await run('systemd-analyze', ['verify', UNIT]);
  t.is(stderr.trim(), '');
  t.is(stdout.trim(), '');
});

analyzeTest(`systemd-analyze security rates the sandbox ${MAX_EXPOSURE} or lower`, async (t) => {
  // Exits non-zero when the score is above --threshold; the score is read from the text.
  const result = await run('systemd-analyze', ['security', '--offline=yes', '--no-pager', UNIT]).catch((error: { stdout: string }) => error);
  const match = /Overall exposure level for modelferry\.service: (\d+\.\d+)/.exec(result.stdout);
  t.truthy(match, result.stdout);
  const score = Number(match![1]);
  t.log(`exposure ${score}`);
  t.true(score <= MAX_EXPOSURE, `exposure ${score} > ${MAX_EXPOSURE}:\n${result.stdout.split('\n').filter((l) => l.includes('✗')).join('\n')}`);
});

test('the sandbox keeps what Node and the mDNS advertisement need', (t) => {
  // V8's JIT writes executable memory; mDNS lists interfaces over netlink.
  t.deepEqual(settings('MemoryDenyWriteExecute'), []);
  t.true(setting('RestrictAddressFamilies')!.split(/\s+/).includes('AF_NETLINK'));
  // A static user (see the next test), never root.
  t.deepEqual(settings('DynamicUser'), []);
  t.is(setting('User'), 'modelferry');
  t.is(setting('SyslogLevelPrefix'), 'yes');
  // Unprefixed lines come from stderr (start-up failures, crashes): errors.
  t.is(setting('SyslogLevel'), 'err');
});

test('the unit runs the compiled CLI on /etc/modelferry/config.yaml itself (not a credential: a copy no edit reaches), reload sends SIGHUP, state and cache from systemd', (t) => {
  const exec = setting('ExecStart') ?? '';
  const match = /^\/usr\/bin\/node \/opt\/modelferry\/(dist\/cli\/main\.js) serve --config \/etc\/modelferry\/config\.yaml$/.exec(exec);
  t.truthy(match, exec);
  // dist/ mirrors daemon/: the entry point is the compiled form of this source file.
  t.true(existsSync(`${ROOT}${match![1]!.replace(/^dist\//, 'daemon/').replace(/\.js$/, '.ts')}`));
  t.is(setting('Type'), 'exec');
  t.deepEqual(settings('LoadCredential'), []);
  t.is(setting('ExecReload'), '/bin/kill -HUP $MAINPID');
  t.is(setting('StateDirectory'), 'modelferry');
  t.is(setting('CacheDirectory'), 'modelferry');
  // The user the unit runs as is the one the shipped sysusers.d file declares.
  const sysusers = readFileSync(`${ROOT}systemd/modelferry.sysusers`, 'utf8').split('\n').filter((line) => /^u\s/.test(line));
  t.deepEqual(sysusers.map((line) => line.split(/\s+/)[1]), [setting('User')]);
  t.is(setting('Group'), setting('User'));
});

test('the unit does not restart on a configuration error (the exit code serve uses for one)', (t) => {
  t.is(setting('RestartPreventExitStatus'), String(EXIT_CONFIG));
  t.is(setting('Restart'), 'on-failure');
  t.is(setting('KillSignal'), 'SIGTERM');
});

test('the example config the installer copies is a valid configuration, tokens filled in as install.sh does', async (t) => {
  const example = readFileSync(`${ROOT}config/example.yaml`, 'utf8');
  t.true(example.includes('replace-with-a-long-random-secret-1'));
  const filled = example.replace(/replace-with-a-long-random-secret-\d/g, (_, i) => `generated-secret-0123456789-${i}`);
  const file = path.join(await tempDir(t), 'config.yaml');
  await writeFile(file, filled);
  const { config } = loadConfig({ env: { STATE_DIRECTORY: '/var/lib/modelferry', CACHE_DIRECTORY: '/var/cache/modelferry' }, file, flags: {} });
  t.deepEqual(config.auth.tokens.map((token) => [token.name, token.scopes]), [['jenkins', ['push', 'assign']], ['ops', ['admin', 'push']]]);
  t.is(config.paths.state, '/var/lib/modelferry');
  t.is(config.paths.cache, '/var/cache/modelferry');
});
