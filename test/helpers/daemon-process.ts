import { spawn, type ChildProcess } from 'node:child_process';
import { writeFile } from 'node:fs/promises';
import net from 'node:net';
import os from 'node:os';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import YAML from 'yaml';
import { fetchWithToken, tempDir, type FetchInit, type HasTeardown } from './harness.ts';
import { ALL_TOKEN, TEST_TOKENS } from './tokens.ts';

// The gateway and its CLI as real child processes: `node test/helpers/cli-from-sources.js ...`,
// the sources of what systemd or a Jenkins step runs compiled (dist/cli/main.js; the
// compiled package has its own test in test/build/). Real LevelDB, real blob folder, real HTTP
// on a loopback port. Every child is killed in the test's teardown (and, as a last resort,
// when the test worker exits).
//
// Nothing here may import daemon/ code, directly or through gateway.ts: that would load the
// whole daemon into the test process, which these tests run as a child instead.

export const ROOT = fileURLToPath(new URL('../../', import.meta.url));
/** What node runs for the CLI from the sources: `node ...CLI_ARGS <command>`. */
export const CLI_ARGS: readonly string[] = [path.join(ROOT, 'test', 'helpers', 'cli-from-sources.js')];

export interface ExitStatus {
  code: number | null;
  signal: NodeJS.Signals | null;
}

export type LogLine = Record<string, unknown> & { level: number; msg?: string };

const live = new Set<ChildProcess>();
process.once('exit', () => {
  for (const child of live) child.kill('SIGKILL');
});

/** A loopback port that was free a moment ago: bound on port 0, read and released. */
export async function freePort(): Promise<number> {
  const server = net.createServer();
  await new Promise<void>((resolve, reject) => {
    server.once('error', reject);
    server.listen(0, '127.0.0.1', () => resolve());
  });
  const { port } = server.address() as net.AddressInfo;
  await new Promise<void>((resolve) => server.close(() => resolve()));
  return port;
}

/** The parent's environment without anything that would configure the daemon or the CLI. */
export function cleanEnv(extra: NodeJS.ProcessEnv = {}): NodeJS.ProcessEnv {
  const env: NodeJS.ProcessEnv = {};
  for (const [name, value] of Object.entries(process.env)) {
    if (name.startsWith('MODELFERRY_') || name === 'STATE_DIRECTORY' || name === 'CACHE_DIRECTORY') continue;
    env[name] = value;
  }
  return { ...env, ...extra };
}

export interface SpawnOptions {
  cwd?: string;
  /** Added to a clean environment (see cleanEnv). */
  env?: NodeJS.ProcessEnv;
  /**
   * A command that runs node for us, e.g. `['ip', 'netns', 'exec', NS]` (test/lan/). Every
   * word of it must exec the next, so that the child's pid is node's and signals reach it.
   */
  prefix?: string[];
  /** What runs instead of `node cli-from-sources.js` (before `args`), e.g. an installed `node dist/cli/main.js`. */
  command?: string[];
}

/** `node test/helpers/cli-from-sources.js <args>` with piped output, killed if still running when the worker exits. */
function spawnCli(args: string[], options: SpawnOptions): ChildProcess {
  const [command, ...words] = [...(options.prefix ?? []), ...(options.command ?? [process.execPath, ...CLI_ARGS]), ...args];
  const child = spawn(command!, words, {
    cwd: options.cwd ?? ROOT,
    env: cleanEnv(options.env),
    stdio: ['ignore', 'pipe', 'pipe'],
  });
  live.add(child);
  return child;
}

/**
 * A running `modelferry serve` child. stdout is split into lines and parsed as JSON log
 * lines as they arrive; stderr is kept as text.
 */
export class DaemonProcess {
  readonly child: ChildProcess;
  readonly lines: string[] = [];
  stderr = '';
  readonly exited: Promise<ExitStatus>;
  /** Set by startDaemon once the gateway said where it listens. */
  url = '';
  port = 0;
  #partial = '';
  #status: ExitStatus | undefined;
  readonly #watchers = new Set<() => void>();

