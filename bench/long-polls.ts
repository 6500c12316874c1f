import http from 'node:http';
import { Readable } from 'node:stream';
import { macOf } from './fleet-state.ts';
import { rssMiB } from './startup.ts';
import { TOKEN, expectOk } from './servers.ts';

// Long polls held at once: what each costs the gateway in memory, and how long after a push
// the last of them has its answer.

export interface LongPollResult {
  held: number;
  /** RSS growth while they are held, per request. */
  kibPerHeld: number;
  /** From sending the push to the last long poll answered with the new model. */
  pushToLastAnsweredMs: number;
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

  const pushed = performance.now();
  await expectOk(fetch(`${base}/v1/models/${model}/${version}`, {
    method: 'PUT', headers: { Authorization: `Bearer ${TOKEN}` }, body: Readable.toWeb(Readable.from([program])) as ReadableStream, duplex: 'half',
  } as RequestInit));
  const results = await Promise.all(answers);
  const changed = results.filter((r) => r.status === 200).length;
  if (changed !== count) throw new Error(`${count - changed} of ${count} long polls were not answered with the new model`);
  return {
    held: count,
    kibPerHeld: ((held - before) * 1024) / count,
    pushToLastAnsweredMs: Math.max(...results.map((r) => r.at)) - pushed,
  };
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
