import { execFile, spawnSync } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { promisify } from 'node:util';
import type { ExecutionContext } from 'ava';
import type { HasTeardown } from '../helpers/harness.ts';
import { missing, testNeeding } from '../helpers/requirements.ts';

/**
 * A private "LAN" for tests, made of Linux network namespaces: one namespace per host, each
 * with an `eth0` veth whose peer sits in a bridge of its own namespace, addresses from
 * 198.18.0.0/24 (the benchmarking range), loopback up, multicast routed to `eth0`.
 * Nothing is connected to the machine's own interfaces, so mDNS and test traffic stay in.
 *
 * How another test uses it:
 *
 *   import { lanTest, createLan } from '../lan/lan.ts';
 *   import { startLanGateway } from '../lan/gateway.ts';
 *
 *   lanTest('a device finds the gateway', async (t) => {
 *     const lan = await createLan(t, ['gw', 'dev']);          // torn down in t.teardown
 *     const gw = await startLanGateway(t, lan.host('gw'), { config: { mdns: { enabled: true } } });
 *     const out = await lan.host('dev').run('curl', ['-s', `${gw.url}/healthz`]);
 *     const child = lan.host('dev').spawn('some-simulator', ['--gateway', gw.url]);   // killed in teardown
 *   });
 *
 * `lanTest` (and `lanTest.serial`) is ava's `test` where namespaces can be made (root and
 * `ip` present), and a skip with its reason elsewhere (test/helpers/requirements.ts; under
 * CI the test fails with that reason instead). Namespace names carry this process's pid and a random suffix, so concurrent
 * test runs never share one; whatever a run leaves behind is deleted when its process exits.
 */

const exec = promisify(execFile);

export const SUBNET = '198.18.0';
const PREFIX = `mf-${process.pid}-${randomBytes(3).toString('hex')}`;
let lanCount = 0;

type LanImplementation = (t: ExecutionContext) => Promise<void> | void;

const netnsTest = testNeeding('netns');

/** ava's `test` for tests that need a LAN: skipped, with the reason, where namespaces cannot be made. */
export function lanTest(title: string, implementation: LanImplementation): void {
  netnsTest(title, implementation);
}
lanTest.serial = (title: string, implementation: LanImplementation): void => {
  netnsTest.serial(title, implementation);
};

// Leftovers of this process (a crash between add and teardown) go when the process does.
process.once('exit', () => {
  const listed = spawnSync('ip', ['netns', 'list'], { encoding: 'utf8' });
  for (const line of (listed.stdout ?? '').split('\n')) {
    const name = line.split(' ')[0];
    if (name && name.startsWith(`${PREFIX}-`)) killAndDelete(name);
  }
});

function killAndDelete(ns: string): void {
  const pids = spawnSync('ip', ['netns', 'pids', ns], { encoding: 'utf8' }).stdout ?? '';
  for (const pid of pids.split('\n').filter(Boolean)) {
    try {
      process.kill(Number(pid), 'SIGKILL');
    } catch {
      // already gone
    }
  }
  spawnSync('ip', ['netns', 'del', ns]);
}

export interface RunResult {
  code: number | null;
  stdout: string;
  stderr: string;
}

export interface HttpResult {
  status: number;
  headers: Record<string, string>;
  body: string;
}

export interface HttpOptions {
  method?: string;
  headers?: Record<string, string>;
  body?: string;
  /** Sent as the body, streamed by curl from the file. */
  bodyFile?: string;
  timeoutSeconds?: number;
}

/** One machine on the LAN: a namespace with `eth0` on the bridge. */
export class LanHost {
  readonly name: string;
  readonly ns: string;
  /** The host's own hostname (processes started here see it; `<hostname>.local` in mDNS). */
  readonly hostname: string;
  /** First address: what other hosts use to reach this one. */
  readonly address: string;
  readonly addresses: string[];
  /** Addresses standing for devices of their own (LanOptions.clientsPerHost). */
  readonly clientAddresses: string[] = [];
  readonly #t: HasTeardown;
  readonly #bridgeNs: string;
  readonly #port: string;

