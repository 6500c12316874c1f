import { execFileSync } from 'node:child_process';
import { Teardowns } from '../helpers/harness.ts';
import { startLanGateway } from './gateway.ts';
import { createLan, lanTest } from './lan.ts';

// The LAN harness itself: hosts see each other and nothing else, and nothing outlives a test.

function namespaces(): string[] {
  return execFileSync('ip', ['netns', 'list'], { encoding: 'utf8' }).split('\n').map((line) => line.split(' ')[0]!).filter(Boolean);
}

lanTest('a device host reaches a gateway on another host over the LAN', async (t) => {
  const lan = await createLan(t, ['gw', 'dev']);
  const gateway = await startLanGateway(t, lan.host('gw'), { config: { mdns: { enabled: false } } });
  const health = await lan.host('dev').http(`${gateway.url}/healthz`);
  t.is(health.status, 200);
  t.is(JSON.parse(health.body).status, 'ok');
  // The gateway process runs in the namespace, under the host's own hostname.
  const hostname = await lan.host('gw').run('hostname', []);
  t.is(hostname.stdout.trim(), lan.host('gw').hostname);
});

lanTest('a host has only loopback and its LAN interface, with multicast routed to the LAN', async (t) => {
  const lan = await createLan(t, ['solo']);
  const host = lan.host('solo');
  const links = await host.run('ip', ['-o', 'link', 'show']);
  const names = links.stdout.split('\n').filter(Boolean).map((line) => line.split(':')[1]!.trim().split('@')[0]);
  t.deepEqual(names.sort(), ['eth0', 'lo']);
  const route = await host.run('ip', ['route', 'get', '224.0.0.251']);
  t.regex(route.stdout, /dev eth0/);
  const addresses = await host.run('ip', ['-4', '-o', 'address', 'show', 'dev', 'eth0']);
  t.true(addresses.stdout.includes(`${host.address}/24`));
});

lanTest('teardown removes every namespace and kills what still runs in it', async (t) => {
  const teardowns = new Teardowns();
  const lan = await createLan(teardowns, ['a', 'b']);
  const sleeper = lan.host('a').spawn('sleep', ['600']);
  const made = [lan.bridgeNs, lan.host('a').ns, lan.host('b').ns];
  t.true(made.every((ns) => namespaces().includes(ns)));
  await teardowns.run();
  t.false(namespaces().some((ns) => made.includes(ns)));
  t.false(sleeper.running);
});
