// Deltas (docs/deltas.md), three kinds of rows:
// - bytes over the air, as a share of the full size, for four kinds of model change: a
//   simulated device (the firmware's core) updates on loopback and counts every body byte;
// - fleet convergence: 20 simulated devices in a network namespace of their own behind a
//   veth shaped to 16 Mbit/s (tc tbf), from the assignment to all 20 running the new model,
//   with deltas and with full downloads, against the physical limit of each;
// - the cost of making the delta of a 3 MiB model on a Pi-sized budget: the gateway's delta
//   job in a cgroup of a quarter of one core, against a reference job in the same cgroup.
// `npm run bench` adds these rows to RESULTS.md; alone (`node --import tsx bench/deltas.ts`,
// which runs itself in a private network namespace, as root) it writes bench/deltas.md.

import { execFile, spawn, type ChildProcess } from 'node:child_process';
import { existsSync } from 'node:fs';
import { mkdir, mkdtemp, readFile, rm, rmdir, writeFile } from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { promisify } from 'node:util';
import { until } from '../test/helpers/harness.ts';
import { modelVersions, type ModelChange } from '../test/helpers/model-versions.ts';
import { sha256 } from '../test/helpers/programs.ts';
import { assign, push, simulator, type Measured, type Skipped } from './dependent-rows.ts';
import { TOKEN, expectOk, gatewayEntry, startGateway, stopChild } from './servers.ts';
import { configFor } from './startup.ts';

const run = promisify(execFile);
const auth = { Authorization: `Bearer ${TOKEN}` };
const MIB = 1 << 20;
/** The shaped link's rate, as tc's `16mbit` means it. */
const LINK_BITS_PER_SECOND = 16_000_000;
const FLEET = 20;

type Row = Skipped | Measured;

/** Every delta row: they need the compiled gateway (`entry`) and, but the cost row, the simulator. */
export async function deltaRows(root: string, entry: string[], dir: string, children: ChildProcess[]): Promise<Row[]> {
  const rows: Row[] = [];
  const found = await simulator(root, dir);
  const bytesNames = CHANGES.map(([, what]) => `delta: bytes over the air for ${what}, as a share of the full size`);
  if (typeof found === 'string') {
    rows.push(...bytesNames.map((name) => ({ name, target: '', skipped: found })));
    rows.push({ name: 'delta: fleet convergence over 16 Mbit/s', target: '', skipped: found });
  } else {
    rows.push(...await guarded(bytesNames.join('; '), () => bytesOverTheAir(found.path, entry, dir, children)));
    rows.push(...await guarded('delta: fleet convergence over 16 Mbit/s', async () => [await fleetOverShapedLink(found.path, entry, dir, children)]));
  }
  rows.push(...await guarded('delta: making the delta of a 3 MiB model on a quarter core', async () => [await deltaCost(root, dir)]));
  return rows;
}

async function guarded(name: string, measure: () => Promise<Row[]>): Promise<Row[]> {
  try {
    return await measure();
  } catch (error) {
    return [{ name, target: '', skipped: `failed: ${(error as Error).message}` }];
  }
}

const CHANGES: Array<[ModelChange, string, number]> = [
  ['fine-tuned head', 'a fine-tuned head (2 % of a 1 MiB program changed at its end)', 0.05],
  ['two regions', 'two changed regions (1 % each, at 30 % and 70 % of a 1 MiB program)', 0.05],
  ['full retrain', 'a full retrain (every weight of a 1 MiB program new)', 1.05],
  ['re-export', 'a re-export: the same weights behind a program that names one more operator early (every offset shifted)', 0.05],
];

/** What a simulator run printed (JSON lines), once it ended. */
async function simRun(command: string[], args: string[]): Promise<{ code: number | null; events: Array<{ event: string; detail?: string }> }> {
  const [bin, ...rest] = [...command, ...args];
  const child = spawn(bin!, rest, { stdio: ['ignore', 'pipe', 'inherit'] });
  let out = '';
  child.stdout!.setEncoding('utf8').on('data', (text: string) => { out += text; });
  const code = await new Promise<number | null>((resolve) => child.once('close', resolve));
  return { code, events: out.split('\n').filter(Boolean).map((line) => JSON.parse(line) as { event: string; detail?: string }) };
}

