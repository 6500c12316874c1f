// Benchmarks the gateway against nginx in the same run, on the same machine, as ratios:
// the device poll route against nginx serving a static JSON of the same size, and artifact
// downloads against nginx with sendfile. Run with `npm run bench`; it runs itself inside a
// private network namespace (../shared/tools/netns-run), so no load leaves loopback.
// Writes bench/results.md. Machines are noisy: every figure is a median of several rounds.

import { execFile, spawn, type ChildProcess } from 'node:child_process';
import { mkdtemp, readFile, rm, writeFile, chmod, mkdir } from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { promisify } from 'node:util';
import { makeProgram, sha256 } from '../test/helpers/programs.ts';

const run = promisify(execFile);
const ROOT = fileURLToPath(new URL('..', import.meta.url));
const NETNS_RUN = path.join(ROOT, '..', 'shared', 'tools', 'netns-run');
const ROUNDS = Number(process.env.BENCH_ROUNDS ?? 5);
const SECONDS = Number(process.env.BENCH_SECONDS ?? 5);
const CONNECTIONS = 32;
const TOKEN = 'bench-token-0123456789abcdef';
const MAC = 'aa:bb:cc:dd:ee:ff';

if (process.env.NETNS_RUN_INSIDE !== '1') {
  const child = spawn(NETNS_RUN, [process.execPath, ...process.execArgv, fileURLToPath(import.meta.url)], { stdio: 'inherit' });
  child.on('exit', (code) => process.exit(code ?? 1));
} else {
  await main();
}

async function main(): Promise<void> {
  const dir = await mkdtemp(path.join(os.tmpdir(), 'modelferry-bench-'));
  await chmod(dir, 0o755); // nginx workers run as www-data
  const children: ChildProcess[] = [];
  try {
    const program = makeProgram(4 * 1024 * 1024);
    const digest = sha256(program);

    const gatewayPort = 18080;
    const gateway = await startGateway(dir, gatewayPort, children);
    const base = `http://127.0.0.1:${gatewayPort}`;
    await expectOk(fetch(`${base}/v1/models/bench/1`, { method: 'PUT', body: program, headers: { Authorization: `Bearer ${TOKEN}` } }));
    await expectOk(fetch(`${base}/v1/assignments/default`, {
      method: 'PUT', headers: { Authorization: `Bearer ${TOKEN}`, 'Content-Type': 'application/json' },
      body: JSON.stringify({ model: 'bench', version: '1' }),
    }));
    const pollBody = Buffer.from(await (await fetch(`${base}/v1/devices/${MAC}/model`)).arrayBuffer());

    const www = path.join(dir, 'www');
    await mkdir(www, { mode: 0o755 });
    await writeFile(path.join(www, 'poll.json'), pollBody, { mode: 0o644 });
    await writeFile(path.join(www, 'artifact'), program, { mode: 0o644 });
    const nginxPort = 18081;
    const nginx = await startNginx(dir, www, nginxPort, children);

    const cases = [
      { name: `device poll (${pollBody.length}-byte JSON)`, gateway: `${base}/v1/devices/${MAC}/model`, nginx: `http://127.0.0.1:${nginxPort}/poll.json`, unit: 'req/s' as const, target: 0.7 },
      { name: 'artifact download (4 MiB)', gateway: `${base}/v1/artifacts/${digest}`, nginx: `http://127.0.0.1:${nginxPort}/artifact`, unit: 'MB/s' as const, target: 0.8 },
    ];
    const rows: string[] = [];
    for (const c of cases) {
      const ratios: number[] = [];
      const gw: number[] = [];
      const ref: number[] = [];
      for (let round = 0; round < ROUNDS; round++) {
        // Alternate who goes first, so drift in machine load does not favour one side.
        const order = round % 2 === 0 ? ['nginx', 'gateway'] as const : ['gateway', 'nginx'] as const;
        const result: Record<string, number> = {};
        for (const who of order) result[who] = await wrk(c[who], c.unit);
        gw.push(result.gateway!);
        ref.push(result.nginx!);
        ratios.push(result.gateway! / result.nginx!);
      }
      const ratio = median(ratios);
      rows.push(`| ${c.name} | ${fmt(median(gw))} ${c.unit} | ${fmt(median(ref))} ${c.unit} | **${ratio.toFixed(2)}** | ${c.target} | ${ratio >= c.target ? 'meets' : 'below'} |`);
      console.log(rows.at(-1));
    }
    const memory = `gateway peak RSS ${await peakRssMiB(gateway.pid!)} MiB; nginx worker peak RSS ${await peakRssMiB(await nginxWorkerPid(nginx.pid!))} MiB`;
    console.log(memory);

    const { stdout: cpu } = await run('sh', ['-c', "grep -m1 'model name' /proc/cpuinfo | cut -d: -f2"]);
    const report = `# Benchmark results

Recorded by \`npm run bench\` on ${new Date().toISOString().slice(0, 10)} (${cpu.trim()}, ${os.cpus().length} cores, Node ${process.version}).
wrk, 1 thread, ${CONNECTIONS} connections, ${SECONDS} s per run, ${ROUNDS} rounds alternating
which server goes first; figures are medians, the ratio is the median of per-round ratios.
nginx runs one worker (like the gateway's one event loop) with sendfile on and no access log.
Both listen on loopback inside a private network namespace.

| case | gateway | nginx | ratio | target | |
|---|---|---|---|---|---|
${rows.join('\n')}

Memory after the runs: ${memory}.
`;
    await writeFile(path.join(ROOT, 'bench', 'results.md'), report);
    console.log('wrote bench/results.md');
  } finally {
    for (const child of children) child.kill('SIGTERM');
    await new Promise((resolve) => setTimeout(resolve, 500));
    await rm(dir, { recursive: true, force: true });
  }
}

