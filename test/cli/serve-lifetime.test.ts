import { spawn } from 'node:child_process';
import { existsSync, readFileSync, readdirSync } from 'node:fs';
import { writeFile } from 'node:fs/promises';
import path from 'node:path';
import test, { type ExecutionContext } from 'ava';
import YAML from 'yaml';
import { ROOT, cleanEnv, freePort } from '../helpers/daemon-process.ts';
import { tempDir, until } from '../helpers/harness.ts';

// README.md "Quick start" runs `npx modelferry serve --config gateway.yaml &`. npx is the
// job, and the gateway its grandchild (npm exec -> sh -c -> node): npm forwards SIGTERM
// only to that shell, which dies without passing it on, and a SIGHUP (the terminal closing)
// ends npm while the gateway takes it as a config reload. The gateway therefore watches the
// npm that started it and stops when it goes (daemon/cli/npm-launcher.ts). Each test starts
// the quick start's command for real, with npx from this machine's npm, in its own process
// group as a shell with job control makes a background job, and ends the job one way.
// dist/ must be built (npm test builds it): npx runs the package's bin.

interface Job {
  /** npx's pid, which is also the job's process group. */
  npx: number;
  gateway: number;
  url: string;
  lines: string[];
  /** Every process of the job that held its output (npx, the shell, the gateway) has ended. */
  outputClosed: Promise<void>;
}

const statOf = (pid: number) => {
  try {
    const text = readFileSync(`/proc/${pid}/stat`, 'utf8');
    const fields = text.slice(text.lastIndexOf(')') + 2).split(' ');
    return { state: fields[0]!, ppid: Number(fields[1]) };
  } catch {
    return undefined;
  }
};
const alive = (pid: number) => { const stat = statOf(pid); return stat !== undefined && stat.state !== 'Z'; };
const childrenOf = (pid: number) => readdirSync('/proc').filter((name) => /^\d+$/.test(name)).map(Number).filter((candidate) => statOf(candidate)?.ppid === pid);

async function quickStart(t: ExecutionContext): Promise<Job> {
  // npx's first run for a package links it into npm's cache (~/.npm/_npx), which takes
  // long on a busy machine; the tests run one at a time so that only the first one does.
  t.timeout(3 * 60_000);
  t.true(existsSync(path.join(ROOT, 'dist', 'cli', 'main.js')), 'dist/ is not built: run npm run build (npm test does)');
  const dir = await tempDir(t, 'modelferry-npx-');
  const port = await freePort();
  const config = path.join(dir, 'gateway.yaml');
  await writeFile(config, YAML.stringify({
    http: { host: '127.0.0.1', port }, mdns: { enabled: false },
    paths: { state: path.join(dir, 'state'), cache: path.join(dir, 'cache') },
  }));
  // --offline: the package is this checkout; nothing is fetched.
  const npx = spawn('npx', ['--offline', 'modelferry', 'serve', '--config', config], {
    cwd: ROOT, env: cleanEnv(), detached: true, stdio: ['ignore', 'pipe', 'pipe'],
  });
  const lines: string[] = [];
  let partial = '';
  // The gateway inherits these pipes and keeps them after npx is gone.
  npx.stdout.on('data', (chunk: Buffer) => {
    const text = partial + chunk.toString();
    const parts = text.split('\n');
    partial = parts.pop()!;
    lines.push(...parts);
  });
  let stderr = '';
  npx.stderr.on('data', (chunk: Buffer) => { stderr += chunk.toString(); });
  const outputClosed = new Promise<void>((resolve) => npx.stdout.once('close', () => resolve()));
  const job: Job = { npx: npx.pid!, gateway: 0, url: `http://127.0.0.1:${port}`, lines, outputClosed };
  t.teardown(() => {
    for (const pid of [job.gateway, job.npx]) if (pid > 0 && alive(pid)) process.kill(pid, 'SIGKILL');
  });
  await until('the gateway started by npx to answer', async () => {
    if (npx.exitCode !== null) throw new Error(`npx exited ${npx.exitCode}: ${stderr}`);
    return (await fetch(`${job.url}/healthz`).catch(() => undefined))?.ok ? true : undefined;
  }, 120_000);
  // npx -> sh -c -> node: the gateway is the one process below npx that runs main.js.
  const below = (pid: number): number[] => childrenOf(pid).flatMap((child) => [child, ...below(child)]);
  job.gateway = below(job.npx).find((pid) => readFileSync(`/proc/${pid}/cmdline`, 'utf8').includes('modelferry\0serve'))!;
  t.truthy(job.gateway, 'the gateway runs below npx');
  t.not(statOf(job.gateway)!.ppid, job.npx, 'npx is not the gateway\'s parent (a shell is between)');
  t.true(lines.some((line) => line.includes('"started by npm: the gateway stops when npm does"')), lines.join('\n'));
  return job;
}

async function stopsWithItsJob(t: ExecutionContext, job: Job) {
  await until('the gateway to exit', async () => (alive(job.gateway) ? undefined : true), 30_000);
  await job.outputClosed;
  const logs = job.lines.map((line) => JSON.parse(line) as { msg: string; level: number });
  t.true(logs.some((line) => /^stopping: (npm|the shell npm ran) \(pid \d+\), which started the gateway, has exited$/.test(line.msg)), job.lines.join('\n'));
  t.is(logs.at(-1)?.msg, 'stopped', 'it stopped cleanly (database closed)');
  t.deepEqual(logs.filter((line) => line.level >= 50), [], 'no errors');
  const refused = await fetch(`${job.url}/healthz`).then(() => 'answered', (error: Error) => error.message);
  t.is(refused, 'fetch failed', 'nothing listens on its port any more');
}

test.serial('kill $! from a script (SIGTERM to npx): npm hands it to its shell only, and the gateway stops all the same', async (t) => {
  const job = await quickStart(t);
  process.kill(job.npx, 'SIGTERM');
  await stopsWithItsJob(t, job);
});

test.serial('the terminal closes (SIGHUP to the whole job): npm and its shell die, and the gateway, to which SIGHUP means reload, stops', async (t) => {
  const job = await quickStart(t);
  process.kill(-job.npx, 'SIGHUP');
  await stopsWithItsJob(t, job);
});

test.serial('SIGHUP to npx alone (npm has no handler for it and dies; its shell lives on): the gateway stops', async (t) => {
  const job = await quickStart(t);
  process.kill(job.npx, 'SIGHUP');
  await stopsWithItsJob(t, job);
});
