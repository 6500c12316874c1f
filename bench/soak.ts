// Soak: a gateway under a steady fleet load for a long time, watched from outside.
//
//   node --import tsx bench/soak.ts [--minutes 30] [--sample-seconds 60] [--out bench]
//
// Starts `modelferry serve` as a child on loopback and holds, for the whole run:
//   - 1,000 long polls (250 client addresses x 4, each re-polling as soon as answered),
//   - 50 downloads of the assigned model, each read at ~512 KiB/s and started again when done,
//   - a steady stream of plain polls and reports (~100 polls/s from 100 addresses),
// while a pipeline pushes a new version every minute and assigns it (which releases every
// long poll), and deletes versions three pushes old. Every sample period it records the
// daemon's RSS and open file descriptors (from /proc), V8 heap and event-loop delay (from
// /metrics), and the errors the clients saw. At the end it writes bench/soak.json,
// bench/soak.svg (drawn here, no plotting dependency) and bench/soak.md.
//
// Everything stays on loopback: Linux routes 127.0.0.0/8 there, so clients bind to
// 127.0.x.y to be distinct addresses for the gateway's per-address limits.
import { spawn, type ChildProcess } from 'node:child_process';
import { mkdtemp, readdir, readFile, rm, writeFile } from 'node:fs/promises';
import http from 'node:http';
import net from 'node:net';
import os from 'node:os';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { parseArgs } from 'node:util';
import { makeProgram } from '../test/helpers/programs.ts';

const ROOT = fileURLToPath(new URL('../', import.meta.url));
const TOKEN = 'soak-token-0123456789abcdef';

const { values: args } = parseArgs({
  options: {
    minutes: { type: 'string', default: '30' },
    'sample-seconds': { type: 'string', default: '60' },
    out: { type: 'string', default: path.join(ROOT, 'bench') },
    'long-polls': { type: 'string', default: '1000' },
    downloads: { type: 'string', default: '50' },
    'polls-per-second': { type: 'string', default: '100' },
  },
});
const MINUTES = Number(args.minutes);
const SAMPLE_MS = Number(args['sample-seconds']) * 1000;
const LONG_POLLS = Number(args['long-polls']);
const DOWNLOADS = Number(args.downloads);
const POLLS_PER_SECOND = Number(args['polls-per-second']);
const MODEL_BYTES = 4 * 1024 * 1024;
const DOWNLOAD_RATE = 512 * 1024;

interface Sample {
  minute: number;
  rssBytes: number;
  heapUsedBytes: number;
  fds: number;
  loopDelayP99Ms: number;
  loopDelayMaxMs: number;
  connections: number;
  longPollsHeld: number;
  requests: number;
  errors: number;
}

const counters = { requests: 0, errors: 0, longPollAnswers: 0, downloadsDone: 0, pushes: 0, polls: 0, reports: 0 };
const errorKinds = new Map<string, number>();
let stopping = false;

function countError(kind: string): void {
  if (stopping) return;
  counters.errors++;
  errorKinds.set(kind, (errorKinds.get(kind) ?? 0) + 1);
  if (errorKinds.get(kind) === 1) console.log(`soak: first error of its kind: ${kind}`);
}

function address(block: number, i: number): string {
  return `127.0.${block}.${(i % 250) + 2}`;
}

async function freePort(): Promise<number> {
  const server = net.createServer();
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  const { port } = server.address() as net.AddressInfo;
  await new Promise<void>((resolve) => server.close(() => resolve()));
  return port;
}

interface Answer { status: number; headers: http.IncomingHttpHeaders; body: Buffer }

function request(port: number, options: http.RequestOptions & { body?: Buffer | string }): Promise<Answer> {
  return new Promise((resolve, reject) => {
    const req = http.request({ host: '127.0.0.1', port, ...options }, (res) => {
      const chunks: Buffer[] = [];
      res.on('data', (chunk: Buffer) => chunks.push(chunk));
      res.on('end', () => resolve({ status: res.statusCode!, headers: res.headers, body: Buffer.concat(chunks) }));
      res.on('error', reject);
    });
    req.on('error', reject);
    req.end(options.body);
  });
}

const delay = (ms: number) => new Promise<void>((resolve) => setTimeout(resolve, ms));

function mac(block: number, i: number): string {
  return `02:5a:${block.toString(16).padStart(2, '0')}:00:${(i >> 8).toString(16).padStart(2, '0')}:${(i & 0xff).toString(16).padStart(2, '0')}`;
}

