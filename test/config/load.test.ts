import { writeFile } from 'node:fs/promises';
import path from 'node:path';
import test, { type ExecutionContext } from 'ava';
import { ConfigError } from '../../daemon/errors.ts';
import { DEFAULT_CONFIG_FILE, loadConfig, type ConfigSources } from '../../daemon/config/load.ts';
import { tempDir } from '../helpers/harness.ts';

// docs/configuration.md "Where settings come from": defaults < STATE_DIRECTORY/CACHE_DIRECTORY
// < config file < environment < flags, every value validated at start with a message naming
// key, value, source and what is allowed. The environment is always passed explicitly, never
// process.env.

async function writeTemp(t: ExecutionContext, name: string, text: string): Promise<{ dir: string; file: string }> {
  const dir = await tempDir(t, 'modelferry-config-');
  const file = path.join(dir, name);
  await writeFile(file, text);
  return { dir, file };
}

/** Loads and expects a ConfigError; returns its message. */
function refused(t: ExecutionContext, sources: ConfigSources): string {
  const error = t.throws(() => loadConfig({ env: {}, ...sources }), { instanceOf: ConfigError });
  return error?.message ?? '';
}

function includesAll(t: ExecutionContext, message: string, parts: string[]): void {
  for (const part of parts) t.true(message.includes(part), `expected ${JSON.stringify(part)} in:\n${message}`);
}

test('with no config at all the embedded default runs: port 8080 on all interfaces, mDNS on, state and cache in the user\'s XDG folders whatever the working directory', async (t) => {
  const home = await tempDir(t, 'modelferry-config-');
  const { config, files, origin } = loadConfig({ env: { HOME: home }, cwd: '/' });
  t.deepEqual(files, [DEFAULT_CONFIG_FILE]);
  t.is(config.http.host, '0.0.0.0');
  t.is(config.http.port, 8080);
  t.true(config.mdns.enabled);
  t.is(config.mdns.priority, 10);
  t.is(config.paths.state, path.join(home, '.local', 'state', 'modelferry'));
  t.is(config.paths.cache, path.join(home, '.cache', 'modelferry'));
  t.is(origin('paths.state'), 'default ($XDG_STATE_HOME/modelferry)');
  t.deepEqual(config.auth.tokens, []);
  t.is(config.devices.token, null);
  t.is(config.devices.maxWaitSeconds, 300);
  t.is(config.devices.pollIntervalSeconds, 300);
  t.is(config.devices.pollJitterSeconds, 30);
  t.deepEqual(config.trust, { keys: [], requireSignatures: false });
  t.is(config.artifacts.maxBytes, 16 * 1024 * 1024);
  t.deepEqual(config.artifacts.formats, ['executorch']);
});

test('XDG_STATE_HOME and XDG_CACHE_HOME move the default paths; with no home folder the default is refused naming paths.state', (t) => {
  const { config } = loadConfig({ env: { HOME: '/home/u', XDG_STATE_HOME: '/xdg/state', XDG_CACHE_HOME: '/xdg/cache' }, cwd: '/' });
  t.is(config.paths.state, '/xdg/state/modelferry');
  t.is(config.paths.cache, '/xdg/cache/modelferry');
  includesAll(t, refused(t, { env: { HOME: '/' }, cwd: '/' }), ['paths.state is not set', 'no home folder', '--state-dir']);
  t.is(loadConfig({ env: { HOME: '/' }, flags: { 'paths.state': 's', 'paths.cache': 'c' }, cwd: '/srv' }).config.paths.state, '/srv/s');
});

test('STATE_DIRECTORY and CACHE_DIRECTORY (systemd) replace the default paths, first entry of a colon list', async (t) => {
  const cwd = await tempDir(t, 'modelferry-config-');
  const { config } = loadConfig({ env: { STATE_DIRECTORY: '/var/lib/modelferry:/var/lib/other', CACHE_DIRECTORY: '/var/cache/modelferry' }, cwd });
  t.is(config.paths.state, '/var/lib/modelferry');
  t.is(config.paths.cache, '/var/cache/modelferry');
});

