import { spawn } from 'node:child_process';
import { readFile, writeFile } from 'node:fs/promises';
import http from 'node:http';
import path from 'node:path';
import { macOf } from './fleet-state.ts';

// Start-up to first answered poll, and RSS: the gateway is spawned as systemd would run it,
// and polled every few milliseconds from the moment node starts until a 200 arrives.

export interface StartupResult {
  /** From spawn to the first 200 poll answer. */
  firstPollMs: number;
  /** VmRSS two seconds after the first answer, with nothing else asked of it. */
  idleRssMiB: number;
}

export async function configFor(dir: string, port: number, extra: Record<string, unknown> = {}): Promise<string> {
  const file = path.join(dir, `gateway-${port}.json`);
  const base: Record<string, Record<string, unknown>> = {
    // The load comes from one address (wrk, the long polls): the per-address cap must not count here.
    http: { host: '127.0.0.1', port, maxConnectionsPerAddress: 4096, maxConnections: 4096 },
    devices: { newPerAddressPerMinute: 1_000_000, maxLongPollsPerAddress: 4096, maxLongPolls: 4096 },
    // Setup pushes 8 models at once (dependent-rows.ts).
    artifacts: { maxConcurrentPushes: 16 },
    paths: { state: path.join(dir, 'state'), cache: path.join(dir, 'cache') },
    mdns: { enabled: false },
    log: { level: 'warn' },
    auth: { tokens: [{ name: 'bench', token: 'bench-token-0123456789abcdef', scopes: ['push', 'admin', 'sync'] }] },
  };
  for (const [section, values] of Object.entries(extra)) base[section] = { ...base[section], ...(values as Record<string, unknown>) };
  await writeFile(file, JSON.stringify(base));
  return file;
}

export async function measureStartup(entry: string[], configFile: string, port: number): Promise<StartupResult> {
  const started = process.hrtime.bigint();
  const child = spawn(process.execPath, [...entry, 'serve', '--config', configFile], { stdio: ['ignore', 'ignore', 'inherit'] });
  try {
    const url = `http://127.0.0.1:${port}/v1/devices/${macOf(1)}/model`;
    for (;;) {
      if (child.exitCode !== null) throw new Error(`the gateway exited with ${child.exitCode} during start-up`);
      if (await status(url) === 200) break;
      await new Promise((resolve) => setTimeout(resolve, 5));
    }
    const firstPollMs = Number(process.hrtime.bigint() - started) / 1e6;
    await new Promise((resolve) => setTimeout(resolve, 2000));
    const idleRssMiB = await rssMiB(child.pid!);
    return { firstPollMs, idleRssMiB };
  } finally {
    child.kill('SIGTERM');
    await new Promise((resolve) => child.once('exit', resolve));
  }
}

function status(url: string): Promise<number> {
  return new Promise((resolve) => {
    const req = http.get(url, { agent: false }, (res) => {
      res.resume();
      resolve(res.statusCode ?? 0);
    });
    req.on('error', () => resolve(0));
  });
}

export async function rssMiB(pid: number, field: 'VmRSS' | 'VmHWM' = 'VmRSS'): Promise<number> {
  const text = await readFile(`/proc/${pid}/status`, 'utf8');
  return Number(new RegExp(`${field}:\\s+(\\d+)`).exec(text)![1]) / 1024;
}
