import { mkdtemp, readdir, rm } from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import type { ExecutionContext } from 'ava';
import { loadConfig } from '../../daemon/config/load.ts';
import type { Config } from '../../daemon/config/schema.ts';
import { Gateway } from '../../daemon/gateway.ts';
import { createLogger } from '../../daemon/log.ts';

// Starts a real gateway in this process: real LevelDB and blob folder in a temporary
// directory, real HTTP on a loopback port chosen by the kernel, mDNS off.

export const PUSH_TOKEN = 'test-push-token-0123456789';
export const ADMIN_TOKEN = 'test-admin-token-0123456789';
export const SYNC_TOKEN = 'test-sync-token-0123456789';
export const ALL_TOKEN = 'test-all-scopes-token-0123456789';

export interface TestGateway {
  url: string;
  dir: string;
  config: Config;
  gateway: Gateway;
  /** Stops and starts the same gateway on the same folders (a new port). */
  restart(): Promise<void>;
  stop(): Promise<void>;
  /** fetch against the gateway; `token` adds a bearer header. */
  fetch(pathname: string, init?: RequestInit & { token?: string }): Promise<Response>;
}

export type ConfigOverrides = Record<string, string>;

export async function tempDir(prefix = 'modelferry-test-'): Promise<string> {
  return mkdtemp(path.join(os.tmpdir(), prefix));
}

/** A gateway config for tests: loopback, port 0, temp folders, mDNS off, the four test tokens. */
export function testConfig(dir: string, overrides: ConfigOverrides = {}): Config {
  return loadConfig({
    file: undefined,
    env: {},
    cwd: dir,
    flags: {
      'http.host': '127.0.0.1',
      'http.port': '0',
      'http.shutdownGraceSeconds': '2',
      'paths.state': path.join(dir, 'state'),
      'paths.cache': path.join(dir, 'cache'),
      'mdns.enabled': 'false',
      'log.level': 'silent',
      'auth.tokens': JSON.stringify([
        { name: 'pipeline', token: PUSH_TOKEN, scopes: ['push'] },
        { name: 'operator', token: ADMIN_TOKEN, scopes: ['admin'] },
        { name: 'downstream', token: SYNC_TOKEN, scopes: ['sync'] },
        { name: 'root', token: ALL_TOKEN, scopes: ['push', 'admin', 'sync'] },
      ]),
      ...overrides,
    },
  }).config;
}

export async function startGateway(t: ExecutionContext, overrides: ConfigOverrides = {}): Promise<TestGateway> {
  const dir = await tempDir();
  const config = testConfig(dir, overrides);
  let gateway = new Gateway(config, createLogger('silent'));
  await gateway.start();
  const handle: TestGateway = {
    url: urlOf(gateway),
    dir,
    config,
    gateway,
    async restart() {
      await gateway.stop();
      gateway = new Gateway(config, createLogger('silent'));
      await gateway.start();
      handle.gateway = gateway;
      handle.url = urlOf(gateway);
    },
    stop: () => gateway.stop(),
    fetch(pathname, init = {}) {
      const { token, ...rest } = init;
      const headers = new Headers(rest.headers);
      if (token) headers.set('Authorization', `Bearer ${token}`);
      return fetch(`${handle.url}${pathname}`, { ...rest, headers });
    },
  };
  t.teardown(async () => {
    await gateway.stop();
    await rm(dir, { recursive: true, force: true });
  });
  return handle;
}

function urlOf(gateway: Gateway): string {
  const { address, port } = gateway.address;
  return `http://${address}:${port}`;
}

/**
 * What a refused request must leave untouched: the blob folder (complete blobs and any
 * temporary files) and the catalog as the API shows it.
 */
export async function storedState(gw: TestGateway): Promise<{ blobs: string[]; temp: string[]; models: unknown; assignments: unknown; groups: unknown }> {
  const cache = gw.config.paths.cache;
  const blobs = (await readdir(cache)).filter((name) => name !== 'tmp').sort();
  const temp = (await readdir(path.join(cache, 'tmp'))).sort();
  const read = async (pathname: string) => (await gw.fetch(pathname, { token: ADMIN_TOKEN })).json();
  const models = await read('/v1/models');
  const assignments = await read('/v1/assignments');
  const groups = await read('/v1/groups');
  return { blobs, temp, models, assignments, groups };
}