test('a YAML config file overrides defaults and systemd directories, and keeps every key it does not name', async (t) => {
  const { dir, file } = await writeTemp(t, 'config.yaml', [
    'http:',
    '  port: 9000',
    'paths:',
    '  state: /srv/state',
    'artifacts:',
    '  maxBytes: 512kb',
    '',
  ].join('\n'));
  const { config, files } = loadConfig({ file, env: { STATE_DIRECTORY: '/var/lib/modelferry', CACHE_DIRECTORY: '/var/cache/modelferry' }, cwd: dir });
  t.deepEqual(files, [DEFAULT_CONFIG_FILE, file]);
  t.is(config.http.port, 9000);
  t.is(config.http.host, '0.0.0.0');
  t.is(config.paths.state, '/srv/state');
  t.is(config.paths.cache, '/var/cache/modelferry');
  t.is(config.artifacts.maxBytes, 512_000);
  t.true(config.mdns.enabled);
});

test('a JSON config file is read as YAML', async (t) => {
  const { dir, file } = await writeTemp(t, 'config.json', JSON.stringify({ http: { port: 9001 }, mdns: { enabled: false, priority: 3 } }));
  const { config } = loadConfig({ file, env: {}, cwd: dir });
  t.is(config.http.port, 9001);
  t.false(config.mdns.enabled);
  t.is(config.mdns.priority, 3);
});

test('a relative config file is found from the working directory; relative paths in it are relative to the file, in flags to the working directory', async (t) => {
  const { dir } = await writeTemp(t, 'site.yaml', 'paths:\n  state: data/state\n  cache: /abs/cache\n');
  const { config } = loadConfig({ file: path.join(path.basename(dir), 'site.yaml'), env: {}, cwd: path.dirname(dir) });
  t.is(config.paths.state, path.join(dir, 'data', 'state'));
  t.is(config.paths.cache, '/abs/cache');
  const flagged = loadConfig({ file: path.join(dir, 'site.yaml'), env: {}, flags: { 'paths.state': 'here' }, cwd: '/srv' });
  t.is(flagged.config.paths.state, '/srv/here');
});

test('an empty config file leaves the defaults', async (t) => {
  const { dir, file } = await writeTemp(t, 'empty.yaml', '# nothing yet\n');
  const { config } = loadConfig({ file, env: {}, cwd: dir });
  t.is(config.http.port, 8080);
});

test('MODELFERRY_<SECTION>_<KEY> overrides the config file, camelCase keys written in SNAKE case', async (t) => {
  const { dir, file } = await writeTemp(t, 'config.yaml', 'http:\n  port: 9000\ndevices:\n  maxWaitSeconds: 10\n');
  const { config } = loadConfig({
    file,
    cwd: dir,
    env: {
      MODELFERRY_HTTP_PORT: '9100',
      MODELFERRY_DEVICES_MAX_WAIT_SECONDS: '60',
      MODELFERRY_MDNS_ENABLED: 'off',
      MODELFERRY_ARTIFACTS_MAX_BYTES: '1 MiB',
      MODELFERRY_AUTH_TOKENS: JSON.stringify([{ name: 'ci', token: 'a-long-enough-secret-1234', scopes: ['push'] }]),
    },
  });
  t.is(config.http.port, 9100);
  t.is(config.devices.maxWaitSeconds, 60);
  t.false(config.mdns.enabled);
  t.is(config.artifacts.maxBytes, 1024 * 1024);
  t.deepEqual(config.auth.tokens, [{ name: 'ci', token: 'a-long-enough-secret-1234', scopes: ['push'] }]);
});

test('environment booleans accept true/false, 1/0, yes/no, on/off', (t) => {
  for (const [text, value] of [['true', true], ['1', true], ['YES', true], ['on', true], ['false', false], ['0', false], ['no', false], ['Off', false]] as const) {
    t.is(loadConfig({ env: { MODELFERRY_MDNS_ENABLED: text }, cwd: '/' }).config.mdns.enabled, value, text);
  }
});

