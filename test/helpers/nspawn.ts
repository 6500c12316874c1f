import { execFile, spawn, type ChildProcess } from 'node:child_process';
import { createHash } from 'node:crypto';
import { existsSync, readFileSync, readdirSync } from 'node:fs';
import { mkdir, rename, rm, writeFile } from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import { promisify } from 'node:util';
import { until } from './harness.ts';

// A Debian 12 machine with systemd as its PID 1, for the unit under a real systemd where
// the machine's own PID 1 is not systemd (a container, CI). debootstrap builds its root
// file system once, from Debian's packages, and it is kept unchanged in
//   $MODELFERRY_NSPAWN_CACHE, else $XDG_CACHE_HOME/modelferry-tests, else ~/.cache/modelferry-tests
// in a folder named after what it holds (suite, variant, packages), so runs after the
// first reuse it; change INCLUDE and a new one is built beside it. Each container boots on
// an overlay of it whose writes go to the test's temporary folder, with a network of its
// own that has only loopback (--private-network): nothing in it reaches the machine's
// network. Commands run in it through nsenter. The container is killed when the test stops
// it, and by a watchdog if the test process dies first.

const SUITE = 'bookworm';
const VARIANT = 'minbase';
const INCLUDE = ['systemd', 'systemd-sysv', 'dbus', 'curl', 'ca-certificates', 'procps'];
const run = promisify(execFile);

/** Where the root file system is kept between runs. */
export function rootfsFolder(): string {
  const cache = process.env.MODELFERRY_NSPAWN_CACHE
    ?? path.join(process.env.XDG_CACHE_HOME ?? path.join(os.homedir(), '.cache'), 'modelferry-tests');
  const key = createHash('sha256').update(JSON.stringify([SUITE, VARIANT, INCLUDE])).digest('hex').slice(0, 12);
  return path.join(cache, `debian-${SUITE}-${VARIANT}-${key}`);
}

/**
 * The cached root file system, built with debootstrap when it is not there yet (a folder
 * renamed into place once complete, so a run that died half-way leaves nothing reused).
 */
export async function debianRootfs(log: (line: string) => void): Promise<string> {
  const folder = rootfsFolder();
  if (existsSync(folder)) return folder;
  await mkdir(path.dirname(folder), { recursive: true });
  const partial = `${folder}.partial-${process.pid}`;
  await rm(partial, { recursive: true, force: true });
  const started = Date.now();
  log(`building ${folder} with debootstrap (once; later runs reuse it)`);
  try {
    await run('debootstrap', [`--variant=${VARIANT}`, `--include=${INCLUDE.join(',')}`, SUITE, partial], { maxBuffer: 64 * 1024 * 1024 });
  } catch (error) {
    await rm(partial, { recursive: true, force: true });
    const { stdout = '', stderr = '' } = error as { stdout?: string; stderr?: string };
    throw new Error(`debootstrap failed: ${(stderr || stdout).trim().split('\n').slice(-5).join('\n')}`);
  }
  try {
    await rename(partial, folder);
  } catch (error) {
    // Another run finished first: use its copy.
    if (!existsSync(folder)) throw error;
    await rm(partial, { recursive: true, force: true });
  }
  log(`debootstrap took ${Math.round((Date.now() - started) / 1000)} s`);
  return folder;
}

const statOf = (pid: number) => {
  try {
    const text = readFileSync(`/proc/${pid}/stat`, 'utf8');
    return { comm: text.slice(text.indexOf('(') + 1, text.lastIndexOf(')')), ppid: Number(text.slice(text.lastIndexOf(')') + 2).split(' ')[1]) };
  } catch {
    return undefined;
  }
};

export class Container {
  /** The container's / as this machine sees it: files written here are the container's. */
  readonly root: string;
  readonly #lower: string;
  readonly #work: string;
  #nspawn: ChildProcess | undefined;
  #watchdog: ChildProcess | undefined;
  #leader = 0;
  #console = '';

  /** A container on an overlay of `rootfs`, its writes under `work` (not booted yet). */
  constructor(rootfs: string, work: string) {
    this.root = path.join(work, 'root');
    this.#lower = rootfs;
    this.#work = work;
  }

