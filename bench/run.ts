// `npm run bench`: the gateway against nginx in the same run, on the same machine, as
// ratios of medians over interleaved rounds (machines are noisy, and this one is shared), plus
// the gateway's own figures: memory, start-up with a fleet-sized state, disk writes per poll,
// long polls held at once. It runs itself inside a private network namespace
// (scripts/netns-run), so no load leaves loopback. Writes bench/RESULTS.md and
// bench/results.json. BENCH_ROUNDS, BENCH_SECONDS and BENCH_GATEWAY_ENTRY (what node runs,
// default dist/cli/main.js, e.g. an older checkout for a before/after) change the run.

import { execFile, spawn, type ChildProcess } from 'node:child_process';
import { chmod, mkdir, mkdtemp, rm, writeFile } from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { promisify } from 'node:util';
import { makeProgram, sha256 } from '../test/helpers/programs.ts';
import { pinnedPollThroughput } from './admission.ts';
import { deltaRows } from './deltas.ts';
import { firmwareCodeSize, fleetConvergence, incrementalSync, type Measured, type Skipped } from './dependent-rows.ts';
import { seedFleet } from './fleet-state.ts';
import { longPollWakeStall, measureLongPolls, measurePollWrites } from './long-polls.ts';
import { TOKEN, expectOk, gatewayEntry, nginxWorkerPid, startGateway, startNginx, stopChild, waitFor, which } from './servers.ts';
import { configFor, measureStartup, rssMiB } from './startup.ts';
import { storeLoadRow } from './store-load.ts';
import { rangeScript, wrk, type WrkCase, type WrkResult } from './wrk.ts';

const run = promisify(execFile);
const ROOT = fileURLToPath(new URL('..', import.meta.url));
const NETNS_RUN = path.join(ROOT, 'scripts', 'netns-run');
const ROUNDS = Number(process.env.BENCH_ROUNDS ?? 3);
const SECONDS = Number(process.env.BENCH_SECONDS ?? 5);
const MAC = 'aa:bb:cc:dd:ee:ff';
const FLUSH_SECONDS = 1;

if (process.env.NETNS_RUN_INSIDE !== '1') {
  const child = spawn(NETNS_RUN, [process.execPath, ...process.execArgv, fileURLToPath(import.meta.url)], { stdio: 'inherit' });
  child.on('exit', (code) => process.exit(code ?? 1));
} else {
  await main();
}

interface Comparison {
  name: string;
  unit: 'req/s' | 'MB/s';
  gateway: WrkCase;
  nginx: WrkCase;
  /** The same request to bare node:http (bench/node-floor.ts). */
  floor: WrkCase;
}

interface ComparisonResult {
  name: string;
  unit: string;
  connections: number;
  rounds: Array<{ gateway: WrkResult; nginx: WrkResult; floor: WrkResult }>;
  gatewayMedian: number;
  nginxMedian: number;
  floorMedian: number;
  ratio: number;
  /** Bare node:http against nginx: the most any node:http server reached here. */
  floorRatio: number;
  gatewayP50Ms: number;
  gatewayP99Ms: number;
  nginxP50Ms: number;
  nginxP99Ms: number;
  floorP99Ms: number;
  p99Ratio: number;
}