function statOf(events: Array<{ event: string; detail?: string }>, key: string): number {
  const stats = events.find((e) => e.event === 'stats')?.detail ?? '';
  const match = new RegExp(`${key}=(\\d+)`).exec(stats);
  if (!match) throw new Error(`no ${key} in the simulator's stats`);
  return Number(match[1]);
}

/** The sum of a counter over its labels, from /metrics. */
async function counter(base: string, name: string): Promise<number> {
  const text = await (await expectOk(fetch(`${base}/metrics`))).text();
  let sum = 0;
  for (const match of text.matchAll(new RegExp(`^${name}(?:\\{[^}]*\\})? (\\S+)$`, 'gm'))) sum += Number(match[1]);
  return sum;
}

/** (a)-(d): one device per kind of change, on loopback; every body byte it received. */
async function bytesOverTheAir(sim: string, entry: string[], dir: string, children: ChildProcess[]): Promise<Row[]> {
  const home = path.join(dir, 'delta-bytes');
  await mkdir(home);
  const port = 18130;
  const base = `http://127.0.0.1:${port}`;
  const gateway = await startGateway(entry, await configFor(home, port), port, children);
  const rows: Row[] = [];
  try {
    for (const [index, [change, what, limit]] of CHANGES.entries()) {
      const { before, after } = modelVersions(MIB, change, 'bench');
      const model = `change-${index}`;
      const mac = `02:00:00:00:dd:0${index}`;
      await push(base, model, '1', before);
      await push(base, model, '2', after);
      await assign(base, mac, model, '1');
      const device = ['--mac', mac, '--state-dir', path.join(home, model), '--gateway', base, '--once', '--stats', '--slot-bytes', String(2 * MIB)];
      const first = await simRun([sim], device);
      if (first.code !== 0) throw new Error(`${what}: the device did not install version 1`);
      const made = await counter(base, 'modelferry_deltas_made_total');
      await assign(base, mac, model, '2');
      // The gateway decides (a delta, or none worth it) before the device asks.
      await until('the delta made', async () => (await counter(base, 'modelferry_deltas_made_total')) > made || undefined, 300_000);
      const answer = await (await expectOk(fetch(`${base}/v1/devices/${mac}/model`))).json() as { delta?: { size: number } };
      const second = await simRun([sim], device);
      if (second.code !== 0) throw new Error(`${what}: the device did not install version 2`);
      const received = statOf(second.events, 'bytes_received');
      const share = received / after.length;
      const applied = statOf(second.events, 'deltas_applied') > 0;
      rows.push({
        name: `delta: bytes over the air for ${what}, as a share of the full size`,
        target: limit > 1 ? `no delta, or ≤ ${Math.round(limit * 100)} % (a full download's cost + 5 %)` : `≤ ${Math.round(limit * 100)} %`,
        value: `${(share * 100).toFixed(2)} % (${received.toLocaleString('en')} of ${after.length.toLocaleString('en')} bytes; ${applied ? `the delta, ${answer.delta!.size.toLocaleString('en')} bytes, applied` : 'no delta offered: the full artifact'})`,
        met: share <= limit,
        raw: { change, received, full: after.length, delta: answer.delta?.size ?? null, applied },
      });
    }
  } finally {
    await stopChild(gateway);
  }
  return rows;
}

/**
 * A child network namespace (`unshare --net sleep`) joined to this one by a veth whose end
 * here is shaped to 16 Mbit/s: traffic from the gateway to the devices crosses it. Needs
 * root in this namespace (`npm run bench` runs in one of its own).
 */
async function shapedLink(children: ChildProcess[]): Promise<{ gatewayAddress: string; enter: string[]; close(): Promise<void> }> {
  const holder = spawn('unshare', ['--net', 'sleep', '86400'], { stdio: 'ignore' });
  children.push(holder);
  const pid = holder.pid!;
  const enter = ['nsenter', `--net=/proc/${pid}/ns/net`];
  // The namespace exists once unshare has exec'd sleep.
  await until('the devices\' namespace', async () => ((await readFile(`/proc/${pid}/comm`, 'utf8')).trim() === 'sleep' || undefined), 10_000);
  const sh = (script: string) => run('sh', ['-ec', script]);
  await sh(`ip link add dl0 type veth peer name dl1 netns ${pid}
ip address add 10.77.0.1/24 dev dl0
ip link set dl0 up
tc qdisc add dev dl0 root tbf rate 16mbit burst 32kbit latency 2000ms`);
  await sh(`${enter.join(' ')} sh -ec 'ip link set lo up; ip address add 10.77.0.2/24 dev dl1; ip link set dl1 up'`);
  return {
    gatewayAddress: '10.77.0.1',
    enter,
    close: async () => {
      await run('ip', ['link', 'del', 'dl0']).catch(() => {});
      await stopChild(holder);
    },
  };
}

