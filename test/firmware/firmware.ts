import { execFile, spawn, type ChildProcess } from 'node:child_process';
import { createHash, generateKeyPairSync, sign, type KeyObject } from 'node:crypto';
import { mkdir, mkdtemp, readdir, rm, symlink } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { promisify } from 'node:util';
import type { HasTeardown } from '../helpers/harness.ts';
import { ROOT, type DaemonProcess } from '../helpers/daemon-process.ts';
import { I386_PKG_CONFIG_LIBDIR, XTENSA_PICOLIBC_SPECS } from '../helpers/system-paths.ts';
import { ALL_TOKEN } from '../helpers/tokens.ts';

// The firmware's host build (cmake, ctest) and its device simulator, for the tests in
// test/firmware. Nothing here imports daemon/ code: the gateway runs as a child process.

const run = promisify(execFile);

export const FIRMWARE = path.join(ROOT, 'firmware');
export const BUILD = path.join(FIRMWARE, 'build', 'host');
export const SIM = path.join(BUILD, 'modelferry-sim');

export const BUILD_32 = path.join(FIRMWARE, 'build', 'host32');
export const CORE = path.join(FIRMWARE, 'components', 'modelferry', 'core');

const builds = new Map<string, Promise<void>>();

/**
 * Configures and builds firmware/host into `dir` (under ASan and UBSan; `cmakeArgs` add to
 * the configuration, `env` to its environment). Test files run in separate processes, so a
 * lock file serialises them: the first builds, the next finds everything up to date.
 */
function buildHost(dir: string, cmakeArgs = '', env: NodeJS.ProcessEnv = {}): Promise<void> {
  let built = builds.get(dir);
  if (!built) {
    built = (async () => {
      await mkdir(dir, { recursive: true });
      const script = `cmake -S '${path.join(FIRMWARE, 'host')}' -B '${dir}' ${cmakeArgs} >/dev/null && cmake --build '${dir}' -j2`;
      try {
        await run('flock', [path.join(FIRMWARE, 'build', '.lock'), 'sh', '-c', script], { maxBuffer: 16 * 1024 * 1024, env: { ...process.env, ...env } });
      } catch (error) {
        const e = error as { stdout?: string; stderr?: string; message: string };
        throw new Error(`firmware host build in ${dir} failed: ${e.message}\n${e.stdout ?? ''}\n${e.stderr ?? ''}`);
      }
    })();
    builds.set(dir, built);
  }
  return built;
}

/** The host build (tests and modelferry-sim) in firmware/build/host. */
export const buildFirmware = (): Promise<void> => buildHost(BUILD);

/** The same build as 32-bit programs (-m32, the i386 libraries) in firmware/build/host32. */
export const buildFirmware32 = (): Promise<void> => buildHost(BUILD_32, '-DCMAKE_C_FLAGS=-m32', { PKG_CONFIG_LIBDIR: I386_PKG_CONFIG_LIBDIR });

/** .text (with read-only data) the core may take on the device. */
export const CORE_TEXT_BUDGET = 32 * 1024;

export interface ObjectSize {
  file: string;
  text: number;
  data: number;
  bss: number;
}

/**
 * Compiles every core source for Xtensa (Debian's xtensa-lx106-elf-gcc with picolibc) as
 * ESP-IDF would: -Os, warnings as errors, and int32_t as `long` as with Espressif's
 * compilers, so a format string written for a host's `int` fails here. Returns each
 * object's sizes (`size`, Berkeley format: text includes read-only data); throws with the
 * compiler's messages.
 */