async function main(): Promise<void> {
  const missing = [];
  for (const tool of ['wrk', 'nginx']) if (!await which(tool)) missing.push(tool);
  if (missing.length > 0) {
    console.log(`bench: skipped: ${missing.join(' and ')} not installed (apt-get install wrk nginx-light)`);
    return;
  }
  const entry = gatewayEntry(ROOT);
  if (!process.env.BENCH_GATEWAY_ENTRY) {
    console.log('bench: building dist/ (npm run build)');
    await run('npm', ['run', 'build'], { cwd: ROOT });
  }
  const dir = await mkdtemp(path.join(os.tmpdir(), 'modelferry-bench-'));
  await chmod(dir, 0o755); // nginx workers run as www-data
  const children: ChildProcess[] = [];
  try {
    const program = makeProgram(4 * 1024 * 1024);
    const digest = sha256(program);
    const gatewayPort = 18080;
    const nginxPort = 18081;
    const base = `http://127.0.0.1:${gatewayPort}`;
    const nginxBase = `http://127.0.0.1:${nginxPort}`;

    const gateway = await startGateway(entry, await configFor(dir, gatewayPort, { devices: { seenFlushSeconds: FLUSH_SECONDS } }), gatewayPort, children);
    await new Promise((resolve) => setTimeout(resolve, 2000));
    const idleRssMiB = await rssMiB(gateway.pid!);
    const auth = { Authorization: `Bearer ${TOKEN}` };
    await expectOk(fetch(`${base}/v1/models/bench/1`, { method: 'PUT', body: program, headers: auth }));
    await expectOk(fetch(`${base}/v1/assignments/default`, {
      method: 'PUT', headers: { ...auth, 'Content-Type': 'application/json' }, body: JSON.stringify({ model: 'bench', version: 'latest' }),
    }));
    const poll = await expectOk(fetch(`${base}/v1/devices/${MAC}/model`));
    const pollEtag = poll.headers.get('etag')!;
    const pollBody = Buffer.from(await poll.arrayBuffer());

    const www = path.join(dir, 'www');
    await mkdir(www, { mode: 0o755 });
    await writeFile(path.join(www, 'poll.json'), pollBody, { mode: 0o644 });
    await writeFile(path.join(www, 'artifact'), program, { mode: 0o644 });
    const nginx = await startNginx(dir, www, nginxPort, children);
    const nginxEtag = (await fetch(`${nginxBase}/poll.json`, { method: 'HEAD' })).headers.get('etag')!;
    const range = await rangeScript(dir, program.length, 64 * 1024);
    const floorPort = 18082;
    const floorBase = `http://127.0.0.1:${floorPort}`;
    children.push(spawn(process.execPath, [...process.execArgv, ...gatewayEntry(ROOT).filter((arg) => arg.startsWith('--')), path.join(ROOT, 'bench', 'node-floor.ts'),
      String(floorPort), path.join(www, 'poll.json'), pollEtag, path.join(www, 'artifact')], { stdio: ['ignore', 'ignore', 'inherit'] }));
    await waitFor(`${floorBase}/poll.json`);

    const both = (connections: number, gatewayPath: string, nginxPath: string, extra: Partial<WrkCase> = {}, nginxHeaders?: Record<string, string>) => ({
      gateway: { url: `${base}${gatewayPath}`, connections, seconds: SECONDS, ...extra },
      nginx: { url: `${nginxBase}${nginxPath}`, connections, seconds: SECONDS, ...extra, ...(nginxHeaders ? { headers: nginxHeaders } : {}) },
      floor: { url: `${floorBase}${nginxPath}`, connections, seconds: SECONDS, ...extra },
    });
    const comparisons: Comparison[] = [
      { name: `poll 200 (${pollBody.length}-byte JSON), 256 connections`, unit: 'req/s', ...both(256, `/v1/devices/${MAC}/model`, '/poll.json') },
      { name: 'poll 304 (If-None-Match), 256 connections', unit: 'req/s', ...both(256, `/v1/devices/${MAC}/model`, '/poll.json', { headers: { 'If-None-Match': pollEtag } }, { 'If-None-Match': nginxEtag }) },
      { name: '4 MiB download, 16 connections', unit: 'MB/s', ...both(16, `/v1/artifacts/${digest}`, '/artifact') },
      { name: 'Range, one 64 KiB piece per request, 64 connections', unit: 'req/s', ...both(64, `/v1/artifacts/${digest}`, '/artifact', { script: range }) },
    ];
    const results: ComparisonResult[] = [];
    for (const comparison of comparisons) {
      results.push(await compare(comparison));
      const r = results.at(-1)!;
      console.log(`${r.name}: gateway ${fmt(r.gatewayMedian)} ${r.unit}, nginx ${fmt(r.nginxMedian)} ${r.unit}, ratio ${r.ratio.toFixed(2)} (bare node:http ${r.floorRatio.toFixed(2)}); p99 ${fmt(r.gatewayP99Ms)} vs ${fmt(r.nginxP99Ms)} ms`);
    }
    const peakAfterLoadMiB = await rssMiB(gateway.pid!, 'VmHWM');
    const nginxPeakMiB = await rssMiB(await nginxWorkerPid(nginx.pid!), 'VmHWM');

    const diskPer1000Polls = await measurePollWrites(base, gateway.pid!, 1000, FLUSH_SECONDS);
    console.log(`disk written per 1,000 polls: ${(diskPer1000Polls / 1024).toFixed(1)} KiB`);
    const longPolls = await measureLongPolls(base, gateway.pid!, 1000, 'bench', '2', makeProgram(64 * 1024));
    console.log(`1,000 long polls: ${longPolls.kibPerHeld.toFixed(1)} KiB each; push to last answered ${fmt(longPolls.pushToLastAnsweredMs)} ms`);
    const peakRssMiB = await rssMiB(gateway.pid!, 'VmHWM');
    await stopChild(gateway);
    await stopChild(nginx);

    console.log('seeding 1,000 models and 10,000 devices for the start-up rounds');
    const fleetDir = path.join(dir, 'fleet');
    await mkdir(fleetDir);
    await seedFleet(fleetDir, 1000, 10_000);
    const startups = [];
    for (let round = 0; round < ROUNDS; round++) {
      const port = 18090 + round;
      startups.push(await measureStartup(entry, await configFor(fleetDir, port), port));
      console.log(`start-up round ${round + 1}: first poll ${fmt(startups.at(-1)!.firstPollMs)} ms, idle RSS ${startups.at(-1)!.idleRssMiB.toFixed(1)} MiB`);
    }

    const dependent: Array<Skipped | Measured> = [];
    for (const measure of [fleetConvergence, incrementalSync, longPollWakeStall, firmwareCodeSize, storeLoadRow]) {
      try {
        dependent.push(await measure(ROOT, entry, dir, children));
      } catch (error) {
        dependent.push({ name: measure.name, target: '', skipped: `failed: ${(error as Error).message}` });
      }
    }
    dependent.push(...await deltaRows(ROOT, entry, dir, children));
    try {
      dependent.push(await pinnedPollThroughput(entry, dir, children, ROUNDS, SECONDS));
    } catch (error) {
      dependent.push({ name: 'pinnedPollThroughput', target: '>= 0.8x', skipped: `failed: ${(error as Error).message}` });
    }
    for (const row of dependent) console.log(row);

    const { stdout: cpu } = await run('sh', ['-c', "grep -m1 'model name' /proc/cpuinfo | cut -d: -f2"]);
    const { stdout: load } = await run('cat', ['/proc/loadavg']);
    const machine = { date: new Date().toISOString(), cpu: cpu.trim(), cores: os.cpus().length, node: process.version, loadavg: load.trim(), entry: entry.join(' ') };
    const raw = {
      machine, rounds: ROUNDS, seconds: SECONDS, comparisons: results,
      memory: { idleRssMiB, peakAfterLoadMiB, peakRssMiB, nginxWorkerPeakMiB: nginxPeakMiB },
      diskPer1000PollsBytes: diskPer1000Polls, longPolls,
      startup: { models: 1000, devices: 10_000, rounds: startups, firstPollMsMedian: median(startups.map((s) => s.firstPollMs)), idleRssMiBMedian: median(startups.map((s) => s.idleRssMiB)) },
      dependent,
    };
    const out = process.env.BENCH_OUT ?? path.join(ROOT, 'bench');
    await writeFile(path.join(out, 'results.json'), `${JSON.stringify(raw, null, 2)}\n`);
    await writeFile(path.join(out, 'RESULTS.md'), report(raw));
    console.log(`wrote ${path.join(out, 'RESULTS.md')} and results.json`);
  } finally {
    for (const child of children) await stopChild(child);
    await rm(dir, { recursive: true, force: true });
  }
}

