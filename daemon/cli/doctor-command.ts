import { execFile } from 'node:child_process';
import { promisify } from 'node:util';
import { ConfigError } from '../errors.ts';
import { loadConfig } from '../config/load.ts';
import type { Config } from '../config/schema.ts';
import type { Finding } from '../doctor/checks.ts';
import { option, type Args } from './args.ts';
import { defineCommand } from './command.ts';

export const doctorCommand = defineCommand({
  name: 'doctor',
  summary: 'check what the gateway needs (config, clock, folders, disk, ports, TLS, mDNS, upstream) and say what to fix',
  description: `Checks what the gateway needs and says what to do about anything wrong: the configuration,
Node.js, the clock, the state and cache folders (writable, disk space), the listen ports,
HTTPS (and the pin devices check the gateway by), mDNS, and the upstream store. It reads the config as serve would (--config, else
/etc/modelferry/config.yaml); as root through /usr/local/bin/modelferry it sees what the
service sees. Exit status: 0 nothing wrong (warnings allowed), 1 something is.`,
  flags: {
    config: { placeholder: 'FILE', help: 'the config file serve reads (default /etc/modelferry/config.yaml when present)' },
    'state-dir': { placeholder: 'DIR', help: 'database folder (paths.state)' },
    'cache-dir': { placeholder: 'DIR', help: 'model blob folder (paths.cache)' },
    port: { placeholder: 'PORT', help: 'listen port (http.port)' },
    host: { placeholder: 'ADDRESS', help: 'listen address (http.host)' },
  },
  run: (args) => doctor(args),
});

const FLAG_KEYS: Record<string, string> = { host: 'http.host', port: 'http.port', 'state-dir': 'paths.state', 'cache-dir': 'paths.cache' };

export async function doctor(args: Args): Promise<number> {
  // Loaded here only (prom-client comes with it), so that other commands start quickly.
  const { checkClock, checkConfigAccess, checkDisk, checkMdns, checkNode, checkPort, checkTls, checkUpstream, checkWritable } = await import('../doctor/checks.ts');
  const findings: Finding[] = [checkNode()];
  const flags: Record<string, string> = {};
  for (const [flag, key] of Object.entries(FLAG_KEYS)) {
    const value = option(args, flag);
    if (value !== undefined) flags[key] = value;
  }
  let config: Config | undefined;
  try {
    const loaded = loadConfig({ file: option(args, 'config'), flags });
    config = loaded.config;
    findings.push({ check: 'config', verdict: 'ok', message: `valid (${loaded.files.slice(1).join(', ') || 'the embedded default'})` });
    const file = loaded.files.at(-1);
    if (loaded.files.length > 1 && file) findings.push(await checkConfigAccess(file, config.auth.tokens.length > 0 || config.devices.token !== null || config.upstream.token !== null));
  } catch (error) {
    if (!(error instanceof ConfigError)) throw error;
    findings.push({ check: 'config', verdict: 'fail', message: error.message, fix: 'fix the value named above; serve refuses to start (exit 78) until then' });
  }
  findings.push(checkClock(new Date(), await ntpSynchronized()));
  if (config) {
    findings.push(await checkWritable('state', config.paths.state));
    findings.push(await checkWritable('cache', config.paths.cache));
    findings.push(...await checkDisk({ state: config.paths.state, cache: config.paths.cache }, Math.max(2 * config.artifacts.maxBytes, 64 * 1024 ** 2)));
    if (config.http.plain) findings.push(await checkPort(config.http.host, config.http.port));
    if (config.tls.enabled) findings.push(await checkPort(config.http.host, config.tls.port, undefined, 'tls.port'));
    findings.push(checkTls(config));
    findings.push(await checkMdns(config.mdns));
    findings.push(await checkUpstream(config.upstream.url, config.upstream.token, undefined, config.upstream.s3));
  } else {
    findings.push({ check: 'others', verdict: 'warn', message: 'folders, disk, port, mDNS and upstream not checked', fix: 'fix the configuration first' });
  }

  const label = { ok: 'ok  ', warn: 'WARN', fail: 'FAIL' } as const;
  const width = Math.max(...findings.map((f) => f.check.length));
  for (const finding of findings) {
    const [first, ...rest] = finding.message.split('\n');
    console.log(`${label[finding.verdict]}  ${finding.check.padEnd(width)}  ${first}`);
    for (const line of rest) console.log(`${' '.repeat(width + 8)}${line}`);
    if (finding.fix && finding.verdict !== 'ok') console.log(`${' '.repeat(width + 8)}→ ${finding.fix}`);
  }
  const failures = findings.filter((f) => f.verdict === 'fail').length;
  const warnings = findings.filter((f) => f.verdict === 'warn').length;
  console.log(failures === 0 && warnings === 0 ? 'nothing wrong found'
    : `${failures} problem${failures === 1 ? '' : 's'}, ${warnings} warning${warnings === 1 ? '' : 's'}`);
  return failures > 0 ? 1 : 0;
}

/** systemd's view of NTP, where timedatectl can ask it; undefined elsewhere. */
async function ntpSynchronized(): Promise<boolean | undefined> {
  try {
    const { stdout } = await promisify(execFile)('timedatectl', ['show', '-p', 'NTPSynchronized', '--value'], { timeout: 3000 });
    return stdout.trim() === 'yes' ? true : stdout.trim() === 'no' ? false : undefined;
  } catch {
    return undefined;
  }
}
