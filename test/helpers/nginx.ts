import { spawn } from 'node:child_process';
import { readFile, writeFile } from 'node:fs/promises';
import path from 'node:path';
import { freePort } from './daemon-process.ts';
import { tempDir, type HasTeardown } from './harness.ts';

// nginx (Debian's nginx-light) as a static store, the way a site would host one: its own
// config, pid, logs and temp folders in a test folder, on a free loopback port, in the
// foreground (`daemon off`) so the test owns the process. Workers run as root: the test's
// folders are mode 0700 and nginx would otherwise drop to www-data and answer 403.

export interface AccessLine {
  method: string;
  uri: string;
  status: number;
  /** Everything sent for the request: status line, headers and body. */
  bytesSent: number;
  bodyBytes: number;
  range: string;
}

export interface Nginx {
  url: string;
  /** The requests nginx has logged so far (flushed per request). */
  accessLog(): Promise<AccessLine[]>;
}

/** `connections`: worker_connections (a load simulation needs more than a test). */
export async function startNginx(t: HasTeardown, root: string, options: { connections?: number } = {}): Promise<Nginx> {
  const dir = await tempDir(t, 'modelferry-nginx-');
  const log = path.join(dir, 'access.log');
  for (let attempt = 1; ; attempt++) {
    const port = await freePort();
    const conf = path.join(dir, 'nginx.conf');
    await writeFile(conf, `daemon off;
user root;
worker_processes 1;
pid ${dir}/nginx.pid;
error_log ${dir}/error.log warn;
events { worker_connections ${options.connections ?? 64}; }
http {
  log_format store '$request_method $uri $status $bytes_sent $body_bytes_sent "$http_range"';
  access_log ${log} store;
  client_body_temp_path ${dir}/body;
  proxy_temp_path ${dir}/proxy;
  fastcgi_temp_path ${dir}/fastcgi;
  uwsgi_temp_path ${dir}/uwsgi;
  scgi_temp_path ${dir}/scgi;
  types { application/json json; }
  default_type application/octet-stream;
  server { listen 127.0.0.1:${port}; root ${root}; etag on; }
}
`);
    const child = spawn('nginx', ['-c', conf], { stdio: ['ignore', 'ignore', 'pipe'] });
    let stderr = '';
    child.stderr!.setEncoding('utf8').on('data', (text: string) => { stderr += text; });
    const exited = new Promise<void>((resolve) => child.once('close', () => resolve()));
    t.teardown(async () => {
      if (child.exitCode === null && child.signalCode === null) child.kill('SIGTERM');
      await exited;
    });
    const url = `http://127.0.0.1:${port}`;
    if (await cameUp(url, () => child.exitCode !== null)) {
      return {
        url,
        accessLog: async () => (await readFile(log, 'utf8').catch(() => '')).split('\n').filter(Boolean).map(parseLine),
      };
    }
    if (attempt >= 3 || !/Address already in use/.test(stderr + await readFile(path.join(dir, 'error.log'), 'utf8').catch(() => ''))) {
      throw new Error(`nginx did not start: ${stderr}`);
    }
  }
}

async function cameUp(url: string, exited: () => boolean): Promise<boolean> {
  for (let i = 0; i < 100 && !exited(); i++) {
    try {
      await (await fetch(`${url}/`)).arrayBuffer();
      return true;
    } catch {
      await new Promise((resolve) => setTimeout(resolve, 50));
    }
  }
  return false;
}

function parseLine(line: string): AccessLine {
  const match = /^(\S+) (\S+) (\d+) (\d+) (\d+) "(.*)"$/.exec(line);
  if (!match) throw new Error(`unexpected access log line: ${line}`);
  return { method: match[1]!, uri: match[2]!, status: Number(match[3]), bytesSent: Number(match[4]), bodyBytes: Number(match[5]), range: match[6] === '-' ? '' : match[6]! };
}
