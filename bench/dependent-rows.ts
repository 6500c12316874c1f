import { execFile, spawn, type ChildProcess } from 'node:child_process';
import { existsSync } from 'node:fs';
import { mkdir } from 'node:fs/promises';
import path from 'node:path';
import { promisify } from 'node:util';
import { CORE_TEXT_BUDGET, crossCompileCore } from '../test/firmware/firmware.ts';
import { makeProgram } from '../test/helpers/programs.ts';
import { TOKEN, expectOk, startGateway, stopChild, which } from './servers.ts';
import { configFor } from './startup.ts';

// Rows that need parts other helpers build: the firmware's device simulator (fleet
// convergence), its core cross-compiled for Xtensa (code size) and upstream sync
// (incremental sync). Where a part is missing the row says so.

const run = promisify(execFile);
const auth = { Authorization: `Bearer ${TOKEN}` };

export interface Skipped {
  name: string;
  target: string;
  skipped: string;
}

export interface Measured {
  name: string;
  target: string;
  value: string;
  met: boolean;
  raw: Record<string, unknown>;
}

export async function push(base: string, name: string, version: string, bytes: Buffer): Promise<void> {
  await expectOk(fetch(`${base}/v1/models/${name}/${version}`, { method: 'PUT', body: bytes, headers: auth }));
}

/** PUT /v1/assignments/{selector}: `model` at `version` (default `latest`). */
export async function assign(base: string, selector: string, model: string, version = 'latest'): Promise<void> {
  await expectOk(fetch(`${base}/v1/assignments/${selector}`, {
    method: 'PUT', headers: { ...auth, 'Content-Type': 'application/json' }, body: JSON.stringify({ model, version }),
  }));
}

/**
 * The firmware's simulator: an existing build, otherwise one of the bench's own in `dir`
 * (so as not to race the firmware tests' build folder); a string is why there is none.
 */
export async function simulator(root: string, dir: string): Promise<{ path: string } | string> {
  const firmware = path.join(root, 'firmware');
  if (!existsSync(path.join(firmware, 'host', 'CMakeLists.txt'))) return 'the firmware simulator (firmware/host, modelferry-sim) is not part of this checkout yet';
  const existing = path.join(firmware, 'build', 'host', 'modelferry-sim');
  if (existsSync(existing)) return { path: existing };
  const build = path.join(dir, 'sim-build');
  const built = path.join(build, 'modelferry-sim');
  if (existsSync(built)) return { path: built };
  if (!await which('cmake')) return 'cmake is not installed, so modelferry-sim cannot be built';
  try {
    await run('sh', ['-c', `cmake -S '${path.join(firmware, 'host')}' -B '${build}' >/dev/null && cmake --build '${build}' -j2 --target modelferry-sim`], { maxBuffer: 16 << 20 });
  } catch (error) {
    return `modelferry-sim did not build: ${(error as Error).message.split('\n')[0]}`;
  }
  return { path: built };
}

export async function incrementalSync(root: string, entry: string[], dir: string, children: ChildProcess[]): Promise<Skipped | Measured> {
  const name = 'incremental sync: bytes transferred when 1 of 200 models changed, vs that blob';
  const target = '≤ blob + manifest + 10 %';
  if (!existsSync(path.join(root, 'daemon', 'sync'))) return { name, target, skipped: 'upstream sync (daemon/sync/) is not part of this checkout yet' };
  const upDir = path.join(dir, 'upstream');
  const downDir = path.join(dir, 'downstream');
  await mkdir(upDir);
  await mkdir(downDir);
  const up = 'http://127.0.0.1:18110';
  const down = 'http://127.0.0.1:18111';
  const upstream = await startGateway(entry, await configFor(upDir, 18110), 18110, children);
  const blobSize = 32 * 1024;
  for (let i = 0; i < 200; i += 8) {
    await Promise.all(Array.from({ length: 8 }, (_, j) => push(up, `model-${i + j}`, '1', makeProgram(blobSize))));
  }
  await assign(up, 'default', 'model-0');
  const downstream = await startGateway(entry, await configFor(downDir, 18111, {
    upstream: { url: `${up}/v1/manifest`, token: TOKEN, schedule: '0 0 1 1 *' },
  }), 18111, children);
  const sync = async () => (await (await expectOk(fetch(`${down}/v1/sync`, { method: 'POST', headers: auth }))).json()) as { result: string; bytes: number; fetched: number; models: number };
  // The sync that runs at start may have done the full fetch already; either way, all 200 must be in.
  const first = await sync();
  const synced = (await (await expectOk(fetch(`${down}/v1/models`, { headers: auth }))).json()) as { models: unknown[] };
  if (synced.models.length !== 200) throw new Error(`after the first sync the downstream holds ${synced.models.length} models, not 200`);
  await push(up, 'model-7', '2', makeProgram(blobSize));
  const manifestBytes = (await (await expectOk(fetch(`${up}/v1/manifest`, { headers: auth }))).arrayBuffer()).byteLength;
  const second = await sync();
  await stopChild(downstream);
  await stopChild(upstream);
  const limit = (blobSize + manifestBytes) * 1.1;
  return {
    name, target,
    value: `${(second.bytes / 1024).toFixed(1)} KiB for a ${blobSize / 1024} KiB blob and a ${(manifestBytes / 1024).toFixed(1)} KiB manifest (${second.fetched} fetched)`,
    met: second.bytes <= limit,
    raw: { blobBytes: blobSize, manifestBytes, bytes: second.bytes, fetched: second.fetched, result: second.result, firstResult: first.result },
  };
}