async function compare(c: Comparison): Promise<ComparisonResult> {
  const rounds: Array<{ gateway: WrkResult; nginx: WrkResult; floor: WrkResult }> = [];
  for (let round = 0; round < ROUNDS; round++) {
    // Rotate who goes first, so drift in machine load does not favour one side.
    const servers = ['nginx', 'gateway', 'floor'] as const;
    const order = [...servers.slice(round % 3), ...servers.slice(0, round % 3)];
    const result: Partial<Record<'gateway' | 'nginx' | 'floor', WrkResult>> = {};
    for (const who of order) result[who] = await wrk(c[who]);
    rounds.push(result as { gateway: WrkResult; nginx: WrkResult; floor: WrkResult });
  }
  const value = (r: WrkResult) => (c.unit === 'MB/s' ? r.megabytesPerSecond : r.requestsPerSecond);
  return {
    name: c.name,
    unit: c.unit,
    connections: c.gateway.connections,
    rounds,
    gatewayMedian: median(rounds.map((r) => value(r.gateway))),
    nginxMedian: median(rounds.map((r) => value(r.nginx))),
    floorMedian: median(rounds.map((r) => value(r.floor))),
    ratio: median(rounds.map((r) => value(r.gateway) / value(r.nginx))),
    floorRatio: median(rounds.map((r) => value(r.floor) / value(r.nginx))),
    gatewayP50Ms: median(rounds.map((r) => r.gateway.p50Ms)),
    gatewayP99Ms: median(rounds.map((r) => r.gateway.p99Ms)),
    nginxP50Ms: median(rounds.map((r) => r.nginx.p50Ms)),
    nginxP99Ms: median(rounds.map((r) => r.nginx.p99Ms)),
    floorP99Ms: median(rounds.map((r) => r.floor.p99Ms)),
    p99Ratio: median(rounds.map((r) => r.gateway.p99Ms / r.nginx.p99Ms)),
  };
}