export async function crossCompileCore(): Promise<ObjectSize[]> {
  const dir = await mkdtemp(path.join(tmpdir(), 'modelferry-xtensa-'));
  try {
    // Only the libraries' own headers: the host's /usr/include would shadow picolibc's.
    await mkdir(path.join(dir, 'include'));
    await symlink('/usr/include/sodium.h', path.join(dir, 'include', 'sodium.h'));
    await symlink('/usr/include/sodium', path.join(dir, 'include', 'sodium'));
    const component = path.dirname(CORE);
    const sources = (await readdir(CORE)).filter((name) => name.endsWith('.c')).sort();
    const flags = [
      `--specs=${XTENSA_PICOLIBC_SPECS}`, '-std=gnu11', '-Os', '-ffunction-sections', '-fdata-sections',
      '-Wall', '-Wextra', '-Wformat=2', '-Werror',
      '-U__INT32_TYPE__', '-D__INT32_TYPE__=long', '-U__UINT32_TYPE__', '-D__UINT32_TYPE__=long unsigned int',
      '-U__INT_LEAST32_TYPE__', '-D__INT_LEAST32_TYPE__=long', '-U__UINT_LEAST32_TYPE__', '-D__UINT_LEAST32_TYPE__=long unsigned int',
      `-I${path.join(component, 'include')}`, `-I${CORE}`, '-I/usr/include/cjson', `-I${path.join(dir, 'include')}`,
    ];
    const objects: string[] = [];
    for (const source of sources) {
      const object = path.join(dir, source.replace(/\.c$/, '.o'));
      try {
        await run('xtensa-lx106-elf-gcc', [...flags, '-c', path.join(CORE, source), '-o', object]);
      } catch (error) {
        throw new Error(`xtensa-lx106-elf-gcc ${source}: ${(error as { stderr?: string }).stderr ?? (error as Error).message}`);
      }
      objects.push(object);
    }
    const { stdout } = await run('xtensa-lx106-elf-size', objects);
    return stdout.trim().split('\n').slice(1).map((line) => {
      const [text, data, bss, , , file] = line.trim().split(/\s+/);
      return { file: path.basename(file!).replace(/\.o$/, '.c'), text: Number(text), data: Number(data), bss: Number(bss) };
    });
  } finally {
    await rm(dir, { recursive: true, force: true });
  }
}

export interface SimEvent {
  event: string;
  detail?: string;
  ms: number;
}

/** A running modelferry-sim: its JSON-line events as they arrive, its exit. */
export class Sim {
  readonly child: ChildProcess;
  readonly events: SimEvent[] = [];
  stderr = '';
  readonly exited: Promise<{ code: number | null; signal: NodeJS.Signals | null }>;
  #partial = '';
  #done = false;
  readonly #watchers = new Set<() => void>();

  readonly args: string[];

