import { randomBytes } from 'node:crypto';
import dgram from 'node:dgram';
import { existsSync } from 'node:fs';
import { open, readFile, rm, stat } from 'node:fs/promises';
import net from 'node:net';
import os from 'node:os';
import path from 'node:path';
import { request as httpsRequest } from 'node:https';
import { ConfigError } from '../errors.ts';
import type { Config } from '../config/schema.ts';
import { diskSpace } from '../metrics.ts';
import { NO_S3_SETTINGS, type S3Settings } from '../s3/s3-access.ts';
import { existingCredentials, generatedFilesOf } from '../tls/tls-credentials.ts';

// What `modelferry doctor` looks at. Each check says what it found and, when something is
// wrong, what to do about it. Checks read; the only things they write are a probe file
// (removed at once) and a socket bound for a moment. Nothing is sent on the network except
// to the gateway's own port and the configured upstream.

export type Verdict = 'ok' | 'warn' | 'fail';

export interface Finding {
  check: string;
  verdict: Verdict;
  /** What was found. */
  message: string;
  /** What to do, when something is wrong. */
  fix?: string;
}

const ok = (check: string, message: string): Finding => ({ check, verdict: 'ok', message });
const warn = (check: string, message: string, fix: string): Finding => ({ check, verdict: 'warn', message, fix });
const failed = (check: string, message: string, fix: string): Finding => ({ check, verdict: 'fail', message, fix });

/** Signatures, TLS and "last seen" need a real date; a Pi without network starts in 1970. */
export const CLOCK_FLOOR = new Date('2026-01-01T00:00:00Z');
/** Under this share of free space a full disk is near (the same bar as the alert rule). */
export const DISK_WARN_SHARE = 0.10;

export function checkNode(version = process.versions.node): Finding {
  const [major = 0, minor = 0] = version.split('.').map(Number);
  if (major < 20 || (major === 20 && minor < 19)) {
    return failed('node', `Node.js ${version} is too old: modelferry needs 20.19 or later`, 'install Node.js 22 LTS (NodeSource or nodejs.org builds for arm64/armv7)');
  }
  if (major === 20) return warn('node', `Node.js ${version} works, but Node 20 is out of upstream support`, 'move to Node.js 22 LTS');
  return ok('node', `Node.js ${version}`);
}

export function checkClock(now = new Date(), synchronized?: boolean): Finding {
  if (now < CLOCK_FLOOR) {
    return failed('clock', `the clock says ${now.toISOString()}: it was never set`, 'let the Pi reach an NTP server (timedatectl set-ntp true), or set the time (timedatectl set-time); signatures, TLS and device times need it');
  }
  if (synchronized === false) {
    return warn('clock', `the clock says ${now.toISOString()}, but it is not synchronized`, 'check timedatectl: NTP may be off or unreachable; a Pi has no battery-backed clock');
  }
  return ok('clock', `${now.toISOString()}${synchronized ? ', synchronized' : ''}`);
}

/**
 * Under install.sh's layout the service reads its config through the group of the folder
 * (root:modelferry 2750, set-group-id). An editor or tool that replaced the file may have
 * left it root's alone: the service then refuses every reload and cannot start again.
 * Elsewhere (a config of one's own) it only warns when tokens are readable by every user.
 */
export async function checkConfigAccess(file: string, hasTokens: boolean): Promise<Finding> {
  const [info, folder] = await Promise.all([stat(file), stat(path.dirname(file))]);
  const mode = (info.mode & 0o777).toString(8).padStart(4, '0');
  if ((folder.mode & 0o2000) !== 0) {
    const group = await groupName(folder.gid);
    const serviceReads = (info.gid === folder.gid && (info.mode & 0o040) !== 0) || (info.mode & 0o004) !== 0;
    if (!serviceReads) {
      return failed('config-access', `${file} (mode ${mode}) is not readable by the group ${group} of its folder, which the service runs in: reloads are refused and the service cannot start`, `chgrp ${group} ${file} && chmod 0640 ${file}`);
    }
    return ok('config-access', `${file} is readable by the service's group ${group}${(folder.mode & 0o005) === 0 ? ' and by no one else' : ''}`);
  }
  if (hasTokens && (info.mode & 0o004) !== 0 && (folder.mode & 0o001) !== 0) {
    return warn('config-access', `${file} (mode ${mode}) holds tokens and every user of this machine can read it`, `chmod o-rwx ${file}`);
  }
  return ok('config-access', `${file} (mode ${mode})`);
}

