import { writeFile } from 'node:fs/promises';
import path from 'node:path';
import YAML from 'yaml';
import { spawnModelferry, testConfig, type ConfigSections, type DaemonProcess } from '../helpers/daemon-process.ts';
import { tempDir, type HasTeardown } from '../helpers/harness.ts';
import { ALL_TOKEN } from '../helpers/tokens.ts';
import type { HttpResult, LanHost } from './lan.ts';

// A gateway process on a LAN host: `modelferry serve` run through the host's prefix (its
// namespace and hostname), listening on all its addresses, mDNS on unless the test says
// otherwise. Admin calls go over the LAN with curl from another host, as a pipeline's would.

export const GATEWAY_PORT = 8080;

export interface LanGateway {
  host: LanHost;
  process: DaemonProcess;
  /** `http://<host address>:8080`: reachable from the other hosts of the LAN. */
  url: string;
  dir: string;
}

export async function startLanGateway(t: HasTeardown, host: LanHost, options: { config?: ConfigSections } = {}): Promise<LanGateway> {
  const dir = await tempDir(t, 'modelferry-lan-');
  const configFile = path.join(dir, 'config.yaml');
  const config = testConfig(dir, GATEWAY_PORT, {
    mdns: { enabled: true },
    ...options.config,
    // Callers may add http keys (limits); the LAN address and port stay.
    http: { ...options.config?.http, host: '0.0.0.0', port: GATEWAY_PORT },
  });
  // testConfig merges section by section: mdns overrides from the caller replace ours key by key.
  if (options.config?.mdns) config.mdns = { enabled: true, ...options.config.mdns };
  await writeFile(configFile, YAML.stringify(config));
  const daemon = spawnModelferry(t, ['serve', '--config', configFile], { prefix: host.prefix });
  await daemon.waitForLog('gateway ready', 60_000);
  return { host, process: daemon, url: `http://${host.address}:${GATEWAY_PORT}`, dir };
}

/** PUT a model from `from` (a pipeline host) with the all-scopes token; throws unless 200/201. */
export async function pushModel(from: LanHost, gateway: LanGateway, file: string, name: string, version: string): Promise<HttpResult> {
  const result = await from.http(`${gateway.url}/v1/models/${name}/${version}`, {
    method: 'PUT', bodyFile: file, headers: { Authorization: `Bearer ${ALL_TOKEN}`, 'Content-Type': 'application/octet-stream' },
  });
  if (result.status !== 200 && result.status !== 201) throw new Error(`push ${name}@${version}: ${result.status} ${result.body}`);
  return result;
}

/** PUT an assignment from `from`; throws unless 200/201. */
export async function assignModel(from: LanHost, gateway: LanGateway, selector: string, model: string, version: string): Promise<HttpResult> {
  const result = await from.http(`${gateway.url}/v1/assignments/${selector}`, {
    method: 'PUT', body: JSON.stringify({ model, version }),
    headers: { Authorization: `Bearer ${ALL_TOKEN}`, 'Content-Type': 'application/json' },
  });
  if (result.status !== 200 && result.status !== 201) throw new Error(`assign ${selector}: ${result.status} ${result.body}`);
  return result;
}
