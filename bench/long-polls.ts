import type { ChildProcess } from 'node:child_process';
import { mkdir } from 'node:fs/promises';
import http from 'node:http';
import path from 'node:path';
import { Readable } from 'node:stream';
import { makeProgram } from '../test/helpers/programs.ts';
import type { Measured } from './dependent-rows.ts';
import { macOf } from './fleet-state.ts';
import { configFor, rssMiB } from './startup.ts';
import { TOKEN, expectOk, startGateway, stopChild } from './servers.ts';

// Long polls held at once: what each costs the gateway in memory, how long after a push
// the last of them has its answer, and how long the gateway's event loop stalls meanwhile.

export interface LongPollResult {
  held: number;
  /** RSS growth while they are held, per request. */
  kibPerHeld: number;
  /** From sending the push to the last long poll answered with the new model. */
  pushToLastAnsweredMs: number;
  /**
   * The gateway's event-loop delay from the push to the last answer (prom-client's
   * monitorEventLoopDelay, 10 ms resolution): the longest and the 99th percentile interval
   * between its 10 ms timer ticks. A stall of S ms shows as an interval of S to S + 10 ms.
   */
  loopDelayMaxMs: number;
  loopDelayP99Ms: number;
  /** The same over as long a window with the polls held and no push: what is not the wake's. */
  heldLoopDelayMaxMs: number;
  heldLoopDelayP99Ms: number;
}

/** Reading /metrics also starts a new event-loop delay window (prom-client resets it). */
async function loopDelay(base: string): Promise<{ maxMs: number; p99Ms: number }> {
  const text = await (await fetch(`${base}/metrics`)).text();
  const read = (name: string) => Number(new RegExp(`^modelferry_nodejs_eventloop_lag_${name}_seconds\\s+(\\S+)`, 'm').exec(text)?.[1] ?? NaN) * 1000;
  return { maxMs: read('max'), p99Ms: read('p99') };
}

const agent = new http.Agent({ keepAlive: false, maxSockets: Infinity });

function get(url: string, headers: Record<string, string> = {}): Promise<{ status: number; etag: string; at: number }> {
  return new Promise((resolve, reject) => {
    http.get(url, { agent, headers }, (res) => {
      res.resume();
      res.on('end', () => resolve({ status: res.statusCode ?? 0, etag: String(res.headers.etag ?? ''), at: performance.now() }));
    }).on('error', reject);
  });
}

async function inBatches<T>(count: number, size: number, each: (i: number) => Promise<T>): Promise<T[]> {
  const out: T[] = [];
  for (let i = 0; i < count; i += size) out.push(...await Promise.all(Array.from({ length: Math.min(size, count - i) }, (_, j) => each(i + j))));
  return out;
}

async function waiting(base: string): Promise<number | undefined> {
  const text = await (await fetch(`${base}/metrics`)).text();
  const match = /^modelferry_long_polls_waiting\s+(\d+)/m.exec(text);
  return match ? Number(match[1]) : undefined;
}

/** Needs `default` assigned to `latest` of `model`; pushes `program` as a new version of it. */
export async function measureLongPolls(base: string, pid: number, count: number, model: string, version: string, program: Buffer): Promise<LongPollResult> {
  const macs = Array.from({ length: count }, (_, i) => macOf(0x10_0000 + i));
  const first = await inBatches(count, 100, (i) => get(`${base}/v1/devices/${macs[i]}/model`));
  if (first.some((r) => r.status !== 200)) throw new Error('long-poll devices have no assignment');
  await new Promise((resolve) => setTimeout(resolve, 1000));
  const before = await rssMiB(pid);

  const answers = macs.map((mac, i) => get(`${base}/v1/devices/${mac}/model?wait=120`, { 'If-None-Match': first[i]!.etag }));
  for (let i = 0; i < 100; i++) {
    const n = await waiting(base);
    if (n === undefined ? i >= 20 : n >= count) break;
    await new Promise((resolve) => setTimeout(resolve, 100));
  }
  const held = await rssMiB(pid);

  await loopDelay(base);
  await new Promise((resolve) => setTimeout(resolve, 1500));
  const quiet = await loopDelay(base);
  const pushed = performance.now();
  await expectOk(fetch(`${base}/v1/models/${model}/${version}`, {
    method: 'PUT', headers: { Authorization: `Bearer ${TOKEN}` }, body: Readable.toWeb(Readable.from([program])) as ReadableStream, duplex: 'half',
  } as RequestInit));
  const results = await Promise.all(answers);
  const delay = await loopDelay(base);
  const changed = results.filter((r) => r.status === 200).length;
  if (changed !== count) throw new Error(`${count - changed} of ${count} long polls were not answered with the new model`);
  return {
    held: count,
    kibPerHeld: ((held - before) * 1024) / count,
    pushToLastAnsweredMs: Math.max(...results.map((r) => r.at)) - pushed,
    loopDelayMaxMs: delay.maxMs,
    loopDelayP99Ms: delay.p99Ms,
    heldLoopDelayMaxMs: quiet.maxMs,
    heldLoopDelayP99Ms: quiet.p99Ms,
  };
}