/**
 * 20 devices behind the shaped link: each installs version 1, then all long-poll; from the
 * assignment of version 2 to the 20th reporting it installed, once with deltas and once with
 * full downloads (other devices, the same models).
 */
async function fleetOverShapedLink(sim: string, entry: string[], dir: string, children: ChildProcess[]): Promise<Row> {
  const name = `delta: fleet convergence, ${FLEET} devices behind a 16 Mbit/s link (tc tbf), assignment of a fine-tuned head (1 MiB, 2 % new) to all running it`;
  const target = 'with deltas, under the physical limit of full downloads';
  const home = path.join(dir, 'delta-fleet');
  await mkdir(home);
  const link = await shapedLink(children);
  const port = 18140;
  const base = `http://127.0.0.1:${port}`;
  const gateway = await startGateway(entry, await configFor(home, port, { http: { host: '0.0.0.0' } }), port, children);
  const { before, after } = modelVersions(MIB, 'fine-tuned head', 'fleet');
  const sims: ChildProcess[] = [];
  try {
    await push(base, 'fleet', '1', before);
    await push(base, 'fleet', '2', after);
    const installed = async (macs: string[], sha: string) => {
      const { devices } = await (await expectOk(fetch(`${base}/v1/devices`, { headers: auth }))).json() as { devices: Array<{ mac: string; report: { state: string; sha256?: string } | null }> };
      return devices.filter((d) => macs.includes(d.mac) && d.report?.state === 'installed' && d.report.sha256 === sha).length === macs.length || undefined;
    };
    const phase = async (group: string, flags: string[]) => {
      const macs = Array.from({ length: FLEET }, (_, i) => `02:00:00:${group === 'deltas' ? 'd1' : 'f1'}:00:${i.toString(16).padStart(2, '0')}`);
      await expectOk(fetch(`${base}/v1/groups/${group}`, { method: 'PUT', headers: { ...auth, 'Content-Type': 'application/json' }, body: JSON.stringify({ members: macs }) }));
      await assign(base, `group:${group}`, 'fleet', '1');
      for (const mac of macs) {
        const args = ['--mac', mac, '--state-dir', path.join(home, mac.replaceAll(':', '')), '--gateway', `http://${link.gatewayAddress}:${port}`,
          '--wait', '120', '--slot-bytes', String(2 * MIB), ...flags];
        const [bin, ...rest] = [...link.enter, sim, ...args];
        sims.push(spawn(bin!, rest, { stdio: 'ignore' }));
      }
      await until(`${group}: all on version 1`, () => installed(macs, sha256(before)), 600_000);
      // Every device is back in its long poll before the assignment changes.
      await until(`${group}: long polls held`, async () => {
        const health = await (await expectOk(fetch(`${base}/healthz`))).json() as { longPolls: number };
        return health.longPolls >= FLEET || undefined;
      }, 120_000);
      const sent = async () => (await counter(base, 'modelferry_artifact_sent_bytes_total')) + (await counter(base, 'modelferry_delta_sent_bytes_total'));
      const bytesBefore = await sent();
      const started = performance.now();
      await assign(base, `group:${group}`, 'fleet', '2');
      await until(`${group}: all on version 2`, () => installed(macs, sha256(after)), 600_000);
      const seconds = (performance.now() - started) / 1000;
      const bytes = (await sent()) - bytesBefore;
      for (const child of sims.splice(0)) await stopChild(child);
      return { seconds, bytes };
    };
    const full = await phase('full', ['--no-deltas']);
    const withDeltas = await phase('deltas', []);
    const deltaSize = withDeltas.bytes / FLEET;
    const limit = (bytes: number) => (bytes * 8) / LINK_BITS_PER_SECOND;
    const fullLimit = limit(FLEET * after.length);
    const deltaLimit = limit(FLEET * deltaSize);
    return {
      name, target,
      value: `with deltas **${withDeltas.seconds.toFixed(2)} s** (physical limit of the deltas ${deltaLimit.toFixed(2)} s: ${FLEET} × ${Math.round(deltaSize).toLocaleString('en')} bytes); `
        + `full downloads ${full.seconds.toFixed(2)} s (physical limit ${fullLimit.toFixed(2)} s: ${FLEET} × ${after.length.toLocaleString('en')} bytes)`,
      met: withDeltas.seconds < fullLimit,
      raw: { devices: FLEET, linkBitsPerSecond: LINK_BITS_PER_SECOND, full: { ...full, limitSeconds: fullLimit }, deltas: { ...withDeltas, limitSeconds: deltaLimit } },
    };
  } finally {
    for (const child of sims) await stopChild(child);
    await stopChild(gateway);
    await link.close();
  }
}