test('flags override the environment and the config file', async (t) => {
  const { dir, file } = await writeTemp(t, 'config.yaml', 'http:\n  port: 9000\n');
  const { config } = loadConfig({
    file,
    cwd: dir,
    env: { MODELFERRY_HTTP_PORT: '9100', MODELFERRY_LOG_LEVEL: 'debug' },
    flags: { 'http.port': '9200', 'devices.maxWaitSeconds': '5' },
  });
  t.is(config.http.port, 9200);
  t.is(config.log.level, 'debug');
  t.is(config.devices.maxWaitSeconds, 5);
});

test('sizes are read as a person writes them: 16 MiB, 512kb, 512 KiB, 2GB, 1.5 MiB, a byte count as text or number', async (t) => {
  const cases: Array<[string | number, number]> = [
    ['16 MiB', 16 * 1024 ** 2],
    ['512kb', 512_000],
    ['512 KiB', 512 * 1024],
    ['2GB', 2_000_000_000],
    ['1.5 MiB', 1.5 * 1024 ** 2],
    ['1048576', 1_048_576],
    ['100 b', 100],
    [1_048_576, 1_048_576],
  ];
  const dir = await tempDir(t, 'modelferry-config-');
  for (const [written, bytes] of cases) {
    const file = path.join(dir, 'size.yaml');
    await writeFile(file, JSON.stringify({ artifacts: { maxBytes: written } }));
    t.is(loadConfig({ file, env: {}, cwd: dir }).config.artifacts.maxBytes, bytes, `file ${JSON.stringify(written)}`);
    if (typeof written === 'string') {
      t.is(loadConfig({ env: { MODELFERRY_ARTIFACTS_MAX_BYTES: written }, cwd: dir }).config.artifacts.maxBytes, bytes, `env ${written}`);
    }
  }
});

test('a size that is not a positive byte count is refused naming key, value, source and the allowed forms', async (t) => {
  const dir = await tempDir(t, 'modelferry-config-');
  for (const written of ['0', '-1', '16 XB', 'lots', '', 0, -5, 1.5]) {
    const file = path.join(dir, 'size.yaml');
    await writeFile(file, JSON.stringify({ artifacts: { maxBytes: written } }));
    const message = refused(t, { file, cwd: dir });
    includesAll(t, message, ['artifacts.maxBytes', JSON.stringify(written), file, 'positive size such as 16 MiB']);
  }
  const message = refused(t, { env: { MODELFERRY_ARTIFACTS_MAX_BYTES: '3 parsecs' }, cwd: dir });
  includesAll(t, message, ['artifacts.maxBytes = "3 parsecs"', 'environment MODELFERRY_ARTIFACTS_MAX_BYTES', 'positive size']);
});

test('a bad value in the config file is refused naming the key, the value, the file and the allowed range', async (t) => {
  const { dir, file } = await writeTemp(t, 'config.yaml', 'http:\n  port: 70000\n');
  const message = refused(t, { file, cwd: dir });
  includesAll(t, message, ['http.port = 70000', `(from ${file})`, '<=65535']);
});

test('a number variable that is not a number is refused showing the text that was written', (t) => {
  const message = refused(t, { env: { MODELFERRY_HTTP_PORT: 'eighty' }, cwd: '/' });
  includesAll(t, message, ['http.port = "eighty"', '(from environment MODELFERRY_HTTP_PORT)', 'expected number']);
  const empty = refused(t, { env: { MODELFERRY_DEVICES_MAX_WAIT_SECONDS: ' ' }, cwd: '/' });
  includesAll(t, empty, ['devices.maxWaitSeconds = " "', '(from environment MODELFERRY_DEVICES_MAX_WAIT_SECONDS)', 'expected number']);
});

test('a fractional or negative number is refused as not an integer in range', (t) => {
  includesAll(t, refused(t, { flags: { 'devices.pollJitterSeconds': '1.5' }, cwd: '/' }), ['devices.pollJitterSeconds = 1.5', '(from flag --devices.pollJitterSeconds)', 'int']);
  includesAll(t, refused(t, { flags: { 'devices.maxWaitSeconds': '-1' }, cwd: '/' }), ['devices.maxWaitSeconds = -1', '(from flag --devices.maxWaitSeconds)', '>=0']);
  includesAll(t, refused(t, { flags: { 'devices.pollIntervalSeconds': '0' }, cwd: '/' }), ['devices.pollIntervalSeconds = 0', '>=1']);
});

