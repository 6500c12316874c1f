import { randomBytes } from 'node:crypto';
import { open, rm } from 'node:fs/promises';
import net from 'node:net';
import path from 'node:path';
import { ConfigError } from '../errors.ts';
import { describeFsError, errnoOf } from '../fs-errors.ts';
import { makeDirectory } from '../make-directory.ts';
import type { LoadedConfig } from './load.ts';

// What `serve` checks before it opens anything: every folder it will write can be created
// and written, and the listen address can be bound. A mistake found later would leave a
// database opened (and a lock held) by a process that is about to fail anyway.

/** The command-line flag that sets a key, for the advice in messages. */
const FLAG_OF: Record<string, string> = {
  'paths.state': '--state-dir',
  'paths.cache': '--cache-dir',
  'http.port': '--port',
  'http.host': '--host',
  'tls.port': '--set tls.port=PORT',
};

export async function preflight({ config, origin }: LoadedConfig): Promise<void> {
  await writableFolder(config.paths.state, 'paths.state', origin('paths.state'));
  await writableFolder(config.paths.cache, 'paths.cache', origin('paths.cache'));
  if (config.http.plain) await bindable(config.http.host, config.http.port, origin, 'http.port');
  if (config.tls.enabled) await bindable(config.http.host, config.tls.port, origin, 'tls.port');
}

function where(key: string, value: string | number, from: string): string {
  return `${key} = ${value} (from ${from})`;
}

function setIt(key: string): string {
  return `set ${key} in the config file${FLAG_OF[key] ? ` or pass ${FLAG_OF[key]}` : ''}`;
}

/** Creates the folder if needed and proves it writable with a file that is removed again. */
export async function writableFolder(dir: string, key: string, from: string): Promise<void> {
  try {
    await makeDirectory(dir);
  } catch (error) {
    const failed = (error as NodeJS.ErrnoException).path ?? dir;
    const subject = failed === dir ? 'the folder' : `its parent ${failed}`;
    const reason = errnoOf(error) === 'ENOENT'
      ? `${subject} cannot be created there (a virtual file system such as /proc, or a dangling symbolic link): ${setIt(key)} to a folder on a disk`
      : describeFsError(error, `${subject}`, `${setIt(key)} to a folder this user may write, or create it with the right owner`);
    throw new ConfigError(`${where(key, dir, from)} cannot be used: ${reason}`);
  }
  const probe = path.join(dir, `.modelferry-write-test-${randomBytes(4).toString('hex')}`);
  try {
    const file = await open(probe, 'wx', 0o600);
    await file.close();
    await rm(probe, { force: true });
  } catch (error) {
    throw new ConfigError(`${where(key, dir, from)} cannot be used: ${describeFsError(error, 'the folder', `${setIt(key)} to a folder this user may write, or change its owner`)}`);
  }
}

/** Binds the listen address for a moment. Port 0 (any free port) always binds. */
async function bindable(host: string, port: number, origin: LoadedConfig['origin'], key: 'http.port' | 'tls.port'): Promise<void> {
  if (port === 0) return;
  const server = net.createServer();
  try {
    await new Promise<void>((resolve, reject) => {
      server.once('error', reject);
      server.listen({ host, port, exclusive: true }, () => resolve());
    });
  } catch (error) {
    throw listenError(error, host, port, origin, key);
  } finally {
    await new Promise<void>((resolve) => server.close(() => resolve()));
  }
}

/**
 * A failed bind in words. A port in use is worth retrying (the old instance may still be
 * stopping): a plain Error, exit 1. Anything else needs the configuration changed: exit 78.
 */
export function listenError(error: unknown, host: string, port: number, origin: LoadedConfig['origin'], key: 'http.port' | 'tls.port' = 'http.port'): Error {
  const at = `${where(key, port, origin(key))} on ${where('http.host', host, origin('http.host'))}`;
  switch (errnoOf(error)) {
    case 'EADDRINUSE':
      return new Error(`${at}: the port is in use by another process (another modelferry?): stop it, or choose another port with ${FLAG_OF[key]} or ${key}`);
    case 'EACCES':
      return new ConfigError(`${at}: ports below 1024 need privileges this process lacks: use a port from 1024 up (8080), or grant CAP_NET_BIND_SERVICE`);
    case 'EADDRNOTAVAIL':
      return new ConfigError(`${at}: ${host} is not an address of this machine: use 0.0.0.0 (every interface) or one of its addresses, with --host or http.host`);
    case 'ENOTFOUND':
    case 'EAI_AGAIN':
      return new ConfigError(`${at}: the host name ${host} does not resolve: use an IP address, with --host or http.host`);
    default:
      return new ConfigError(`${at}: cannot listen: ${(error as Error).message}`);
  }
}