async function longPoller(port: number, i: number): Promise<void> {
  const agent = new http.Agent({ keepAlive: true, maxSockets: 1, localAddress: address(1, i >> 2) } as http.AgentOptions);
  const device = mac(1, i);
  let etag = '';
  while (!stopping) {
    try {
      const answer = await request(port, {
        agent, path: `/v1/devices/${device}/model?wait=120`, headers: etag ? { 'If-None-Match': etag } : {},
      });
      counters.requests++;
      counters.longPollAnswers++;
      if (answer.status === 200) etag = String(answer.headers.etag);
      else if (answer.status !== 304) {
        countError(`long poll ${answer.status}`);
        await delay(1000);
      }
    } catch (error) {
      countError(`long poll ${(error as NodeJS.ErrnoException).code ?? (error as Error).message}`);
      await delay(1000);
    }
  }
  agent.destroy();
}

/** Reads a download at about DOWNLOAD_RATE by pausing the response between chunks. */
async function downloader(port: number, i: number): Promise<void> {
  const device = mac(2, i);
  while (!stopping) {
    try {
      const poll = await request(port, { path: `/v1/devices/${device}/model`, localAddress: address(2, i), agent: false });
      counters.requests++;
      if (poll.status !== 200) {
        countError(`download poll ${poll.status}`);
        await delay(1000);
        continue;
      }
      const { model } = JSON.parse(poll.body.toString()) as { model: { url: string; size: number } };
      const received = await new Promise<number>((resolve, reject) => {
        const req = http.get({ host: '127.0.0.1', port, path: model.url, localAddress: address(2, i), agent: false }, (res) => {
          if (res.statusCode !== 200) {
            res.resume();
            reject(new Error(`artifact ${res.statusCode}`));
            return;
          }
          let bytes = 0;
          const started = Date.now();
          res.on('data', (chunk: Buffer) => {
            bytes += chunk.length;
            const ahead = bytes / DOWNLOAD_RATE * 1000 - (Date.now() - started);
            if (ahead > 20) {
              res.pause();
              setTimeout(() => res.resume(), ahead);
            }
          });
          res.on('end', () => resolve(bytes));
          res.on('error', reject);
        });
        req.on('error', reject);
      });
      counters.requests++;
      // A model deleted mid-download is a legitimate 404 next time; a short body is not.
      if (received !== model.size) countError('download short');
      else counters.downloadsDone++;
    } catch (error) {
      const message = (error as Error).message;
      if (message === 'artifact 404') continue;
      countError(`download ${(error as NodeJS.ErrnoException).code ?? message}`);
      await delay(1000);
    }
  }
}

async function pollLoad(port: number): Promise<void> {
  const agents = Array.from({ length: 100 }, (_, i) => new http.Agent({ keepAlive: true, maxSockets: 1, localAddress: address(3, i) } as http.AgentOptions));
  let n = 0;
  const tick = 100;
  while (!stopping) {
    const started = Date.now();
    const batch = Math.round(POLLS_PER_SECOND * tick / 1000);
    await Promise.all(Array.from({ length: batch }, async () => {
      const i = n++ % 100;
      try {
        if (n % 20 === 0) {
          const answer = await request(port, {
            agent: agents[i], method: 'POST', path: `/v1/devices/${mac(3, i)}/report`,
            headers: { 'Content-Type': 'application/json' }, body: JSON.stringify({ state: 'installed', rssi: -60, freeHeap: 150_000 }),
          });
          counters.reports++;
          if (answer.status !== 204) countError(`report ${answer.status}`);
        } else {
          const answer = await request(port, { agent: agents[i], path: `/v1/devices/${mac(3, i)}/model` });
          counters.polls++;
          if (answer.status !== 200) countError(`poll ${answer.status}`);
        }
        counters.requests++;
      } catch (error) {
        countError(`poll ${(error as NodeJS.ErrnoException).code ?? (error as Error).message}`);
      }
    }));
    await delay(Math.max(0, tick - (Date.now() - started)));
  }
  for (const agent of agents) agent.destroy();
}