test('a boolean variable that is not a boolean is refused', (t) => {
  const message = refused(t, { env: { MODELFERRY_MDNS_ENABLED: 'maybe' }, cwd: '/' });
  includesAll(t, message, ['mdns.enabled = "maybe"', '(from environment MODELFERRY_MDNS_ENABLED)', 'expected boolean']);
});

test('an enum flag outside its options is refused listing the options', (t) => {
  const message = refused(t, { flags: { 'log.level': 'loud' }, cwd: '/' });
  includesAll(t, message, ['log.level = "loud"', '(from flag --log.level)', '"fatal"|"error"|"warn"|"info"|"debug"|"trace"|"silent"']);
});

test('a token scope outside push, assign, admin, sync is refused', (t) => {
  const message = refused(t, { flags: { 'auth.tokens': JSON.stringify([{ name: 'ci', token: 'a-long-enough-secret-1234', scopes: ['root'] }]) }, cwd: '/' });
  includesAll(t, message, ['auth.tokens.0.scopes.0 = "root"', '(from flag --auth.tokens)', '"push"|"assign"|"admin"|"sync"']);
});

test('a list-valued variable that is not YAML or JSON is refused naming the variable', (t) => {
  const message = refused(t, { env: { MODELFERRY_TRUST_KEYS: '[unclosed' }, cwd: '/' });
  includesAll(t, message, ['trust.keys', 'environment MODELFERRY_TRUST_KEYS', 'YAML or JSON list']);
});

test('a trust key id that is not 16 lower-case hex characters is refused', (t) => {
  const message = refused(t, { flags: { 'trust.keys': JSON.stringify([{ id: 'ABCDEF0123456789', publicKey: 'x' }]) }, cwd: '/' });
  includesAll(t, message, ['trust.keys.0.id = "ABCDEF0123456789"', '(from flag --trust.keys)', '16 lower-case hex']);
});

test('an unknown key in the config file is refused naming the file and the known keys', async (t) => {
  const { dir, file } = await writeTemp(t, 'config.yaml', 'http:\n  port: 9000\n  prot: 9001\n');
  includesAll(t, refused(t, { file, cwd: dir }), ['unknown key http.prot', `(from ${file})`, 'host, port, shutdownGraceSeconds']);
});

test('an unknown section in the config file is refused naming the file and the known sections', async (t) => {
  const { dir, file } = await writeTemp(t, 'config.yaml', 'htpp:\n  port: 9000\n');
  includesAll(t, refused(t, { file, cwd: dir }), ['unknown key htpp', `(from ${file})`, 'http, paths, log, mdns']);
});

test('an unknown key inside a token entry is refused', (t) => {
  const message = refused(t, { flags: { 'auth.tokens': JSON.stringify([{ name: 'ci', token: 'a-long-enough-secret-1234', scopes: ['push'], scope: 'admin' }]) }, cwd: '/' });
  includesAll(t, message, ['unknown key auth.tokens.0.scope', '(from flag --auth.tokens)']);
});

test('a section that is not a mapping is refused naming the file', async (t) => {
  const { dir, file } = await writeTemp(t, 'config.yaml', 'http: 5\n');
  includesAll(t, refused(t, { file, cwd: dir }), ['http = 5', `(from ${file})`, 'expected object']);
});

test('a config file that is not a mapping of sections is refused', async (t) => {
  const { dir, file } = await writeTemp(t, 'config.yaml', '- http\n- port\n');
  includesAll(t, refused(t, { file, cwd: dir }), [file, 'must hold a mapping of sections']);
});

test('an unknown MODELFERRY_ variable is refused naming it', (t) => {
  includesAll(t, refused(t, { env: { MODELFERRY_HTTP_PROT: '9000' }, cwd: '/' }), ['MODELFERRY_HTTP_PROT', 'names no configuration key']);
  includesAll(t, refused(t, { env: { MODELFERRY_DEVICES_MAXWAITSECONDS: '9' }, cwd: '/' }), ['MODELFERRY_DEVICES_MAXWAITSECONDS', 'names no configuration key']);
});