  constructor(t: HasTeardown, name: string, ns: string, hostname: string, addresses: string[], bridgeNs: string, port: string) {
    this.#t = t;
    this.#bridgeNs = bridgeNs;
    this.#port = port;
    this.name = name;
    this.ns = ns;
    this.hostname = hostname;
    this.addresses = addresses;
    this.address = addresses[0]!;
  }

  /**
   * The words that run a command on this host: in its namespace, with its own hostname (a
   * UTS namespace of its own). Each word execs the next, so the pid is the command's.
   */
  get prefix(): string[] {
    return ['ip', 'netns', 'exec', this.ns, 'unshare', '--uts', '--', 'sh', '-c', 'hostname "$0" && exec "$@"', this.hostname];
  }

  /** Runs a command on this host to its end (killed after timeoutMs). */
  async run(command: string, args: string[], options: { timeoutMs?: number; input?: string } = {}): Promise<RunResult> {
    const [bin, ...words] = [...this.prefix, command, ...args];
    return new Promise((resolve, reject) => {
      const child = execFile(bin!, words, { timeout: options.timeoutMs ?? 30_000, killSignal: 'SIGKILL', maxBuffer: 64 * 1024 * 1024, encoding: 'utf8' }, (error, stdout, stderr) => {
        const code = error ? (typeof (error as { code?: unknown }).code === 'number' ? (error as { code: number }).code : null) : 0;
        if (error && code === null && !(error as { killed?: boolean }).killed) return reject(error);
        resolve({ code, stdout, stderr });
      });
      if (options.input !== undefined) child.stdin!.end(options.input);
      else child.stdin!.end();
    });
  }

  /** A long-running command on this host, killed in the test's teardown if still running. */
  spawn(command: string, args: string[]): LanProcess {
    const child = new LanProcess([...this.prefix, command, ...args]);
    this.#t.teardown(() => child.kill());
    return child;
  }

  /** An HTTP request from this host, made by curl (the pipeline's client). */
  async http(url: string, options: HttpOptions = {}): Promise<HttpResult> {
    const args = ['-sS', '-i', '--max-time', String(options.timeoutSeconds ?? 30), '-X', options.method ?? 'GET'];
    for (const [name, value] of Object.entries(options.headers ?? {})) args.push('-H', `${name}: ${value}`);
    if (options.bodyFile !== undefined) args.push('--data-binary', `@${options.bodyFile}`);
    else if (options.body !== undefined) args.push('--data-binary', '@-');
    args.push(url);
    const result = await this.run('curl', args, { input: options.body, timeoutMs: ((options.timeoutSeconds ?? 30) + 10) * 1000 });
    if (result.code !== 0) throw new Error(`curl ${url} from ${this.name}: exit ${result.code}: ${result.stderr}`);
    return parseCurlResponse(result.stdout);
  }

  /** Adds `address/prefix` to eth0 (an address change, as after a DHCP renew). */
  async addAddress(cidr: string): Promise<void> {
    await ip('-n', this.ns, 'address', 'add', cidr, 'dev', 'eth0');
  }

  async removeAddress(cidr: string): Promise<void> {
    await ip('-n', this.ns, 'address', 'del', cidr, 'dev', 'eth0');
  }