async function groupName(gid: number): Promise<string> {
  const text = await readFile('/etc/group', 'utf8').catch(() => '');
  return text.split('\n').map((line) => line.split(':')).find((fields) => fields[2] === String(gid))?.[0] ?? String(gid);
}

/** The folder (or, if it does not exist yet, the nearest parent that does) takes a new file. */
export async function checkWritable(check: string, dir: string): Promise<Finding> {
  let probeDir = dir;
  while (!existsSync(probeDir) && path.dirname(probeDir) !== probeDir) probeDir = path.dirname(probeDir);
  try {
    if (!(await stat(probeDir)).isDirectory()) {
      return failed(check, `${probeDir} is not a folder`, `set paths.${check} to a folder`);
    }
    const probe = path.join(probeDir, `.modelferry-doctor-${randomBytes(4).toString('hex')}`);
    const file = await open(probe, 'wx', 0o600);
    await file.close();
    await rm(probe, { force: true });
  } catch (error) {
    const code = (error as NodeJS.ErrnoException).code ?? String(error);
    return failed(check, `${dir} is not writable (${code}${probeDir === dir ? '' : ` at ${probeDir}`})`,
      code === 'EROFS' ? 'the file system is read-only: remount it or choose another folder'
        : `give the gateway's user write access, or set paths.${check} (under systemd it is the service's ${check === 'state' ? 'StateDirectory' : 'CacheDirectory'}: run doctor as root)`);
  }
  return ok(check, probeDir === dir ? `${dir} is writable` : `${dir} does not exist yet; ${probeDir} lets the gateway create it`);
}

export async function checkDisk(dirs: Record<string, string>, neededBytes: number): Promise<Finding[]> {
  const findings: Finding[] = [];
  const seen = new Set<string>();
  for (const [name, dir] of Object.entries(dirs)) {
    let where = dir;
    while (!existsSync(where) && path.dirname(where) !== where) where = path.dirname(where);
    let space: { free: number; size: number };
    try {
      space = await diskSpace(where);
    } catch (error) {
      findings.push(failed('disk', `cannot read the free space of ${where}: ${(error as Error).message}`, 'check the mount'));
      continue;
    }
    // One line per file system, however many folders share it.
    const device = String((await stat(where)).dev);
    if (seen.has(device)) continue;
    seen.add(device);
    const text = `${name}: ${mib(space.free)} free of ${mib(space.size)} on the file system of ${where}`;
    if (space.free < neededBytes) {
      findings.push(failed('disk', text, `a model of artifacts.maxBytes would not fit: delete unused versions (modelferry delete NAME VERSION) or use a bigger card`));
    } else if (space.free < space.size * DISK_WARN_SHARE) {
      findings.push(warn('disk', `${text} (under ${DISK_WARN_SHARE * 100}%)`, 'delete unused model versions, or move paths.cache to a bigger disk'));
    } else {
      findings.push(ok('disk', text));
    }
  }
  return findings;
}

/**
 * The listen address can be bound, or a modelferry gateway already holds it (fine: the
 * service is running). Anything else holding the port is a problem. `key` names the
 * setting of the port: plain HTTP's, or HTTPS's (asked over TLS without checking the
 * certificate: it only needs to know who answers).
 */