function report(raw: {
  machine: Record<string, unknown>; comparisons: ComparisonResult[];
  memory: { idleRssMiB: number; peakRssMiB: number; peakAfterLoadMiB: number; nginxWorkerPeakMiB: number };
  diskPer1000PollsBytes: number; longPolls: { kibPerHeld: number; pushToLastAnsweredMs: number; held: number };
  startup: { firstPollMsMedian: number; idleRssMiBMedian: number; rounds: Array<{ firstPollMs: number }> };
  dependent: Array<Skipped | Measured>;
}): string {
  const [poll, notModified, download, range] = raw.comparisons as [ComparisonResult, ComparisonResult, ComparisonResult, ComparisonResult];
  const row = (figure: string, value: string, target: string, met: boolean) => `| ${figure} | ${value} | ${target} | ${met ? 'meets' : '**below**'} |`;
  const vs = (r: ComparisonResult) => `**${r.ratio.toFixed(2)}x** (${fmt(r.gatewayMedian)} vs ${fmt(r.nginxMedian)} ${r.unit}; per round ${r.rounds.map((x) => (r.unit === 'MB/s' ? x.gateway.megabytesPerSecond / x.nginx.megabytesPerSecond : x.gateway.requestsPerSecond / x.nginx.requestsPerSecond).toFixed(2)).join(', ')}; bare node:http ${r.floorRatio.toFixed(2)}x)`;
  const lines = [
    row(poll.name.replace(/^poll 200/, 'poll 200') + ', vs nginx static JSON', vs(poll), '≥ 0.7x in every run', poll.rounds.every((x) => x.gateway.requestsPerSecond / x.nginx.requestsPerSecond >= 0.7)),
    row('poll p99 latency at 256 connections', `**${poll.p99Ratio.toFixed(2)}x** nginx's (p50 ${fmt(poll.gatewayP50Ms)} vs ${fmt(poll.nginxP50Ms)} ms, p99 ${fmt(poll.gatewayP99Ms)} vs ${fmt(poll.nginxP99Ms)} ms; bare node:http p99 ${fmt(poll.floorP99Ms)} ms)`, '≤ 2x nginx p99', poll.p99Ratio <= 2),
    row('poll 304 (If-None-Match) vs nginx 304, 256 connections', vs(notModified), '≥ 0.8x', notModified.ratio >= 0.8),
    row('4 MiB download, 16 connections', vs(download), '≥ 0.8x in every run', download.rounds.every((x) => x.gateway.megabytesPerSecond / x.nginx.megabytesPerSecond >= 0.8)),
    row('Range, one 64 KiB piece per request, 64 connections', vs(range), '≥ 0.7x', range.ratio >= 0.7),
    row('RSS idle after start (one model)', `${raw.memory.idleRssMiB.toFixed(1)} MiB`, '≤ 60 MiB', raw.memory.idleRssMiB <= 60),
    row('RSS idle after start, 1,000 models and 10,000 devices', `${raw.startup.idleRssMiBMedian.toFixed(1)} MiB`, '≤ 60 MiB', raw.startup.idleRssMiBMedian <= 60),
    row('RSS peak during the runs above', `${raw.memory.peakRssMiB.toFixed(1)} MiB (after the wrk runs ${raw.memory.peakAfterLoadMiB.toFixed(1)} MiB; nginx worker ${raw.memory.nginxWorkerPeakMiB.toFixed(1)} MiB)`, '≤ 150 MiB', raw.memory.peakRssMiB <= 150),
    row('start-up to first answered poll, 1,000 models and 10,000 devices stored', `${fmt(raw.startup.firstPollMsMedian)} ms (rounds ${raw.startup.rounds.map((r) => fmt(r.firstPollMs)).join(', ')})`, '≤ 1 s', raw.startup.firstPollMsMedian <= 1000),
    row('disk written per 1,000 polls (1,000 devices, after the coalesced flush)', `${(raw.diskPer1000PollsBytes / 1024).toFixed(1)} KiB`, '≤ 64 KiB', raw.diskPer1000PollsBytes <= 64 * 1024),
    row(`${raw.longPolls.held.toLocaleString('en')} long polls held at once: memory per held request`, `${raw.longPolls.kibPerHeld.toFixed(1)} KiB`, '(reported)', true),
    row(`${raw.longPolls.held.toLocaleString('en')} long polls: push to the last answered`, `${fmt(raw.longPolls.pushToLastAnsweredMs)} ms`, '(reported)', true),
  ];
  for (const d of raw.dependent) {
    lines.push('skipped' in d ? `| ${d.name} | skipped: ${d.skipped} | ${d.target} | |` : row(d.name, d.value, d.target, d.met));
  }
  const m = raw.machine;
  return `# Benchmark results

Recorded by \`npm run bench\` on ${String(m.date).slice(0, 16).replace('T', ' ')} UTC (${m.cpu}, ${m.cores} cores, Node ${m.node},
load average at the end ${String(m.loadavg).split(' ').slice(0, 3).join(' ')}; the machine is shared, so absolute figures are noisy
and the ratios, measured in the same run, are what to compare). The gateway ran as \`node ${String(m.entry).replaceAll(ROOT, "")}\`.
wrk, 1 thread, ${ROUNDS} rounds of ${SECONDS} s per case, rotating which server goes first; figures are medians, a
ratio is the median of per-round ratios. nginx runs one worker (like the gateway's one event loop)
with sendfile on and no access log. "bare node:http" is bench/node-floor.ts, a node:http server with the
gateway's node flags answering the same bytes and nothing else, measured in the same rounds: the
most any node:http server reaches here. All listen on loopback inside a private network namespace.
Raw numbers: [results.json](results.json). Why the targets marked below are not met, with the profiles: [ANALYSIS.md](ANALYSIS.md).

| figure | measured | target | |
|---|---|---|---|
${lines.join('\n')}
`;
}

function median(values: number[]): number {
  const sorted = [...values].sort((a, b) => a - b);
  const mid = sorted.length >> 1;
  return sorted.length % 2 ? sorted[mid]! : (sorted[mid - 1]! + sorted[mid]!) / 2;
}

function fmt(value: number): string {
  return value >= 100 ? Math.round(value).toString() : value.toFixed(1);
}

