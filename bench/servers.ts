import { execFile, spawn, type ChildProcess } from 'node:child_process';
import { writeFile } from 'node:fs/promises';
import path from 'node:path';
import { promisify } from 'node:util';

const run = promisify(execFile);

export const TOKEN = 'bench-token-0123456789abcdef';

/**
 * What runs the gateway: by default the compiled package with the node flags the systemd
 * unit and npm start give it (a small young generation).
 */
export function gatewayEntry(root: string): string[] {
  const custom = process.env.BENCH_GATEWAY_ENTRY;
  const flags = (process.env.BENCH_NODE_FLAGS ?? '--max-semi-space-size=2').split(' ').filter(Boolean);
  return [...flags, ...(custom ? custom.split(' ') : [path.join(root, 'dist', 'cli', 'main.js')])];
}

export async function startGateway(entry: string[], configFile: string, port: number, children: ChildProcess[]): Promise<ChildProcess> {
  const child = spawn(process.execPath, [...entry, 'serve', '--config', configFile], { stdio: ['ignore', 'ignore', 'inherit'] });
  children.push(child);
  await waitFor(`http://127.0.0.1:${port}/healthz`);
  return child;
}

/** nginx with one worker (like the gateway's one event loop), sendfile on, no access log. */
export async function startNginx(dir: string, www: string, port: number, children: ChildProcess[]): Promise<ChildProcess> {
  const conf = path.join(dir, 'nginx.conf');
  await writeFile(conf, `daemon off;
worker_processes 1;
pid ${dir}/nginx.pid;
error_log ${dir}/nginx-error.log warn;
events { worker_connections 4096; }
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
  await waitFor(`http://127.0.0.1:${port}/`, true);
  return child;
}

export async function nginxWorkerPid(masterPid: number): Promise<number> {
  const { stdout } = await run('pgrep', ['-P', String(masterPid)]);
  return Number(stdout.trim().split('\n')[0]);
}

export async function waitFor(url: string, anyStatus = false): Promise<void> {
  for (let i = 0; i < 300; i++) {
    try {
      const response = await fetch(url);
      await response.arrayBuffer();
      if (response.ok || anyStatus) return;
    } catch { /* not up yet */ }
    await new Promise((resolve) => setTimeout(resolve, 100));
  }
  throw new Error(`${url} did not come up`);
}

export async function expectOk(response: Promise<Response>): Promise<Response> {
  const res = await response;
  if (!res.ok) throw new Error(`${res.url}: ${res.status} ${await res.text()}`);
  return res;
}

export async function stopChild(child: ChildProcess): Promise<void> {
  if (child.exitCode !== null || child.signalCode !== null) return;
  const exited = new Promise((resolve) => child.once('exit', resolve));
  child.kill('SIGTERM');
  await exited;
}

export async function which(command: string): Promise<boolean> {
  return run('sh', ['-c', `command -v ${command}`]).then(() => true, () => false);
}