export async function checkPort(host: string, port: number, timeoutMs = 3000, key: 'http.port' | 'tls.port' = 'http.port'): Promise<Finding> {
  const where = `${host.includes(':') ? `[${host}]` : host}:${port}`;
  const check = key === 'tls.port' ? 'tls port' : 'port';
  const error = await new Promise<NodeJS.ErrnoException | undefined>((resolve) => {
    const server = net.createServer();
    server.once('error', (e) => resolve(e));
    server.listen(port, host, () => server.close(() => resolve(undefined)));
  });
  if (!error) return ok(check, `${where} is free for the gateway`);
  if (error.code === 'EADDRINUSE') {
    const probeHost = host === '0.0.0.0' || host === '::' ? '127.0.0.1' : host;
    const url = `${key === 'tls.port' ? 'https' : 'http'}://${probeHost.includes(':') ? `[${probeHost}]` : probeHost}:${port}/healthz`;
    const health = await healthOf(url, timeoutMs);
    if (health?.status === 'ok' && typeof health.gateway === 'string') {
      return ok(check, `${where} is taken by a running modelferry gateway (id ${health.gateway})`);
    }
    return failed(check, `${where} is in use by another program`, `find it with: ss -ltnp 'sport = :${port}'; stop it or set ${key}`);
  }
  if (error.code === 'EACCES') {
    return failed(check, `${where} needs privileges to bind`, 'use a port of 1024 or more (the service runs without privileges)');
  }
  if (error.code === 'EADDRNOTAVAIL') {
    return failed(check, `${host} is not an address of this machine`, 'set http.host to 0.0.0.0 or one of its addresses');
  }
  return failed(check, `${where} cannot be bound: ${error.code ?? error.message}`, `check http.host and ${key}`);
}

async function healthOf(url: string, timeoutMs: number): Promise<{ status?: string; gateway?: string } | undefined> {
  if (url.startsWith('http:')) {
    return fetch(url, { signal: AbortSignal.timeout(timeoutMs) })
      .then(async (r) => (r.ok ? await r.json() as { status?: string; gateway?: string } : undefined))
      .catch(() => undefined);
  }
  return new Promise((resolve) => {
    const req = httpsRequest(url, { rejectUnauthorized: false, timeout: timeoutMs }, (res) => {
      let text = '';
      res.setEncoding('utf8').on('data', (chunk: string) => { text += chunk; }).on('end', () => {
        try {
          resolve(res.statusCode === 200 ? JSON.parse(text) as { status?: string; gateway?: string } : undefined);
        } catch {
          resolve(undefined);
        }
      });
    });
    req.on('timeout', () => req.destroy());
    req.on('error', () => resolve(undefined));
    req.end();
  });
}

/**
 * HTTPS and the pin devices check the gateway by: the line a person copies into a device's
 * configuration. Read without making anything: a gateway that never started has no key yet.
 */
export function checkTls(config: { tls: Config['tls']; http: Pick<Config['http'], 'plain' | 'port'>; paths: Pick<Config['paths'], 'state'> }): Finding {
  if (!config.tls.enabled) return ok('tls', 'off (tls.enabled: false): devices and clients use plain HTTP');
  const serving = `HTTPS on port ${config.tls.port}${config.http.plain ? `, plain HTTP on ${config.http.port} too` : ' only'}`;
  let credentials;
  try {
    credentials = existingCredentials(config.tls, config.paths.state);
  } catch (error) {
    if (!(error instanceof ConfigError)) throw error;
    return failed('tls', error.message.replace(/^config: /, ''), 'give tls.certFile and tls.keyFile a readable certificate and its own key (or neither: the gateway makes its own)');
  }
  if (!credentials) {
    return warn('tls', `${serving}; the gateway makes its key and certificate at its first start (${generatedFilesOf(config.paths.state).certFile})`, 'start the gateway once, then run doctor again for the pin');
  }
  return ok('tls', `${serving} with ${credentials.generated ? 'the certificate it made' : 'the configured certificate'} (${credentials.certFile})
pin, the sha256 of its public key (a device's Kconfig, the simulator's --pin-gateway):
${credentials.pin}`);
}

export type Interfaces = ReturnType<typeof os.networkInterfaces>;

/**
 * Devices find the gateway by mDNS: that needs an interface on the LAN and the mDNS port.
 * Binding UDP 5353 (shared, as mDNS responders do) sends nothing.
 */