async function startGateway(dir: string, port: number, children: ChildProcess[]): Promise<ChildProcess> {
  const config = path.join(dir, 'gateway.yaml');
  await writeFile(config, JSON.stringify({
    // wrk's connections all come from one address: the per-address cap must not count here.
    http: { host: '127.0.0.1', port, maxConnectionsPerAddress: 4 * CONNECTIONS },
    paths: { state: path.join(dir, 'state'), cache: path.join(dir, 'cache') },
    mdns: { enabled: false },
    log: { level: 'warn' },
    auth: { tokens: [{ name: 'bench', token: TOKEN, scopes: ['push', 'admin'] }] },
  }));
  const child = spawn(process.execPath, [path.join(ROOT, 'daemon', 'cli', 'modelferry.js'), 'serve', '--config', config], { stdio: ['ignore', 'ignore', 'inherit'] });
  children.push(child);
  await waitFor(`http://127.0.0.1:${port}/healthz`);
  return child;
}

async function startNginx(dir: string, www: string, port: number, children: ChildProcess[]): Promise<ChildProcess> {
  const conf = path.join(dir, 'nginx.conf');
  await writeFile(conf, `daemon off;
worker_processes 1;
pid ${dir}/nginx.pid;
error_log ${dir}/nginx-error.log warn;
events { worker_connections 1024; }
http {
  access_log off;
  sendfile on;
  tcp_nopush on;
  keepalive_requests 1000000;
  client_body_temp_path ${dir}/nginx-body;
  proxy_temp_path ${dir}/nginx-proxy;
  fastcgi_temp_path ${dir}/nginx-fastcgi;
  uwsgi_temp_path ${dir}/nginx-uwsgi;
  scgi_temp_path ${dir}/nginx-scgi;
  default_type application/octet-stream;
  server { listen 127.0.0.1:${port}; root ${www}; etag on; }
}
`);
  const child = spawn('nginx', ['-c', conf], { stdio: ['ignore', 'ignore', 'inherit'] });
  children.push(child);
  await waitFor(`http://127.0.0.1:${port}/poll.json`);
  return child;
}

async function wrk(url: string, unit: 'req/s' | 'MB/s'): Promise<number> {
  const { stdout } = await run('wrk', ['-t1', `-c${CONNECTIONS}`, `-d${SECONDS}s`, '--latency', url], { maxBuffer: 1 << 20 });
  if (/Non-2xx/.test(stdout)) throw new Error(`wrk saw errors for ${url}:\n${stdout}`);
  if (unit === 'req/s') return Number(/Requests\/sec:\s+([\d.]+)/.exec(stdout)![1]);
  const [, value, scale] = /Transfer\/sec:\s+([\d.]+)([KMG]B)/.exec(stdout)!;
  return Number(value) * { KB: 1 / 1024, MB: 1, GB: 1024 }[scale as 'KB' | 'MB' | 'GB'];
}

async function waitFor(url: string): Promise<void> {
  for (let i = 0; i < 100; i++) {
    try {
      if ((await fetch(url)).ok) return;
    } catch { /* not up yet */ }
    await new Promise((resolve) => setTimeout(resolve, 100));
  }
  throw new Error(`${url} did not come up`);
}

async function expectOk(response: Promise<Response>): Promise<void> {
  const res = await response;
  if (!res.ok) throw new Error(`${res.url}: ${res.status} ${await res.text()}`);
}

async function peakRssMiB(pid: number): Promise<string> {
  const status = await readFile(`/proc/${pid}/status`, 'utf8');
  return (Number(/VmHWM:\s+(\d+)/.exec(status)![1]) / 1024).toFixed(1);
}

async function nginxWorkerPid(masterPid: number): Promise<number> {
  const { stdout } = await run('pgrep', ['-P', String(masterPid)]);
  return Number(stdout.trim().split('\n')[0]);
}

function median(values: number[]): number {
  const sorted = [...values].sort((a, b) => a - b);
  const mid = sorted.length >> 1;
  return sorted.length % 2 ? sorted[mid]! : (sorted[mid - 1]! + sorted[mid]!) / 2;
}

function fmt(value: number): string {
  return value >= 100 ? Math.round(value).toString() : value.toFixed(1);
}