async function pipeline(port: number): Promise<void> {
  const auth = { Authorization: `Bearer ${TOKEN}` };
  const versions: string[] = [];
  let next = 1;
  while (!stopping) {
    const version = `soak.${next++}`;
    try {
      const pushed = await request(port, { method: 'PUT', path: `/v1/models/kws/${version}`, headers: auth, body: makeProgram(MODEL_BYTES), agent: false });
      if (pushed.status !== 201) throw new Error(`push ${pushed.status}`);
      const assigned = await request(port, {
        method: 'PUT', path: '/v1/assignments/default', agent: false,
        headers: { ...auth, 'Content-Type': 'application/json' }, body: JSON.stringify({ model: 'kws', version }),
      });
      if (assigned.status >= 300) throw new Error(`assign ${assigned.status}`);
      counters.pushes++;
      versions.push(version);
      while (versions.length > 3) {
        const old = versions.shift()!;
        const deleted = await request(port, { method: 'DELETE', path: `/v1/models/kws/${old}`, headers: auth, agent: false });
        if (deleted.status !== 204) throw new Error(`delete ${deleted.status}`);
      }
    } catch (error) {
      countError(`pipeline ${(error as Error).message}`);
    }
    for (let waited = 0; waited < 60_000 && !stopping; waited += 500) await delay(500);
  }
}

function metric(text: string, name: string): number {
  const match = new RegExp(`^${name}(?:\\{[^}]*\\})? ([0-9.eE+-]+)$`, 'm').exec(text);
  return match ? Number(match[1]) : NaN;
}

async function sample(port: number, pid: number, minute: number): Promise<Sample> {
  const status = await readFile(`/proc/${pid}/status`, 'utf8');
  const rssKb = Number(/^VmRSS:\s+(\d+)/m.exec(status)?.[1]);
  const fds = (await readdir(`/proc/${pid}/fd`)).length;
  const metrics = (await request(port, { path: '/metrics', agent: false })).body.toString();
  return {
    minute,
    rssBytes: rssKb * 1024,
    heapUsedBytes: metric(metrics, 'modelferry_nodejs_heap_size_used_bytes'),
    fds,
    loopDelayP99Ms: metric(metrics, 'modelferry_nodejs_eventloop_lag_p99_seconds') * 1000,
    loopDelayMaxMs: metric(metrics, 'modelferry_nodejs_eventloop_lag_max_seconds') * 1000,
    connections: metric(metrics, 'modelferry_http_connections_open'),
    longPollsHeld: metric(metrics, 'modelferry_device_long_polls_held'),
    requests: counters.requests,
    errors: counters.errors,
  };
}

/** Four small line charts in one SVG: RSS and heap (MiB), fds, event-loop delay (ms). */
function svg(samples: Sample[]): string {
  const width = 900;
  const panel = 170;
  const pad = { left: 70, right: 20, top: 30, bottom: 28 };
  const panels: Array<{ title: string; unit: string; lines: Array<{ label: string; color: string; values: number[] }> }> = [
    { title: 'Memory', unit: 'MiB', lines: [
      { label: 'RSS', color: '#1f77b4', values: samples.map((s) => s.rssBytes / 2 ** 20) },
      { label: 'V8 heap used', color: '#ff7f0e', values: samples.map((s) => s.heapUsedBytes / 2 ** 20) },
    ] },
    { title: 'Open file descriptors', unit: 'fds', lines: [{ label: 'fds', color: '#2ca02c', values: samples.map((s) => s.fds) }] },
    { title: 'Event-loop delay over each sample period', unit: 'ms', lines: [
      { label: 'p99', color: '#9467bd', values: samples.map((s) => s.loopDelayP99Ms) },
      { label: 'max', color: '#d62728', values: samples.map((s) => s.loopDelayMaxMs) },
    ] },
    { title: 'Client errors (cumulative)', unit: 'errors', lines: [{ label: 'errors', color: '#8c564b', values: samples.map((s) => s.errors) }] },
  ];
  const height = panels.length * (panel + pad.top + pad.bottom) + 10;
  const plotWidth = width - pad.left - pad.right;
  const xMax = Math.max(1, samples.at(-1)?.minute ?? 1);
  const parts: string[] = [`<svg xmlns="http://www.w3.org/2000/svg" width="${width}" height="${height}" font-family="sans-serif" font-size="12">`, `<rect width="100%" height="100%" fill="white"/>`];
  panels.forEach((p, index) => {
    const top = index * (panel + pad.top + pad.bottom) + pad.top;
    const all = p.lines.flatMap((line) => line.values).filter(Number.isFinite);
    const yMax = Math.max(1, ...all) * 1.15;
    const x = (minute: number) => pad.left + (minute / xMax) * plotWidth;
    const y = (value: number) => top + panel - (value / yMax) * panel;
    parts.push(`<text x="${pad.left}" y="${top - 10}" font-weight="bold">${p.title}</text>`);
    parts.push(`<line x1="${pad.left}" y1="${top + panel}" x2="${pad.left + plotWidth}" y2="${top + panel}" stroke="#444"/>`);
    parts.push(`<line x1="${pad.left}" y1="${top}" x2="${pad.left}" y2="${top + panel}" stroke="#444"/>`);
    for (const fraction of [0, 0.5, 1]) {
      const value = (yMax / 1.15) * fraction;
      parts.push(`<text x="${pad.left - 6}" y="${y(value) + 4}" text-anchor="end">${value.toFixed(value < 10 ? 1 : 0)}</text>`);
      parts.push(`<line x1="${pad.left}" y1="${y(value)}" x2="${pad.left + plotWidth}" y2="${y(value)}" stroke="#ddd"/>`);
    }
    parts.push(`<text x="12" y="${top + panel / 2}" transform="rotate(-90 12 ${top + panel / 2})" text-anchor="middle">${p.unit}</text>`);
    for (let m = 0; m <= xMax; m += Math.max(1, Math.round(xMax / 10))) {
      parts.push(`<text x="${x(m)}" y="${top + panel + 16}" text-anchor="middle">${m}</text>`);
    }
    p.lines.forEach((line, li) => {
      const points = samples.map((s, i) => `${x(s.minute).toFixed(1)},${y(line.values[i]!).toFixed(1)}`).join(' ');
      parts.push(`<polyline fill="none" stroke="${line.color}" stroke-width="2" points="${points}"/>`);
      parts.push(`<text x="${pad.left + plotWidth - 140 + li * 70}" y="${top - 10}" fill="${line.color}">${line.label}</text>`);
    });
  });
  parts.push(`<text x="${width / 2}" y="${height - 4}" text-anchor="middle">minutes</text>`, '</svg>');
  return parts.join('\n');
}

