import { execFile } from 'node:child_process';
import { writeFile } from 'node:fs/promises';
import path from 'node:path';
import { promisify } from 'node:util';

const run = promisify(execFile);

export interface WrkResult {
  requestsPerSecond: number;
  megabytesPerSecond: number;
  p50Ms: number;
  p99Ms: number;
  requests: number;
  /** Answers outside 2xx and 3xx. */
  errors: number;
}

export interface WrkCase {
  url: string;
  connections: number;
  seconds: number;
  headers?: Record<string, string>;
  /** A Lua script (wrk -s) that shapes each request, e.g. a random Range. */
  script?: string;
}

/** One wrk run, 1 thread, with --latency; refuses a run with transport or status errors. */
export async function wrk(c: WrkCase): Promise<WrkResult> {
  const args = ['-t1', `-c${c.connections}`, `-d${c.seconds}s`, '--latency', '--timeout', '10s'];
  for (const [name, value] of Object.entries(c.headers ?? {})) args.push('-H', `${name}: ${value}`);
  if (c.script) args.push('-s', c.script);
  args.push(c.url);
  const { stdout } = await run('wrk', args, { maxBuffer: 1 << 20 });
  const errors = Number(/Non-2xx or 3xx responses:\s+(\d+)/.exec(stdout)?.[1] ?? 0);
  const socket = /Socket errors: connect (\d+), read (\d+), write (\d+), timeout (\d+)/.exec(stdout);
  if (socket && socket.slice(1).some((n) => Number(n) > 0)) throw new Error(`wrk saw socket errors for ${c.url}:\n${stdout}`);
  if (errors > 0) throw new Error(`wrk saw ${errors} error answers for ${c.url}:\n${stdout}`);
  const [, value, scale] = /Transfer\/sec:\s+([\d.]+)([KMG]?B)/.exec(stdout)!;
  return {
    requestsPerSecond: Number(/Requests\/sec:\s+([\d.]+)/.exec(stdout)![1]),
    megabytesPerSecond: Number(value) * { B: 1 / 1024 / 1024, KB: 1 / 1024, MB: 1, GB: 1024 }[scale as 'B' | 'KB' | 'MB' | 'GB'],
    p50Ms: latencyMs(stdout, '50'),
    p99Ms: latencyMs(stdout, '99'),
    requests: Number(/(\d+) requests in/.exec(stdout)![1]),
    errors,
  };
}

function latencyMs(stdout: string, percentile: string): number {
  const [, value, unit] = new RegExp(`^\\s+${percentile}%\\s+([\\d.]+)(us|ms|s)`, 'm').exec(stdout)!;
  return Number(value) * { us: 1e-3, ms: 1, s: 1000 }[unit as 'us' | 'ms' | 's'];
}

/** A wrk script asking each request for one random, aligned `piece`-byte Range of `size` bytes. */
export async function rangeScript(dir: string, size: number, piece: number): Promise<string> {
  const file = path.join(dir, `range-${piece}.lua`);
  await writeFile(file, `math.randomseed(42)
local pieces = ${Math.floor(size / piece)}
request = function()
  local start = math.random(0, pieces - 1) * ${piece}
  return wrk.format(nil, nil, { ["Range"] = "bytes=" .. start .. "-" .. (start + ${piece - 1}) })
end
`);
  return file;
}