/**
 * The target: a change with 10,000 long polls waiting must never block requests for more than
 * a few milliseconds (waiters are woken in slices that yield). A gateway with the long-poll
 * and connection caps raised for one client address holds 10,000, a push wakes them all, and
 * its event-loop delay over that is the figure.
 */
export async function longPollWakeStall(_root: string, entry: string[], dir: string, children: ChildProcess[], count = 10_000): Promise<Measured> {
  const name = `${count.toLocaleString('en')} long polls woken by a push: the gateway's longest event-loop stall`;
  const target = '≤ a few ms';
  const own = path.join(dir, 'wake-stall');
  await mkdir(own);
  const port = 18120;
  const base = `http://127.0.0.1:${port}`;
  const caps = count + 1000;
  const gateway = await startGateway(entry, await configFor(own, port, {
    http: { maxConnections: caps, maxConnectionsPerAddress: caps },
    devices: { maxLongPolls: caps, maxLongPollsPerAddress: caps, maxKnown: caps },
  }), port, children);
  try {
    const auth = { Authorization: `Bearer ${TOKEN}` };
    await expectOk(fetch(`${base}/v1/models/stall/1`, { method: 'PUT', body: makeProgram(64 * 1024), headers: auth }));
    await expectOk(fetch(`${base}/v1/assignments/default`, {
      method: 'PUT', headers: { ...auth, 'Content-Type': 'application/json' }, body: JSON.stringify({ model: 'stall', version: 'latest' }),
    }));
    const result = await measureLongPolls(base, gateway.pid!, count, 'stall', '2', makeProgram(64 * 1024));
    // The 10 ms timer's own interval is not a stall.
    const stallMs = Math.max(0, result.loopDelayMaxMs - 10);
    return {
      name,
      target,
      value: `max ${result.loopDelayMaxMs.toFixed(1)} ms between 10 ms ticks (a stall of ${stallMs.toFixed(1)} to ${result.loopDelayMaxMs.toFixed(1)} ms), p99 ${result.loopDelayP99Ms.toFixed(1)} ms; held without a push: max ${result.heldLoopDelayMaxMs.toFixed(1)}, p99 ${result.heldLoopDelayP99Ms.toFixed(1)} ms; last answered ${Math.round(result.pushToLastAnsweredMs)} ms after the push`,
      met: stallMs <= 5,
      raw: { ...result },
    };
  } finally {
    await stopChild(gateway);
  }
}

/** Disk written by the gateway (its /proc io write_bytes) for one poll from each of `count` known devices, across a flush. */
export async function measurePollWrites(base: string, pid: number, count: number, flushSeconds: number): Promise<number> {
  const macs = Array.from({ length: count }, (_, i) => macOf(0x20_0000 + i));
  await inBatches(count, 100, (i) => get(`${base}/v1/devices/${macs[i]}/model`));
  await new Promise((resolve) => setTimeout(resolve, (flushSeconds * 2 + 1) * 1000));
  const before = await writeBytes(pid);
  await inBatches(count, 100, (i) => get(`${base}/v1/devices/${macs[i]}/model`));
  await new Promise((resolve) => setTimeout(resolve, (flushSeconds * 2 + 1) * 1000));
  return (await writeBytes(pid)) - before;
}

async function writeBytes(pid: number): Promise<number> {
  const { readFile } = await import('node:fs/promises');
  return Number(/^write_bytes:\s+(\d+)/m.exec(await readFile(`/proc/${pid}/io`, 'utf8'))![1]);
}