export async function checkMdns(config: Pick<Config['mdns'], 'enabled'>, interfaces: Interfaces = os.networkInterfaces(), bindPort = 5353): Promise<Finding> {
  if (!config.enabled) return ok('mdns', 'off (mdns.enabled: false): devices need the gateway URL configured');
  const lan = Object.entries(interfaces).flatMap(([name, list]) => (list ?? [])
    .filter((a) => !a.internal && a.family === 'IPv4')
    .map((a) => `${name} ${a.address}`));
  if (lan.length === 0) {
    return failed('mdns', 'no network interface with an IPv4 address besides loopback: devices on the LAN cannot discover the gateway', 'connect the Pi to the LAN (ip addr shows its addresses)');
  }
  const error = await new Promise<NodeJS.ErrnoException | undefined>((resolve) => {
    const socket = dgram.createSocket({ type: 'udp4', reuseAddr: true });
    socket.once('error', (e) => { socket.close(); resolve(e); });
    socket.bind(bindPort, () => socket.close(() => resolve(undefined)));
  });
  if (error) {
    return failed('mdns', `UDP port ${bindPort} (mDNS) cannot be bound: ${error.code ?? error.message}`, 'another program holds it exclusively; avahi-daemon shares it, others may not');
  }
  return ok('mdns', `advertised on ${lan.join(', ')} (UDP ${bindPort} available)`);
}

/** The upstream store answers its manifest (when one is configured). */
export async function checkUpstream(url: string | null | undefined, token: string | null | undefined, timeoutMs = 10_000, s3: S3Settings = NO_S3_SETTINGS): Promise<Finding> {
  if (!url) return ok('upstream', 'none configured: the gateway serves what is pushed to it');
  if (url.startsWith('s3://')) return checkBucketUpstream(url, s3);
  let shown: string;
  try {
    const parsed = new URL(url);
    shown = `${parsed.protocol}//${parsed.host}${parsed.pathname}`;
  } catch {
    return failed('upstream', 'upstream.url is not a URL', 'set upstream.url to the manifest URL, e.g. https://store.example/modelferry/manifest.json');
  }
  try {
    const response = await fetch(url, {
      headers: token ? { Authorization: `Bearer ${token}` } : {},
      signal: AbortSignal.timeout(timeoutMs),
    });
    await response.body?.cancel();
    if (response.status === 401 || response.status === 403) {
      return failed('upstream', `${shown} refuses this gateway (${response.status})`, 'check upstream.token');
    }
    if (!response.ok) return failed('upstream', `${shown} answers ${response.status}`, 'check upstream.url: it must name the store\'s manifest.json');
    return ok('upstream', `${shown} answers`);
  } catch (error) {
    const cause = (error as { cause?: { code?: string } }).cause;
    return failed('upstream', `${shown} is unreachable (${cause?.code ?? (error as Error).name})`, 'check the network, DNS and upstream.url; devices are still served from the cache meanwhile');
  }
}

/** A bucket store: its manifest read as a sync reads it, signed; S3's refusal says what to fix. */
async function checkBucketUpstream(url: string, s3: S3Settings): Promise<Finding> {
  const { openStore } = await import('../central-store/store-objects.ts');
  try {
    const store = await openStore(url.slice(0, url.lastIndexOf('/')), { s3 });
    try {
      const manifest = await store.read(url.slice(url.lastIndexOf('/') + 1));
      if (manifest === null) return failed('upstream', `${url} does not exist`, 'publish to the store first (modelferry publish), or check the prefix in upstream.url');
      return ok('upstream', `${url} answers`);
    } finally {
      store.close();
    }
  } catch (error) {
    return failed('upstream', (error as Error).message, 'see docs/central-store.md "Many sites on S3"');
  }
}

function mib(bytes: number): string {
  return bytes >= 10 * 1024 ** 3 ? `${(bytes / 1024 ** 3).toFixed(1)} GiB` : `${Math.round(bytes / 1024 ** 2)} MiB`;
}
