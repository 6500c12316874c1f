import net from 'node:net';
import os from 'node:os';

/**
 * The machine's addresses devices can reach: every non-loopback address of an interface
 * with a hardware address (bonjour-service's own rule), IPv6 link-local ones included
 * (without their zone: a record carries none). Sorted, so two readings compare as lists.
 */
export function hostAddresses(interfaces: NodeJS.Dict<os.NetworkInterfaceInfo[]> = os.networkInterfaces()): string[] {
  const addresses = new Set<string>();
  for (const list of Object.values(interfaces)) {
    for (const info of list ?? []) {
      if (info.internal || info.mac === '00:00:00:00:00:00') continue;
      addresses.add(info.address.split('%')[0]!);
    }
  }
  return [...addresses].sort();
}

/** `<hostname>.local`: the first label of the hostname, as mDNS names a host. */
export function localHostName(hostname: string = os.hostname()): string {
  const label = hostname.split('.')[0]!.replace(/[^A-Za-z0-9-]/g, '-').slice(0, 63) || 'modelferry';
  return `${label}.local`;
}

/**
 * Of the machine's addresses, those the HTTP API answers on (`http.host`): IPv4 ones for
 * `0.0.0.0`, all for `::`, only itself for one address. Advertising an address the server
 * does not listen on would send devices nowhere. A host name listens where it resolves, which
 * is not known here: all addresses.
 */
export function listeningAddresses(httpHost: string, addresses: string[]): string[] {
  if (httpHost === '0.0.0.0') return addresses.filter((address) => net.isIPv4(address));
  if (httpHost === '::' || net.isIP(httpHost) === 0) return addresses;
  return addresses.filter((address) => address === httpHost);
}