export async function fleetConvergence(root: string, entry: string[], dir: string, children: ChildProcess[], rounds = 5, count = 200): Promise<Skipped | Measured> {
  const name = `fleet convergence: ${count} modelferry-sim devices long-polling, push to all installed (median of ${rounds})`;
  const target = '≤ 5 s';
  const found = await simulator(root, dir);
  if (typeof found === 'string') return { name, target, skipped: found };
  const sim = found.path;
  const fleetDir = path.join(dir, 'sims');
  await mkdir(fleetDir);
  const base = 'http://127.0.0.1:18120';
  const gateway = await startGateway(entry, await configFor(fleetDir, 18120), 18120, children);
  let version = 1;
  await push(base, 'fleet', String(version), makeProgram(64 * 1024));
  await assign(base, 'default', 'fleet');
  const sims: ChildProcess[] = [];
  try {
    for (let i = 0; i < count; i++) {
      const mac = `02:00:00:00:${(i >> 8).toString(16).padStart(2, '0')}:${(i & 255).toString(16).padStart(2, '0')}`;
      const stateDir = path.join(fleetDir, `sim-${i}`);
      await mkdir(stateDir);
      sims.push(spawn(sim, ['--mac', mac, '--state-dir', stateDir, '--gateway', base, '--wait', '60', '--operators', 'aten::add.out,aten::mul.out', '--arena-bytes', '65536'], { stdio: 'ignore' }));
    }
    const installed = async (sha256: string, timeoutMs: number) => {
      const until = performance.now() + timeoutMs;
      while (performance.now() < until) {
        const { devices } = await (await expectOk(fetch(`${base}/v1/devices`, { headers: auth }))).json() as { devices: Array<{ report: { state: string; sha256?: string } | null }> };
        if (devices.filter((d) => d.report?.state === 'installed' && d.report.sha256 === sha256).length >= count) return true;
        await new Promise((resolve) => setTimeout(resolve, 50));
      }
      return false;
    };
    const shaOf = async () => ((await (await expectOk(fetch(`${base}/v1/models/fleet/${version}`, { headers: auth }))).json()) as { sha256: string }).sha256;
    if (!await installed(await shaOf(), 120_000)) throw new Error(`the ${count} simulated devices did not all install the first model within 120 s`);
    const times: number[] = [];
    for (let round = 0; round < rounds; round++) {
      version++;
      const pushed = performance.now();
      await push(base, 'fleet', String(version), makeProgram(64 * 1024));
      if (!await installed(await shaOf(), 120_000)) throw new Error(`round ${round + 1}: not all ${count} devices installed version ${version} within 120 s`);
      times.push(performance.now() - pushed);
    }
    const sorted = [...times].sort((a, b) => a - b);
    const median = sorted[sorted.length >> 1]!;
    return {
      name, target,
      value: `${(median / 1000).toFixed(2)} s (rounds ${times.map((t) => (t / 1000).toFixed(2)).join(', ')} s; 64 KiB model)`,
      met: median <= 5000,
      raw: { devices: count, roundsMs: times, medianMs: median },
    };
  } finally {
    for (const child of sims) child.kill('SIGTERM');
    await Promise.all(sims.map((child) => (child.exitCode === null && child.signalCode === null ? new Promise((resolve) => child.once('exit', resolve)) : undefined)));
    await stopChild(gateway);
  }
}

/** The firmware core's .text for Xtensa (per file: bench/firmware-size.ts). */
export async function firmwareCodeSize(): Promise<Skipped | Measured> {
  const name = 'firmware core code size (.text, xtensa-lx106-elf-gcc -Os, per file in firmware-size.md)';
  const target = '≤ 32 KiB';
  if (!await which('xtensa-lx106-elf-gcc')) return { name, target, skipped: 'xtensa-lx106-elf-gcc is not installed (Debian: gcc-xtensa-lx106 picolibc-xtensa-lx106-elf)' };
  const sizes = await crossCompileCore();
  const text = sizes.reduce((sum, size) => sum + size.text, 0);
  return { name, target, value: `${(text / 1024).toFixed(1)} KiB (${sizes.length} files)`, met: text <= CORE_TEXT_BUDGET, raw: { text, files: sizes } };
}