test('the command-line client variables MODELFERRY_GATEWAY and MODELFERRY_TOKEN are not daemon config', (t) => {
  const { config } = loadConfig({ env: { MODELFERRY_GATEWAY: 'http://gw:8080', MODELFERRY_TOKEN: 'whatever', HOME: '/root' }, cwd: '/' });
  t.is(config.http.port, 8080);
});

test('an unknown flag is refused naming it', (t) => {
  includesAll(t, refused(t, { flags: { 'http.prot': '9000' }, cwd: '/' }), ['--http.prot', 'names no configuration key']);
  includesAll(t, refused(t, { flags: { http: '9000' }, cwd: '/' }), ['--http', 'names no configuration key']);
  includesAll(t, refused(t, { flags: { 'http.port.extra': '9000' }, cwd: '/' }), ['--http.port.extra', 'names no configuration key']);
});

test('token values never appear in error messages, whatever the source or the mistake', async (t) => {
  const secret = 'SECRETsecret0123';
  const short = 'SHORTsecret';
  const { dir, file } = await writeTemp(t, 'config.yaml', `devices:\n  token: ${short}\n`);
  const cases: Array<[ConfigSources, string]> = [
    [{ file, cwd: dir }, 'devices.token = <secret>'],
    [{ env: { MODELFERRY_DEVICES_TOKEN: short }, cwd: '/' }, 'devices.token = <secret>'],
    [{ flags: { 'devices.token': short }, cwd: '/' }, 'devices.token = <secret>'],
    [{ flags: { 'auth.tokens': JSON.stringify([{ name: 'ci', token: short, scopes: ['push'] }]) }, cwd: '/' }, 'auth.tokens.0.token = <secret>'],
    [{ flags: { 'auth.tokens': JSON.stringify([{ name: 'ci', token: 12345678901234567890, scopes: ['push'] }]) }, cwd: '/' }, 'auth.tokens.0.token = <secret>'],
    // A token written where the list or an entry belongs is still a token.
    [{ env: { MODELFERRY_AUTH_TOKENS: secret }, cwd: '/' }, 'auth.tokens = <secret>'],
    [{ flags: { 'auth.tokens': JSON.stringify([secret]) }, cwd: '/' }, 'auth.tokens.0 = <secret>'],
    // Nor when the text around them does not parse.
    [{ env: { MODELFERRY_AUTH_TOKENS: `[{ name: ci, token: "${secret}` }, cwd: '/' }, 'must be a YAML or JSON list'],
  ];
  const brokenYaml = path.join(dir, 'broken.yaml');
  await writeFile(brokenYaml, `devices:\n  token: "${secret}\n`);
  cases.push([{ file: brokenYaml, cwd: dir }, 'is not valid YAML']);
  for (const [sources, expected] of cases) {
    const message = refused(t, sources);
    t.true(message.includes(expected), message);
    t.false(message.includes(short), message);
    t.false(message.includes(secret), message);
    t.false(message.includes('12345678901234567890'), message);
  }
});

test('a config file that is not valid YAML is refused naming the file', async (t) => {
  const { dir, file } = await writeTemp(t, 'config.yaml', 'http:\n  port: [9000\n');
  includesAll(t, refused(t, { file, cwd: dir }), [file, 'is not valid YAML']);
  const duplicate = path.join(dir, 'duplicate.yaml');
  await writeFile(duplicate, 'http:\n  port: 1\nhttp:\n  port: 2\n');
  includesAll(t, refused(t, { file: duplicate, cwd: dir }), [duplicate, 'is not valid YAML', 'unique']);
});

test('a config file that cannot be read is refused naming the file and the reason', async (t) => {
  const dir = await tempDir(t, 'modelferry-config-');
  const missing = path.join(dir, 'missing.yaml');
  includesAll(t, refused(t, { file: missing, cwd: dir }), [`--config ${missing} does not exist`, '--config FILE']);
  includesAll(t, refused(t, { file: dir, cwd: dir }), [`--config ${dir} is a folder, not a file`]);
});