  /**
   * Shapes what the LAN sends to this host, as a slow link would: a token bucket (tc tbf) on
   * its port of the bridge, at `rate` with `burst` (tc's units: '16mbit', '32kbit').
   */
  async shapeDownlink(rate: string, burst: string, latency = '2000ms'): Promise<void> {
    await exec('ip', ['netns', 'exec', this.#bridgeNs, 'tc', 'qdisc', 'add', 'dev', this.#port, 'root', 'tbf', 'rate', rate, 'burst', burst, 'latency', latency]);
  }

  /**
   * Unplugs the host and plugs it back: eth0 is deleted and a new one made with the same
   * hardware and IP addresses, as when a Wi-Fi adapter drops off and reconnects. Sockets
   * keep their bindings; multicast group memberships on the old interface are gone.
   */
  async reconnect(): Promise<void> {
    const { stdout } = await exec('ip', ['-n', this.ns, '-j', 'link', 'show', 'eth0']);
    const mac = (JSON.parse(stdout) as Array<{ address: string }>)[0]!.address;
    await ip('-n', this.#bridgeNs, 'link', 'del', this.#port);
    await connect(this.#bridgeNs, this.ns, this.#port, this.addresses, mac);
  }
}

function parseCurlResponse(raw: string): HttpResult {
  // -i prints every response's head (a 100 Continue too); the last head is the answer.
  let rest = raw;
  for (;;) {
    const end = rest.indexOf('\r\n\r\n');
    if (end < 0) throw new Error(`not an HTTP response: ${raw.slice(0, 200)}`);
    const head = rest.slice(0, end).split('\r\n');
    rest = rest.slice(end + 4);
    const status = Number(head[0]!.split(' ')[1]);
    if (status === 100) continue;
    const headers: Record<string, string> = {};
    for (const line of head.slice(1)) {
      const colon = line.indexOf(':');
      if (colon > 0) headers[line.slice(0, colon).trim().toLowerCase()] = line.slice(colon + 1).trim();
    }
    return { status, headers, body: rest };
  }
}

/** A child process on a LAN host; output kept as lines. */
export class LanProcess {
  readonly lines: string[] = [];
  stderr = '';
  readonly exited: Promise<number | null>;
  readonly #child: ReturnType<typeof execFile>;
  #partial = '';
  #done = false;
  readonly #watchers = new Set<() => void>();

  constructor(words: string[]) {
    const [bin, ...args] = words;
    this.#child = execFile(bin!, args, { maxBuffer: Infinity, encoding: 'utf8' });
    this.#child.stdout!.on('data', (text: string) => {
      const parts = (this.#partial + text).split('\n');
      this.#partial = parts.pop()!;
      this.lines.push(...parts.filter((line) => line !== ''));
      this.#notify();
    });
    this.#child.stderr!.on('data', (text: string) => { this.stderr += text; });
    this.exited = new Promise((resolve) => {
      this.#child.once('close', (code) => {
        if (this.#partial !== '') this.lines.push(this.#partial);
        this.#done = true;
        this.#notify();
        resolve(code);
      });
    });
  }

  get pid(): number {
    return this.#child.pid!;
  }

  get running(): boolean {
    return !this.#done;
  }

  /** Writes to the process's stdin. */
  write(text: string): void {
    this.#child.stdin!.write(text);
  }

  /** The first output line (already printed or to come) that `match` accepts. */
  waitForLine(match: (line: string) => boolean, timeoutMs = 30_000): Promise<string> {
    return new Promise((resolve, reject) => {
      const check = () => {
        const found = this.lines.find(match);
        if (found !== undefined) {
          done();
          resolve(found);
        } else if (this.#done) {
          done();
          reject(new Error(`process ended before printing the line awaited\nstdout:\n${this.lines.join('\n')}\nstderr:\n${this.stderr}`));
        }
      };
      const timer = setTimeout(() => {
        done();
        reject(new Error(`no awaited line within ${timeoutMs} ms\nstdout:\n${this.lines.join('\n')}\nstderr:\n${this.stderr}`));
      }, timeoutMs);
      const done = () => {
        clearTimeout(timer);
        this.#watchers.delete(check);
      };
      this.#watchers.add(check);
      check();
    });
  }

  async stop(signal: NodeJS.Signals = 'SIGTERM'): Promise<number | null> {
    if (!this.#done) this.#child.kill(signal);
    return this.exited;
  }

  kill(): Promise<number | null> {
    return this.stop('SIGKILL');
  }

  #notify(): void {
    for (const watcher of [...this.#watchers]) watcher();
  }
}

export class Lan {
  readonly prefix: string;
  readonly bridgeNs: string;
  readonly hosts = new Map<string, LanHost>();

  constructor(prefix: string) {
    this.prefix = prefix;
    this.bridgeNs = `${prefix}-br`;
  }

  host(name: string): LanHost {
    const found = this.hosts.get(name);
    if (!found) throw new Error(`no host ${name} on this LAN`);
    return found;
  }
}

export interface LanOptions {
  /**
   * Client addresses per host: a device host with many addresses stands for many devices,
   * each with an address of its own (bind to them with `localAddress`). They sit on the
   * host's loopback interface, routed through the host's eth0 address from every other host, so the
   * gateway's neighbour table holds one entry per host (that table is shared by all
   * namespaces of the machine, and other test runs need it too). At most 254 per host.
   */
  clientsPerHost?: Record<string, number>;
}

/**
 * Builds a LAN with the named hosts (host i gets 198.18.0.(10+i)/24, and its client
 * addresses 198.18.(i+1).1...); every namespace, and every process left in one, is removed
 * in the test's teardown. Call it only from a `lanTest`.
 */
export async function createLan(t: HasTeardown, names: string[], options: LanOptions = {}): Promise<Lan> {
  const [absent] = missing('netns');
  if (absent) throw new Error(`a LAN needs network namespaces: ${absent.reason}`);
  const lan = new Lan(`${PREFIX}-${++lanCount}`);
  const created: string[] = [];
  // Registered first, so it runs after the teardowns of processes started on the LAN.
  t.teardown(() => {
    for (const ns of created.reverse()) killAndDelete(ns);
  });
  const addNs = async (ns: string) => {
    await ip('netns', 'add', ns);
    created.push(ns);
    await ip('-n', ns, 'link', 'set', 'lo', 'up');
    // No duplicate address detection: IPv6 link-local addresses are usable at once.
    await nsExec(ns, 'sysctl', '-qw', 'net.ipv6.conf.all.accept_dad=0', 'net.ipv6.conf.default.accept_dad=0');
  };
  await addNs(lan.bridgeNs);
  await ip('-n', lan.bridgeNs, 'link', 'add', 'br0', 'type', 'bridge', 'mcast_snooping', '0');
  await ip('-n', lan.bridgeNs, 'link', 'set', 'br0', 'up');

  const routes: string[] = [];
  for (const [index, name] of names.entries()) {
    if (!/^[a-z][a-z0-9]{0,9}$/.test(name)) throw new Error(`host name ${name}: lower-case letters and digits, at most 10`);
    const ns = `${lan.prefix}-${name}`;
    await addNs(ns);
    const port = `p${index}`;
    const address = `${SUBNET}.${10 + index}`;
    await connect(lan.bridgeNs, ns, port, [address]);
    const clients = options.clientsPerHost?.[name] ?? 0;
    if (clients > 254) throw new Error(`${name}: at most 254 client addresses`);
    const clientAddresses = Array.from({ length: clients }, (_, i) => `198.18.${index + 1}.${i + 1}`);
    if (clients > 0) {
      await ipBatch(ns, clientAddresses.map((client) => `address add ${client}/32 dev lo`));
      routes.push(`route add 198.18.${index + 1}.0/24 via ${address}`);
    }
    const host = new LanHost(t, name, ns, `${name}-${lan.prefix.slice(3)}`, [address], lan.bridgeNs, port);
    host.clientAddresses.push(...clientAddresses);
    lan.hosts.set(name, host);
  }
  for (const host of lan.hosts.values()) {
    const others = routes.filter((route) => !route.endsWith(` via ${host.address}`));
    if (others.length > 0) await ipBatch(host.ns, others);
  }
  return lan;
}

/** A veth pair: `port` on the bridge, `eth0` in the host with its addresses, multicast routed to it. */
async function connect(bridgeNs: string, ns: string, port: string, addresses: string[], mac?: string): Promise<void> {
  await ip('-n', bridgeNs, 'link', 'add', port, 'type', 'veth', 'peer', 'name', 'eth0', 'netns', ns, ...(mac ? ['address', mac] : []));
  await ip('-n', bridgeNs, 'link', 'set', port, 'master', 'br0', 'up');
  for (const address of addresses) await ip('-n', ns, 'address', 'add', `${address}/24`, 'dev', 'eth0');
  await ip('-n', ns, 'link', 'set', 'eth0', 'multicast', 'on', 'up');
  await ip('-n', ns, 'route', 'add', '224.0.0.0/4', 'dev', 'eth0');
}

/** `ip -n NS -batch -`: many commands in one process. */
async function ipBatch(ns: string, commands: string[]): Promise<void> {
  await new Promise<void>((resolve, reject) => {
    const child = execFile('ip', ['-n', ns, '-batch', '-'], (error) => (error ? reject(error) : resolve()));
    child.stdin!.end(`${commands.join('\n')}\n`);
  });
}

async function ip(...args: string[]): Promise<void> {
  await exec('ip', args);
}

async function nsExec(ns: string, ...args: string[]): Promise<void> {
  await exec('ip', ['netns', 'exec', ns, ...args]);
}