  constructor(args: string[], options: SpawnOptions = {}) {
    this.child = spawnCli(args, options);
    this.child.stdout!.setEncoding('utf8').on('data', (text: string) => {
      const parts = (this.#partial + text).split('\n');
      this.#partial = parts.pop()!;
      for (const line of parts) if (line.trim() !== '') this.lines.push(line);
      this.#notify();
    });
    this.child.stderr!.setEncoding('utf8').on('data', (text: string) => {
      this.stderr += text;
    });
    this.exited = new Promise((resolve) => {
      // 'close' comes after the pipes are drained, so the last log lines and stderr are in.
      this.child.once('close', (code, signal) => {
        live.delete(this.child);
        if (this.#partial.trim() !== '') this.lines.push(this.#partial);
        this.#partial = '';
        this.#status = { code, signal };
        this.#notify();
        resolve(this.#status);
      });
    });
  }

  get pid(): number {
    return this.child.pid!;
  }

  get running(): boolean {
    return this.#status === undefined && this.child.exitCode === null && this.child.signalCode === null;
  }

  /** Every stdout line that is a JSON object (the log); other lines are in `lines`. */
  logs(): LogLine[] {
    const parsed: LogLine[] = [];
    for (const line of this.lines) {
      try {
        const value = JSON.parse(line) as unknown;
        if (value !== null && typeof value === 'object' && !Array.isArray(value)) parsed.push(value as LogLine);
      } catch {
        // not a log line
      }
    }
    return parsed;
  }

  /** Resolves with the first log line (already written or still to come) that matches. */
  // Generous: on a shared 2-core machine a daemon started through tsx can take tens of seconds.
  waitForLog(match: string | ((line: LogLine) => boolean), timeoutMs = 90_000): Promise<LogLine> {
    const test = typeof match === 'string' ? (line: LogLine) => line.msg === match : match;
    return new Promise((resolve, reject) => {
      const check = () => {
        const found = this.logs().find(test);
        if (found) {
          done();
          resolve(found);
        } else if (this.#status) {
          done();
          reject(new Error(`modelferry exited (${describe(this.#status)}) before logging ${String(match)}\nstdout:\n${this.lines.join('\n')}\nstderr:\n${this.stderr}`));
        }
      };
      const timer = setTimeout(() => {
        done();
        reject(new Error(`modelferry logged no ${String(match)} within ${timeoutMs} ms\nstdout:\n${this.lines.join('\n')}\nstderr:\n${this.stderr}`));
      }, timeoutMs);
      const done = () => {
        clearTimeout(timer);
        this.#watchers.delete(check);
      };
      this.#watchers.add(check);
      check();
    });
  }

  /** Sends `signal` and waits for the process to end. */
  async stop(signal: NodeJS.Signals = 'SIGTERM'): Promise<ExitStatus> {
    if (this.running) this.child.kill(signal);
    return this.exited;
  }

  /** SIGKILL: no clean-up of any kind, as in a power cut or the OOM killer. */
  kill(): Promise<ExitStatus> {
    return this.stop('SIGKILL');
  }

  /** fetch against the daemon; `token` adds a bearer header. */
  fetch(pathname: string, init?: FetchInit): Promise<Response> {
    return fetchWithToken(this.url, pathname, init);
  }

  #notify(): void {
    for (const watcher of [...this.#watchers]) watcher();
  }
}

function describe(status: ExitStatus): string {
  return status.signal ? `signal ${status.signal}` : `exit code ${status.code}`;
}

/** Spawns `modelferry <args>` with no waiting; the test's teardown kills it if still running. */
export function spawnModelferry(t: HasTeardown, args: string[], options: SpawnOptions = {}): DaemonProcess {
  const daemon = new DaemonProcess(args, options);
  t.teardown(async () => {
    if (daemon.running) await daemon.kill();
  });
  return daemon;
}

export type ConfigSections = Record<string, Record<string, unknown>>;

export interface StartOptions extends SpawnOptions {
  /** Folder for config, state and cache; a fresh temporary one when absent. Reuse it to restart. */
  dir?: string;
  /** Sections merged over the test configuration (key by key). */
  config?: ConfigSections;
  /** More `serve` arguments after `--config FILE`. */
  args?: string[];
  /** The config file is YAML (config.yaml) unless this asks for JSON (config.json). */
  configFormat?: 'yaml' | 'json';
}

export interface RunningDaemon extends DaemonProcess {
  dir: string;
  configFile: string;
  state: string;
  cache: string;
}

/** The configuration the tests run on: loopback, temp folders, mDNS off, the test tokens, info logs. */
export function testConfig(dir: string, port: number, overrides: ConfigSections = {}): ConfigSections {
  const base: ConfigSections = {
    http: { host: '127.0.0.1', port, shutdownGraceSeconds: 10 },
    paths: { state: path.join(dir, 'state'), cache: path.join(dir, 'cache') },
    log: { level: 'info' },
    mdns: { enabled: false },
    auth: { tokens: TEST_TOKENS },
    // Every test client is 127.0.0.1, standing in for a fleet of addresses (see gateway.ts).
    devices: { newPerAddressPerMinute: 1_000_000 },
    // The tests of a file share a daemon and push at the same time; the limit's own tests set it.
    artifacts: { maxConcurrentPushes: 64 },
  };
  for (const [section, values] of Object.entries(overrides)) base[section] = { ...base[section], ...values };
  return base;
}

/**
 * Writes a YAML config into the test folder and runs `modelferry serve --config FILE` until
 * it logs "gateway ready". A port that another process took between choosing and binding
 * is retried with another one.
 */
export async function startDaemon(t: HasTeardown, options: StartOptions = {}): Promise<RunningDaemon> {
  const dir = options.dir ?? await tempDir(t, 'modelferry-proc-');
  const json = options.configFormat === 'json';
  const configFile = path.join(dir, json ? 'config.json' : 'config.yaml');
  for (let attempt = 1; ; attempt++) {
    const port = await freePort();
    const config = testConfig(dir, port, options.config);
    await writeFile(configFile, json ? JSON.stringify(config, null, 2) : YAML.stringify(config));
    const daemon = spawnModelferry(t, ['serve', '--config', configFile, ...(options.args ?? [])], options) as RunningDaemon;
    try {
      const listening = await daemon.waitForLog('listening');
      await daemon.waitForLog('gateway ready');
      daemon.port = Number(listening.port);
      daemon.url = `http://127.0.0.1:${daemon.port}`;
    } catch (error) {
      if (daemon.running) await daemon.kill();
      if (attempt < 3 && /EADDRINUSE/.test(daemon.stderr)) continue;
      throw error;
    }
    daemon.dir = dir;
    daemon.configFile = configFile;
    daemon.state = String((config.paths as { state: string }).state);
    daemon.cache = String((config.paths as { cache: string }).cache);
    return daemon;
  }
}

export interface CliResult extends ExitStatus {
  stdout: string;
  stderr: string;
}

// Each CLI run loads TypeScript through tsx, which costs about a CPU second. Tests of a file
// run concurrently; more CLI processes at once than cores only makes each one slower, so
// they queue here (the daemons, long-lived, do not).
const CLI_SLOTS = Math.max(2, os.availableParallelism());
let cliRunning = 0;
const cliQueue: Array<() => void> = [];

async function cliSlot(): Promise<() => void> {
  if (cliRunning >= CLI_SLOTS) await new Promise<void>((resolve) => cliQueue.push(resolve));
  cliRunning++;
  return () => {
    cliRunning--;
    cliQueue.shift()?.();
  };
}

/** Runs one CLI command to its end (killed after `timeoutMs`) and returns its exit and output. */
export async function runCli(args: string[], options: SpawnOptions & { timeoutMs?: number } = {}): Promise<CliResult> {
  const release = await cliSlot();
  try {
    return await runCliNow(args, options);
  } finally {
    release();
  }
}

async function runCliNow(args: string[], options: SpawnOptions & { timeoutMs?: number }): Promise<CliResult> {
  const child = spawnCli(args, options);
  let stdout = '';
  let stderr = '';
  child.stdout!.setEncoding('utf8').on('data', (text: string) => { stdout += text; });
  child.stderr!.setEncoding('utf8').on('data', (text: string) => { stderr += text; });
  const timeoutMs = options.timeoutMs ?? 45_000;
  const timer = setTimeout(() => {
    stderr += `\n[test helper: killed after ${timeoutMs} ms]`;
    child.kill('SIGKILL');
  }, timeoutMs);
  try {
    const [code, signal] = await new Promise<[number | null, NodeJS.Signals | null]>((resolve, reject) => {
      child.once('error', reject);
      child.once('close', (c, s) => resolve([c, s]));
    });
    return { code, signal, stdout, stderr };
  } finally {
    clearTimeout(timer);
    live.delete(child);
  }
}

/**
 * PUT /v1/assignments/{selector} with the all-scopes token, for setup that is not the subject
 * of a test; throws unless the daemon accepts it.
 */
export async function assignHttp(daemon: DaemonProcess, selector: string, model: string, version: string): Promise<void> {
  const response = await daemon.fetch(`/v1/assignments/${selector}`, {
    method: 'PUT', token: ALL_TOKEN, headers: { 'Content-Type': 'application/json' }, body: JSON.stringify({ model, version }),
  });
  if (response.status >= 300) throw new Error(`assignment of ${selector}: ${response.status} ${await response.text()}`);
}
