import test from 'ava';
import { Teardowns } from '../helpers/harness.ts';
import { startLanGateway, type LanGateway } from './gateway.ts';
import { createLan, lanTest, type LanHost } from './lan.ts';
import { bonjourBrowser, serviceOf, zeroconf, type BrowsedService, type Json } from './mdns-peers.ts';

// Two gateways on one LAN, configured with the same instance name and different priorities,
// started at the same time: both must stay discoverable, under different names, and a
// device must be able to tell them apart by `prio` and `id`.

const shared = new Teardowns();
test.after.always(() => shared.run());

interface Setup {
  dev: LanHost;
  gateways: LanGateway[];
  ids: string[];
  services: BrowsedService[];
}

let setup: Promise<Setup> | undefined;
function lanSetup(): Promise<Setup> {
  setup ??= (async () => {
    const lan = await createLan(shared, ['gwa', 'gwb', 'dev']);
    const dev = lan.host('dev');
    const browser = await bonjourBrowser(dev);
    const gateways = await Promise.all([
      startLanGateway(shared, lan.host('gwa'), { config: { mdns: { name: 'lab gateway', priority: 10 } } }),
      startLanGateway(shared, lan.host('gwb'), { config: { mdns: { name: 'lab gateway', priority: 20 } } }),
    ]);
    const ids = await Promise.all(gateways.map(async (gateway) => String((JSON.parse((await dev.http(`${gateway.url}/healthz`)).body) as Json).gateway)));
    const services = await Promise.all(ids.map(async (id) => serviceOf(await browser.waitFor((event) => event.event === 'up' && serviceOf(event).txt.id === id))));
    return { dev, gateways, ids, services };
  })();
  return setup;
}

lanTest('two gateways configured with the same name both stay discoverable, under different names', async (t) => {
  t.timeout(120_000); // either test may be the one that builds the LAN and starts both gateways
  const { gateways, services } = await lanSetup();
  const names = services.map((service) => service.name);
  t.not(names[0], names[1]);
  t.deepEqual([...names].sort(), ['lab gateway', 'lab gateway (2)']);
  // The one that gave way said so in its log; the other did not rename.
  const renamed = gateways.map((gateway) => gateway.process.logs().filter((line) => line.renamedTo === 'lab gateway (2)').length);
  t.deepEqual([...renamed].sort(), [0, 1]);
  for (const [i, service] of services.entries()) t.true(service.addresses.includes(gateways[i]!.host.address));
});

lanTest('two gateways with different priorities are both visible and told apart, here by an independent resolver', async (t) => {
  t.timeout(120_000);
  const { dev, gateways, ids } = await lanSetup();
  const resolver = await zeroconf(dev, 'browse');
  const found = await Promise.all(ids.map((id) => resolver.waitFor((event) => event.event === 'added' && (event.txt as Json).id === id)));
  t.deepEqual(found.map((event) => (event.txt as Json).prio), ['10', '20']);
  t.deepEqual(found.map((event) => (event.addresses as string[]).includes(gateways[found.indexOf(event)]!.host.address)), [true, true]);
  // What a device does with them (docs/discovery.md "How a device chooses"): the lowest prio wins.
  const chosen = [...found].sort((a, b) => Number((a.txt as Json).prio) - Number((b.txt as Json).prio))[0]!;
  t.is((chosen.txt as Json).id, ids[0]);
  await resolver.process.stop();
});