/** A cgroup (v1) of a quarter of one core and its memory accounting; undefined where it cannot be made. */
async function quarterCore(): Promise<{ enter: string; maxMemory(): Promise<number>; resetMemory(): Promise<void>; remove(): Promise<void> } | string> {
  const cpu = `/sys/fs/cgroup/cpu/modelferry-bench-${process.pid}`;
  const memory = `/sys/fs/cgroup/memory/modelferry-bench-${process.pid}`;
  if (!existsSync('/sys/fs/cgroup/cpu/cpu.cfs_quota_us') || !existsSync('/sys/fs/cgroup/memory/memory.max_usage_in_bytes')) return 'no cgroup v1 cpu and memory controllers here';
  try {
    await mkdir(cpu);
    await mkdir(memory);
    await writeFile(path.join(cpu, 'cpu.cfs_period_us'), '10000');
    await writeFile(path.join(cpu, 'cpu.cfs_quota_us'), '2500');
  } catch (error) {
    return `cannot make a cgroup: ${(error as Error).message}`;
  }
  return {
    // The shell joins both before it execs the job, so nothing runs outside them.
    enter: `echo $$ > ${cpu}/cgroup.procs && echo $$ > ${memory}/cgroup.procs && exec "$@"`,
    maxMemory: async () => Number(await readFile(path.join(memory, 'memory.max_usage_in_bytes'), 'utf8')),
    resetMemory: () => writeFile(path.join(memory, 'memory.max_usage_in_bytes'), '0'),
    remove: async () => {
      await rmdir(cpu).catch(() => {});
      await rmdir(memory).catch(() => {});
    },
  };
}

