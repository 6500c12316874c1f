import path from 'node:path';
import { loadConfig } from '../../daemon/config/load.ts';
import type { Config } from '../../daemon/config/schema.ts';
import { Gateway } from '../../daemon/gateway.ts';
import { createLogger } from '../../daemon/log.ts';
import type { Clock } from '../../daemon/clock.ts';
import { fetchWithToken, tempDir, type FetchInit, type HasTeardown } from './harness.ts';
import { TEST_TOKENS } from './tokens.ts';

// Starts a real gateway in this process: real LevelDB and blob folder in a temporary
// directory, real HTTP on a loopback port chosen by the kernel, mDNS off.

export interface TestGateway {
  url: string;
  dir: string;
  config: Config;
  gateway: Gateway;
  /** Stops and starts the same gateway on the same folders (a new port). */
  restart(): Promise<void>;
  stop(): Promise<void>;
  /** fetch against the gateway; `token` adds a bearer header. */
  fetch(pathname: string, init?: FetchInit): Promise<Response>;
  /** Its log lines (info and above) so far, when started with `logs: true`; otherwise none. */
  logs(): LogLine[];
}

export type LogLine = Record<string, unknown> & { msg?: string };

export type ConfigOverrides = Record<string, string>;

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
      'auth.tokens': JSON.stringify(TEST_TOKENS),
      // Every test client is 127.0.0.1, standing in for a fleet of addresses: the per-address
      // limit on new MACs is raised so that tests of other things can poll many MACs.
      'devices.newPerAddressPerMinute': '1000000',
      // The tests of a file share a gateway and push at the same time; the limit's own
      // tests set it.
      'artifacts.maxConcurrentPushes': '64',
      ...overrides,
    },
  }).config;
}

/**
 * A gateway on a fresh temporary folder, stopped (then the folder removed) in `t`'s teardown.
 * `options.clock`: the time rollouts step by (a test's own clock, so nothing sleeps);
 * `options.logs`: keep its log lines for `logs()`, the signal a test waits on when nothing
 * else shows that the gateway saw something.
 */
export async function startGateway(t: HasTeardown, overrides: ConfigOverrides = {}, options: { clock?: Clock; logs?: boolean } = {}): Promise<TestGateway> {
  const dir = await tempDir(t);
  const config = testConfig(dir, overrides);
  const lines: LogLine[] = [];
  const log = options.logs
    ? createLogger('info', { write: (line: string) => void lines.push(JSON.parse(line) as LogLine) })
    : createLogger('silent');
  let gateway = new Gateway(config, log, { clock: options.clock });
  await gateway.start();
  // Registered after tempDir's, so it runs first.
  t.teardown(() => gateway.stop());
  const handle: TestGateway = {
    url: urlOf(gateway),
    dir,
    config,
    gateway,
    async restart() {
      await gateway.stop();
      gateway = new Gateway(config, log, { clock: options.clock });
      await gateway.start();
      handle.gateway = gateway;
      handle.url = urlOf(gateway);
    },
    stop: () => gateway.stop(),
    fetch: (pathname, init) => fetchWithToken(handle.url, pathname, init),
    logs: () => [...lines],
  };
  return handle;
}

function urlOf(gateway: Gateway): string {
  const { address, port } = gateway.address;
  return `http://${address}:${port}`;
}