  constructor(args: string[], env: NodeJS.ProcessEnv = {}) {
    this.args = args;
    this.child = spawn(SIM, args, { stdio: ['ignore', 'pipe', 'pipe'], env: { ...process.env, ...env } });
    this.child.stdout!.setEncoding('utf8').on('data', (text: string) => {
      const lines = (this.#partial + text).split('\n');
      this.#partial = lines.pop()!;
      for (const line of lines) if (line.trim()) this.events.push(JSON.parse(line) as SimEvent);
      this.#notify();
    });
    this.child.stderr!.setEncoding('utf8').on('data', (text: string) => { this.stderr += text; });
    this.exited = new Promise((resolve) => {
      this.child.once('close', (code, signal) => {
        this.#done = true;
        this.#notify();
        resolve({ code, signal });
      });
    });
  }

  get running(): boolean {
    return !this.#done && this.child.exitCode === null && this.child.signalCode === null;
  }

  /** The first event (past or to come) that matches, or a rejection naming what was seen. */
  waitFor(match: (e: SimEvent) => boolean, what: string, timeoutMs = 30_000): Promise<SimEvent> {
    return new Promise((resolve, reject) => {
      const check = () => {
        const found = this.events.find(match);
        if (found) { done(); resolve(found); } else if (this.#done) { done(); reject(new Error(`sim exited before ${what}\n${this.transcript()}`)); }
      };
      const timer = setTimeout(() => { done(); reject(new Error(`no ${what} within ${timeoutMs} ms\n${this.transcript()}`)); }, timeoutMs);
      const done = () => { clearTimeout(timer); this.#watchers.delete(check); };
      this.#watchers.add(check);
      check();
    });
  }

  transcript(): string {
    return `${this.args.join(' ')}\n${this.events.map((e) => JSON.stringify(e)).join('\n')}\nstderr: ${this.stderr}`;
  }

  kill(): Promise<unknown> {
    if (this.running) this.child.kill('SIGKILL');
    return this.exited;
  }

  #notify(): void {
    for (const w of [...this.#watchers]) w();
  }
}

export function startSim(t: HasTeardown, args: string[], env?: NodeJS.ProcessEnv): Sim {
  const sim = new Sim(args, env);
  t.teardown(() => sim.kill());
  return sim;
}

/** An ed25519 pipeline key: the raw public key in base64 (for trust.keys and --public-key) and a signer (v2 with a sequence). */
export interface PipelineKey {
  publicKey: string;
  keyId: string;
  sign(name: string, version: string, bytes: Buffer, seq?: string): string;
}

export function pipelineKey(): PipelineKey {
  const { publicKey, privateKey } = generateKeyPairSync('ed25519');
  const raw = publicKey.export({ format: 'der', type: 'spki' }).subarray(-32);
  return {
    publicKey: raw.toString('base64'),
    keyId: createHash('sha256').update(raw).digest('hex').slice(0, 16),
    sign: (name, version, bytes, seq) => signWith(privateKey, name, version, bytes, seq),
  };
}

function signWith(key: KeyObject, name: string, version: string, bytes: Buffer, seq?: string): string {
  const fields = `${name}:${version}:${sha256(bytes)}:${bytes.length}`;
  const message = seq === undefined ? `modelferry-v1:${fields}` : `modelferry-v2:${fields}:${seq}`;
  return sign(null, Buffer.from(message, 'utf8'), key).toString('base64');
}

export function sha256(bytes: Buffer): string {
  return createHash('sha256').update(bytes).digest('hex');
}

/** PUT /v1/models/{name}/{version} signed with `key`; throws unless stored. */
export async function pushSigned(daemon: DaemonProcess, key: PipelineKey, name: string, version: string, bytes: Buffer): Promise<string> {
  const response = await daemon.fetch(`/v1/models/${name}/${version}`, {
    method: 'PUT',
    token: ALL_TOKEN,
    body: bytes,
    headers: { 'X-Signature': key.sign(name, version, bytes), 'X-Signature-Key-Id': key.keyId, 'Content-Type': 'application/octet-stream' },
  });
  if (response.status !== 201) throw new Error(`push ${name}@${version}: ${response.status} ${await response.text()}`);
  return sha256(bytes);
}

export interface InventoryDevice {
  mac: string;
  state: string | null;
  running: { sha256: string } | null;
  report: Record<string, unknown> | null;
}

export async function devices(daemon: DaemonProcess): Promise<InventoryDevice[]> {
  const response = await daemon.fetch('/v1/devices', { token: ALL_TOKEN });
  const body = await response.json() as { devices: InventoryDevice[] };
  return body.devices;
}

/** Polls GET /v1/devices until `ok` holds (no timing is asserted: the bound is only a hang guard). */
export async function untilInventory(daemon: DaemonProcess, ok: (list: InventoryDevice[]) => boolean, what: string, timeoutMs = 45_000): Promise<InventoryDevice[]> {
  const deadline = Date.now() + timeoutMs;
  let list: InventoryDevice[] = [];
  while (Date.now() < deadline) {
    list = await devices(daemon);
    if (ok(list)) return list;
    await new Promise((resolve) => setTimeout(resolve, 250));
  }
  throw new Error(`inventory never showed ${what}: ${JSON.stringify(list, null, 1)}`);
}