/** The compiled gateway's delta job, from its own module (its flags included), and what it reports. */
async function deltaCost(root: string, dir: string): Promise<Row> {
  const name = 'delta: making the delta of a 3 MiB model in a cgroup of a quarter of one core (cpu.cfs_quota_us 2500 / period 10000)';
  const target = 'ready within deltas.waitSeconds (30 s); peak memory ≤ 200 MiB';
  const cgroup = await quarterCore();
  if (typeof cgroup === 'string') return { name, target, skipped: cgroup };
  const home = path.join(dir, 'delta-cost');
  await mkdir(home);
  const { deltaJobCommand } = await import(path.join(root, 'dist', 'deltas', 'run-delta-job.js')) as typeof import('../daemon/deltas/run-delta-job.ts');
  const inCgroup = async (command: string[]) => {
    await cgroup.resetMemory();
    const started = performance.now();
    const { stdout } = await run('sh', ['-c', cgroup.enter, 'sh', ...command], { maxBuffer: 1 << 20 });
    return { seconds: (performance.now() - started) / 1000, stdout, peakBytes: await cgroup.maxMemory() };
  };
  try {
    const cases = [];
    // As the gateway runs it (deltas.maxShare 0.6: a retrain is found new and not made), and a
    // retrain's delta made anyway (a share above 1 turns the estimate off): the worst case.
    for (const [change, maxShare] of [['fine-tuned head', 0.6], ['re-export', 0.6], ['full retrain', 0.6], ['full retrain', 2]] as const) {
      const { before, after } = modelVersions(3 * MIB, change, 'cost');
      const [from, to] = [path.join(home, `${change}-from`), path.join(home, `${change}-to`)];
      await writeFile(from, before);
      await writeFile(to, after);
      const out = path.join(home, `${change}-delta`);
      const job = await inCgroup(deltaJobCommand(from, to, out, before.length + after.length, maxShare));
      const report = JSON.parse(job.stdout) as { size?: number; estimate?: number; cpuMs: number; maxRssBytes: number };
      await rm(out, { force: true });
      // The reference: a node process that reads both files and hashes them, in the same cgroup.
      const reference = await inCgroup([process.execPath, '-e', `const c=require('node:crypto'),f=require('node:fs');for(const p of process.argv.slice(1))c.createHash('sha256').update(f.readFileSync(p)).digest();`, from, to]);
      cases.push({ change: maxShare > 1 ? `${change}, made anyway` : change, size: after.length, delta: report.size ?? null, estimate: report.estimate ?? null, seconds: job.seconds, cpuMs: report.cpuMs, maxRssBytes: report.maxRssBytes, cgroupPeakBytes: job.peakBytes, referenceSeconds: reference.seconds });
    }
    // The target is for what the gateway runs; the forced retrain is reported beside it.
    const asRun = cases.filter((c) => !c.change.endsWith('made anyway'));
    const slowest = Math.max(...asRun.map((c) => c.seconds));
    const peak = Math.max(...asRun.map((c) => c.cgroupPeakBytes));
    return {
      name, target,
      value: cases.map((c) => `${c.change}: **${c.seconds.toFixed(1)} s** (${(c.seconds / c.referenceSeconds).toFixed(1)}x reading and hashing both files there, ${c.referenceSeconds.toFixed(1)} s; ${(c.cpuMs / 1000).toFixed(1)} s CPU), peak ${(c.cgroupPeakBytes / MIB).toFixed(0)} MiB (RSS ${(c.maxRssBytes / MIB).toFixed(0)} MiB), ${c.delta === null ? `not made: ${((c.estimate ?? 1) * 100).toFixed(0)} % found new` : `delta ${(c.delta / c.size * 100).toFixed(1)} %`}`).join('; '),
      met: slowest <= 30 && peak <= 200 * MIB,
      raw: { cases },
    };
  } finally {
    await cgroup.remove();
  }
}

async function main(): Promise<void> {
  const root = fileURLToPath(new URL('..', import.meta.url));
  const entry = gatewayEntry(root);
  if (!process.env.BENCH_GATEWAY_ENTRY) {
    console.log('bench: building dist/ (npm run build)');
    await run('npm', ['run', 'build'], { cwd: root });
  }
  const dir = await mkdtemp(path.join(os.tmpdir(), 'modelferry-bench-deltas-'));
  const children: ChildProcess[] = [];
  try {
    const rows = await deltaRows(root, entry, dir, children);
    const { stdout: load } = await run('cat', ['/proc/loadavg']);
    const lines = rows.map((row) => ('skipped' in row ? `| ${row.name} | skipped: ${row.skipped} | ${row.target} | |` : `| ${row.name} | ${row.value} | ${row.target} | ${row.met ? 'meets' : '**below**'} |`));
    const text = `# Delta benchmark

Recorded by \`node --import tsx bench/deltas.ts\` on ${new Date().toISOString().slice(0, 16).replace('T', ' ')} UTC (${os.cpus()[0]?.model ?? 'cpu'}, ${os.cpus().length} cores, Node ${process.version}, load average at the end ${load.split(' ').slice(0, 3).join(' ')}; a shared machine: times are noisy). \`npm run bench\` adds the same rows to [RESULTS.md](RESULTS.md). What deltas are: [docs/deltas.md](../docs/deltas.md).

| figure | measured | target | |
|---|---|---|---|
${lines.join('\n')}
`;
    await writeFile(path.join(root, 'bench', 'deltas.md'), text);
    await writeFile(path.join(root, 'bench', 'deltas.json'), `${JSON.stringify(rows, null, 2)}\n`);
    console.log(text);
  } finally {
    for (const child of children) await stopChild(child);
    await rm(dir, { recursive: true, force: true });
  }
}

if (process.argv[1] === fileURLToPath(import.meta.url)) {
  if (process.env.NETNS_RUN_INSIDE !== '1') {
    const netnsRun = fileURLToPath(new URL('../scripts/netns-run', import.meta.url));
    const child = spawn(netnsRun, [process.execPath, ...process.execArgv, fileURLToPath(import.meta.url)], { stdio: 'inherit' });
    child.on('exit', (code) => process.exit(code ?? 1));
  } else {
    await main();
  }
}