  /** Mounts the overlay that is the container's root. */
  async mount(): Promise<void> {
    for (const folder of ['root', 'upper', 'overlay-work']) await mkdir(path.join(this.#work, folder));
    await run('mount', ['-t', 'overlay', 'overlay', '-o', `lowerdir=${this.#lower},upperdir=${path.join(this.#work, 'upper')},workdir=${path.join(this.#work, 'overlay-work')}`, this.root]);
    // What an installed Debian (or Raspberry Pi OS) has and debootstrap leaves out: without
    // it, "localhost" does not resolve.
    await writeFile(path.join(this.root, 'etc/hosts'), '127.0.0.1\tlocalhost\n::1\t\tlocalhost ip6-localhost ip6-loopback\n');
  }

  /** Boots systemd in it and waits until the system is up. */
  async boot(): Promise<void> {
    const nspawn = spawn('systemd-nspawn', [
      '--quiet', '--console=read-only', '--register=no', '--keep-unit', '--private-network',
      `--machine=modelferry-test-${process.pid}`, '--directory', this.root,
      // The unit runs /usr/bin/node: the Node.js running these tests.
      `--bind-ro=${process.execPath}:/usr/bin/node`,
      '--boot',
    ], { stdio: ['ignore', 'pipe', 'pipe'] });
    this.#nspawn = nspawn;
    const keep = (chunk: Buffer) => { this.#console = (this.#console + chunk.toString()).slice(-20_000); };
    nspawn.stdout!.on('data', keep);
    nspawn.stderr!.on('data', keep);
    const exited = () => nspawn.exitCode !== null || nspawn.signalCode !== null;
    // The container's PID 1 is nspawn's child once it runs systemd.
    this.#leader = await until('the container\'s systemd to start', async () => {
      if (exited()) throw new Error(`systemd-nspawn exited: ${this.#console}`);
      return readdirSync('/proc').filter((name) => /^\d+$/.test(name)).map(Number)
        .find((pid) => { const stat = statOf(pid); return stat !== undefined && stat.ppid === nspawn.pid && stat.comm === 'systemd'; });
    }, 60_000);
    // Killing nspawn would leave the container running: its PID 1 is what must die.
    this.#watchdog = spawn('sh', ['-c', 'while kill -0 "$0" 2>/dev/null; do sleep 1; done; kill -KILL "$1"; sleep 1; umount -l "$2"; rm -rf "$3"',
      String(process.pid), String(this.#leader), this.root, this.#work], { detached: true, stdio: 'ignore' });
    this.#watchdog.unref();
    const state = await until('the container to finish booting', async () => {
      if (exited()) throw new Error(`systemd-nspawn exited: ${this.#console}`);
      const { stdout } = await this.exec('systemctl', 'is-system-running', '--wait').catch((error: { stdout?: string }) => ({ stdout: error.stdout ?? '' }));
      return ['running', 'degraded'].includes(stdout.trim()) ? stdout.trim() : undefined;
    }, 120_000);
    if (state === 'degraded') throw new Error(`the container booted degraded: ${(await this.exec('systemctl', '--failed', '--no-pager')).stdout}`);
  }

  /** A command in the container (all its namespaces), with a plain environment plus `env`. */
  exec(command: string, ...args: string[]): Promise<{ stdout: string; stderr: string }> {
    return this.execWith({}, command, ...args);
  }

  execWith(env: Record<string, string>, command: string, ...args: string[]): Promise<{ stdout: string; stderr: string }> {
    return run('nsenter', ['--target', String(this.#leader), '--all', 'env', '-i', 'PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin', ...Object.entries(env).map(([k, v]) => `${k}=${v}`), command, ...args], { maxBuffer: 64 * 1024 * 1024 });
  }

  /** What the container printed on its console (the end of it). */
  get console(): string {
    return this.#console;
  }

  /** Kills every process of the container, then unmounts its root. Safe to call at any point. */
  async stop(): Promise<void> {
    const nspawn = this.#nspawn;
    if (this.#leader > 0) {
      try { process.kill(this.#leader, 'SIGKILL'); } catch { /* already gone */ }
    }
    if (nspawn && nspawn.exitCode === null && nspawn.signalCode === null) {
      await new Promise((resolve) => nspawn.once('exit', resolve));
    }
    if (this.#watchdog?.pid) {
      try { process.kill(this.#watchdog.pid, 'SIGKILL'); } catch { /* already gone */ }
    }
    if (existsSync(this.root)) await run('umount', [this.root]).catch(() => run('umount', ['--lazy', this.root]).catch(() => undefined));
  }
}
