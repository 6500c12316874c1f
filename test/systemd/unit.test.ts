import { execFile } from 'node:child_process';
import { existsSync, readFileSync } from 'node:fs';
import { writeFile } from 'node:fs/promises';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { promisify } from 'node:util';
import test from 'ava';
import { loadConfig } from '../../daemon/config/load.ts';
import { EXIT_CONFIG } from '../../daemon/cli/serve.ts';
import { tempDir } from '../helpers/harness.ts';

// The unit and the example config that systemd/install.sh puts on a Raspberry Pi.

const run = promisify(execFile);
const ROOT = fileURLToPath(new URL('../../', import.meta.url));
const UNIT = `${ROOT}systemd/modelferry.service`;
const unit = readFileSync(UNIT, 'utf8');
const setting = (key: string) => unit.split('\n').find((line) => line.startsWith(`${key}=`))?.slice(key.length + 1);

test('systemd-analyze verify accepts the unit file', async (t) => {
  const available = await run('systemd-analyze', ['--version']).then(() => true, () => false);
  if (!available) {
    // A machine without systemd tools cannot check this; CI must have them.
    t.false(process.env.CI === 'true', 'systemd-analyze is missing on CI');
    t.log('systemd-analyze not installed here: unit file not verified');
    return;
  }
  const { stderr } = await run('systemd-analyze', ['verify', UNIT]);
  t.is(stderr.trim(), '');
});

test('the unit runs the installed CLI with its config as a credential, state and cache from systemd', (t) => {
  const exec = setting('ExecStart') ?? '';
  // The compiled package (npm run build): no TypeScript tooling at run time.
  t.regex(exec, /node \/opt\/modelferry\/dist\/cli\/main\.js serve --config \$\{CREDENTIALS_DIRECTORY\}\/config\.yaml$/);
  t.true(existsSync(`${ROOT}daemon/cli/main.ts`), 'dist/cli/main.js is built from daemon/cli/main.ts');
  t.is(setting('LoadCredential'), 'config.yaml:/etc/modelferry/config.yaml');
  t.is(setting('StateDirectory'), 'modelferry');
  t.is(setting('CacheDirectory'), 'modelferry');
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
  t.deepEqual(config.auth.tokens.map((token) => [token.name, token.scopes]), [['jenkins', ['push']], ['ops', ['admin', 'push']]]);
  t.is(config.paths.state, '/var/lib/modelferry');
  t.is(config.paths.cache, '/var/cache/modelferry');
});