async function main(): Promise<void> {
  const dir = await mkdtemp(path.join(os.tmpdir(), 'modelferry-soak-'));
  const port = await freePort();
  const config = path.join(dir, 'config.json');
  await writeFile(config, JSON.stringify({
    http: { host: '127.0.0.1', port },
    paths: { state: path.join(dir, 'state'), cache: path.join(dir, 'cache') },
    mdns: { enabled: false },
    log: { level: 'warn' },
    auth: { tokens: [{ name: 'soak', token: TOKEN, scopes: ['push', 'admin'] }] },
    // The default limits hold: 250 addresses x 4 long polls each, 100 polling addresses.
    devices: { maxWaitSeconds: 300 },
  }));
  const daemon: ChildProcess = spawn(process.execPath, [path.join(ROOT, 'test', 'helpers', 'cli-from-sources.js'), 'serve', '--config', config], { stdio: ['ignore', 'inherit', 'inherit'] });
  let daemonExit: string | undefined;
  daemon.once('exit', (code, signal) => { daemonExit = `exit ${code} ${signal}`; });
  const cleanup = async () => {
    stopping = true;
    if (daemon.exitCode === null && daemon.signalCode === null) daemon.kill('SIGTERM');
    await rm(dir, { recursive: true, force: true });
  };
  process.once('SIGINT', () => void cleanup().then(() => process.exit(130)));
  try {
    for (let i = 0; ; i++) {
      try {
        if ((await request(port, { path: '/healthz', agent: false })).status === 200) break;
      } catch { /* not yet */ }
      if (i > 600) throw new Error('the gateway did not start');
      await delay(100);
    }
    // The first model and assignment, so that every client has something to fetch.
    const firstPipeline = pipeline(port);
    while (counters.pushes === 0) await delay(100);
    console.log(`soak: ${MINUTES} min, ${LONG_POLLS} long polls, ${DOWNLOADS} downloads, ~${POLLS_PER_SECOND} polls/s; gateway pid ${daemon.pid}`);
    const clients = [
      firstPipeline,
      pollLoad(port),
      ...Array.from({ length: LONG_POLLS }, (_, i) => longPoller(port, i)),
      ...Array.from({ length: DOWNLOADS }, (_, i) => downloader(port, i)),
    ];
    const samples: Sample[] = [await sample(port, daemon.pid!, 0)];
    const started = Date.now();
    const end = started + MINUTES * 60_000;
    while (Date.now() < end && daemonExit === undefined) {
      await delay(Math.min(SAMPLE_MS, end - Date.now()));
      const s = await sample(port, daemon.pid!, (Date.now() - started) / 60_000);
      samples.push(s);
      console.log(`soak: ${s.minute.toFixed(1)} min rss ${(s.rssBytes / 2 ** 20).toFixed(1)} MiB heap ${(s.heapUsedBytes / 2 ** 20).toFixed(1)} MiB fds ${s.fds} loop p99 ${s.loopDelayP99Ms.toFixed(1)} ms max ${s.loopDelayMaxMs.toFixed(1)} ms held ${s.longPollsHeld} conns ${s.connections} requests ${s.requests} errors ${s.errors}`);
    }
    const crashed = daemonExit;
    stopping = true;
    daemon.kill('SIGTERM');
    await Promise.race([Promise.all(clients), delay(15_000)]);
    const steady = samples.filter((s) => s.minute >= Math.min(5, MINUTES / 3));
    const range = (values: number[]) => ({ min: Math.min(...values), max: Math.max(...values) });
    const summary = {
      when: new Date().toISOString(),
      machine: `${os.cpus().length} CPU, ${(os.totalmem() / 2 ** 30).toFixed(1)} GiB, Node ${process.version}, load average at end ${os.loadavg().map((l) => l.toFixed(1)).join(' ')}`,
      minutes: MINUTES,
      load: { longPolls: LONG_POLLS, downloads: DOWNLOADS, pollsPerSecond: POLLS_PER_SECOND },
      counters,
      errorKinds: Object.fromEntries(errorKinds),
      daemonExitedEarly: crashed ?? null,
      steadyState: {
        fromMinute: steady[0]?.minute ?? 0,
        rssMiB: range(steady.map((s) => s.rssBytes / 2 ** 20)),
        heapUsedMiB: range(steady.map((s) => s.heapUsedBytes / 2 ** 20)),
        fds: range(steady.map((s) => s.fds)),
        loopDelayP99Ms: range(steady.map((s) => s.loopDelayP99Ms)),
        loopDelayMaxMs: range(steady.map((s) => s.loopDelayMaxMs)),
      },
      samples,
    };
    await writeFile(path.join(args.out!, 'soak.json'), `${JSON.stringify(summary, null, 2)}\n`);
    await writeFile(path.join(args.out!, 'soak.svg'), svg(samples));
    const f = (n: number) => n.toFixed(1);
    const st = summary.steadyState;
    await writeFile(path.join(args.out!, 'soak.md'), `# Soak run

\`node --import tsx bench/soak.ts\` (${summary.when}; ${summary.machine}).

${MINUTES} minutes on loopback: ${LONG_POLLS} long polls (250 client addresses x 4), ${DOWNLOADS} downloads of a
4 MiB model at ~512 KiB/s each, ~${POLLS_PER_SECOND} plain polls and reports a second, a new version
pushed and assigned every minute (releasing every long poll) and versions three pushes old
deleted. Default limits.

| | |
|---|---|
| requests answered | ${counters.requests} (long-poll answers ${counters.longPollAnswers}, downloads ${counters.downloadsDone}, polls ${counters.polls}, reports ${counters.reports}, pushes ${counters.pushes}) |
| client errors | ${counters.errors}${errorKinds.size ? ` (${[...errorKinds].map(([k, v]) => `${k}: ${v}`).join(', ')})` : ''} |
| daemon | ${crashed ? `exited early: ${crashed}` : 'ran to the end'} |
| RSS from minute ${f(st.fromMinute)} | ${f(st.rssMiB.min)} – ${f(st.rssMiB.max)} MiB |
| V8 heap used | ${f(st.heapUsedMiB.min)} – ${f(st.heapUsedMiB.max)} MiB |
| open file descriptors | ${st.fds.min} – ${st.fds.max} |
| event-loop delay p99 per sample | ${f(st.loopDelayP99Ms.min)} – ${f(st.loopDelayP99Ms.max)} ms |
| event-loop delay max per sample | ${f(st.loopDelayMaxMs.min)} – ${f(st.loopDelayMaxMs.max)} ms |

![soak plot](soak.svg)

Per-sample figures are in [soak.json](soak.json).
`);
    console.log(`soak: done; ${counters.errors} errors; wrote ${args.out}/soak.{json,svg,md}`);
  } finally {
    await cleanup();
  }
  process.exit(counters.errors === 0 ? 0 : 1);
}

await main();
