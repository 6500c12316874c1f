import { isDeepStrictEqual } from 'node:util';
import { Teardowns, until } from '../helpers/harness.ts';
import { fixturePath } from '../helpers/programs.ts';
import { assignModel, GATEWAY_PORT, pushModel, startLanGateway, type LanGateway } from './gateway.ts';
import { testNeeding } from '../helpers/requirements.ts';
import { createLan, type Lan } from './lan.ts';
import { bonjourBrowser, mdnsQuery, serviceOf, zeroconf, type Json } from './mdns-peers.ts';
import { ALL_TOKEN } from '../helpers/tokens.ts';

// python3-zeroconf is the independent resolver several of these tests listen with.
const test = testNeeding('netns', 'python3-zeroconf');

// One gateway host and one device host, shared by these tests in order: the gateway is
// found, its revision and addresses change, it is attacked, and it says goodbye.

const shared = new Teardowns();
test.after.always(() => shared.run());

interface Setup {
  lan: Lan;
  gateway: LanGateway;
  browser: Awaited<ReturnType<typeof bonjourBrowser>>;
  health: () => Promise<Json>;
}

let setup: Promise<Setup> | undefined;
function lanSetup(): Promise<Setup> {
  setup ??= (async () => {
    const lan = await createLan(shared, ['gw', 'dev', 'esp']);
    const dev = lan.host('dev');
    // Listening before the gateway starts, so it hears the announcement as a device that boots first would.
    const browser = await bonjourBrowser(dev);
    const gateway = await startLanGateway(shared, lan.host('gw'), { config: { mdns: { addressCheckSeconds: 1 } } });
    const health = async () => JSON.parse((await dev.http(`${gateway.url}/healthz`)).body) as Json;
    return { lan, gateway, browser, health };
  })();
  return setup;
}

/** /healthz once `done` accepts it. */
async function healthWhen(health: () => Promise<Json>, what: string, done: (value: Json) => boolean): Promise<Json> {
  return until(what, async () => {
    const value = await health();
    return done(value) ? value : undefined;
  }, 15_000);
}

const mdnsOf = (health: Json) => health.mdns as {
  state: string; name: string; host: string; addresses: string[]; txt: Record<string, string>; announcements: number;
};

test.serial("bonjour-service's browser on a device host finds the gateway: port, address and TXT", async (t) => {
  t.timeout(120_000); // the first test builds the LAN and starts the gateway
  const { lan, gateway, browser, health } = await lanSetup();
  const gw = lan.host('gw');
  const up = serviceOf(await browser.waitFor((event) => event.event === 'up'));
  const h = await health();
  t.is(up.name, `modelferry on ${gw.hostname}`);
  t.is(up.port, GATEWAY_PORT);
  t.is(up.host, `${gw.hostname}.local`);
  t.true(up.addresses.includes(gw.address), `addresses ${up.addresses.join(', ')}`);
  t.deepEqual(up.txt, { txtvers: '1', api: '/v1', id: String(h.gateway), prio: '10', rev: String(h.revision), tls: '0' });
  // /healthz says what is advertised, under which name, on which addresses.
  const mdns = mdnsOf(h);
  t.is(mdns.state, 'announced');
  t.is(mdns.name, up.name);
  t.true(mdns.addresses.includes(gw.address));
  const page = await lan.host('dev').http(`${gateway.url}/`);
  t.true(page.body.includes(up.name));
});

test.serial('python3-zeroconf, an independent resolver, finds the gateway too', async (t) => {
  const { lan, health } = await lanSetup();
  const gw = lan.host('gw');
  const resolver = await zeroconf(lan.host('dev'), 'browse');
  const found = await resolver.waitFor((event) => event.event === 'added');
  const h = await health();
  t.is(found.name, `modelferry on ${gw.hostname}._modelferry._tcp.local.`);
  t.is(found.port, GATEWAY_PORT);
  t.is(found.server, `${gw.hostname}.local.`);
  t.true((found.addresses as string[]).includes(gw.address));
  t.like(found.txt as Json, { txtvers: '1', api: '/v1', id: h.gateway, prio: '10', rev: h.revision, tls: '0' });
  await resolver.process.stop();
});

test.serial('one query for PTR, SRV, TXT and A, as an ESP-IDF device asks, gets them all in one response; so does a plain DNS query', async (t) => {
  const { lan, health } = await lanSetup();
  const gw = lan.host('gw');
  const name = mdnsOf(await health()).name;
  const fqdn = `${name}._modelferry._tcp.local.`;
  for (const legacy of [false, true]) {
    const response = await mdnsQuery(lan.host('esp'), name, gw.hostname, legacy);
    const records = response.records as Json[];
    const has = (type: string, recordName: string, data?: unknown) => records.some((record) => record.type === type
      && String(record.name).toLowerCase() === recordName.toLowerCase() && (data === undefined || JSON.stringify(record.data) === JSON.stringify(data)));
    t.true(has('ptr', '_modelferry._tcp.local.', fqdn), JSON.stringify(records));
    t.true(has('srv', fqdn, { port: GATEWAY_PORT, target: `${gw.hostname}.local.` }));
    t.true(has('txt', fqdn));
    t.true(has('a', `${gw.hostname}.local.`, gw.address));
    t.is(response.source, gw.address);
    if (legacy) {
      // RFC 6762 section 6.7: the query id echoed, TTLs of at most 10 s.
      t.is(response.id, 0x4d46);
      t.true(records.every((record) => Number(record.ttl) <= 10));
    }
  }
});

test.serial('a new revision after a push reaches a running browser without a new query', async (t) => {
  const { lan, gateway, browser, health } = await lanSetup();
  const before = String((await health()).revision);
  await pushModel(lan.host('dev'), gateway, fixturePath('add.pte'), 'kws', '1.0.0');
  await assignModel(lan.host('dev'), gateway, 'default', 'kws', '1.0.0');
  const after = String((await health()).revision);
  t.not(after, before);
  const update = await browser.waitFor((event) => event.event === 'txt-update' && serviceOf(event).txt.rev === after);
  t.is(serviceOf(update).port, GATEWAY_PORT);
  t.is(mdnsOf(await health()).txt.rev, after);
});

test.serial('a burst of 100 catalog changes is a few announcements, the last carrying the final revision', async (t) => {
  const { lan, gateway, browser, health } = await lanSetup();
  const before = mdnsOf(await health()).announcements;
  const started = Date.now();
  // One curl, 100 assignments, as fast as the gateway takes them.
  const urls = Array.from({ length: 100 }, (_, i) => `${gateway.url}/v1/assignments/02:00:00:00:01:${i.toString(16).padStart(2, '0')}`);
  const burst = await lan.host('dev').run('curl', ['-sS', '-w', '\\n%{http_code}\\n', '-X', 'PUT', '-H', `Authorization: Bearer ${ALL_TOKEN}`,
    '-H', 'Content-Type: application/json', '-d', JSON.stringify({ model: 'kws', version: '1.0.0' }), ...urls], { timeoutMs: 60_000 });
  t.is(burst.stdout.split('\n').filter((line) => line === '201').length, 100, burst.stdout + burst.stderr);
  const seconds = (Date.now() - started) / 1000;
  const final = String((await health()).revision);
  await browser.waitFor((event) => event.event === 'txt-update' && serviceOf(event).txt.rev === final);
  const announced = mdnsOf(await health()).announcements - before;
  t.log(`100 changes in ${seconds.toFixed(1)} s: ${announced} announcements`);
  // At most one per mdns.minAnnounceIntervalSeconds (1 s), plus the one that ends the burst.
  t.true(announced >= 1 && announced <= Math.ceil(seconds) + 2, `${announced} announcements in ${seconds} s`);
});

test.serial('an address added to and removed from the gateway is re-announced', async (t) => {
  const { lan } = await lanSetup();
  const gw = lan.host('gw');
  const sniffer = await zeroconf(lan.host('dev'), 'sniff');
  const added = '198.18.0.77';
  const hasA = (event: Json, ttl: (n: number) => boolean) => (event.records as Json[] | undefined)?.some(
    (record) => record.type === 'a' && record.data === added && record.name === `${gw.hostname}.local.` && ttl(Number(record.ttl)),
  ) ?? false;
  await gw.addAddress(`${added}/24`);
  const announced = await sniffer.waitFor((event) => event.source === gw.address || event.source === added ? hasA(event, (ttl) => ttl > 0) : false);
  // The re-announcement carries the old address too, and the service records with it.
  const records = announced.records as Json[];
  t.true(records.some((record) => record.type === 'a' && record.data === gw.address));
  t.true(records.some((record) => record.type === 'srv'));
  await gw.removeAddress(`${added}/24`);
  const withdrawn = await sniffer.waitFor((event) => hasA(event, (ttl) => ttl === 0));
  t.true((withdrawn.records as Json[]).some((record) => record.type === 'a' && record.data === gw.address && Number(record.ttl) > 0));
  await sniffer.process.stop();
});

test.serial('after its network interface is replaced (a Wi-Fi reconnect) the gateway re-announces and answers queries again', async (t) => {
  const { lan, health } = await lanSetup();
  const gw = lan.host('gw');
  const before = mdnsOf(await health());
  await gw.reconnect();
  // Same addresses, so nothing to compare: the gateway notices it had to join the mDNS group again.
  // The interface may come back before its address does: wait for both.
  const after = mdnsOf(await healthWhen(health, 'a new announcement on the same addresses', (value) => mdnsOf(value).announcements > before.announcements
    && isDeepStrictEqual(mdnsOf(value).addresses, before.addresses)));
  t.true(after.announcements > before.announcements);
  t.deepEqual(after.addresses, before.addresses);
  // A device that asks only now is answered: the gateway hears queries on the new interface.
  const response = await mdnsQuery(lan.host('esp'), after.name, gw.hostname);
  t.is(response.source, gw.address);
});

test.serial('hostile mDNS traffic neither crashes the gateway nor stops its advertisement', async (t) => {
  const { lan, gateway, health } = await lanSetup();
  const id = String((await health()).gateway);
  const name = mdnsOf(await health()).name;
  const attacker = await zeroconf(lan.host('dev'), 'hostile', name);
  const report = await attacker.waitFor((event) => event.done === true, 60_000);
  t.like(report, { malformed: 206, queries: 3000, spoofed: 20 });
  t.true(gateway.process.running);
  // The spoofed records sort after the gateway's own (RFC 6762 section 8.2), so the gateway
  // gives the name up and advertises under another one rather than going dark.
  const h = await healthWhen(health, 'the advertisement under another name', (value) => mdnsOf(value).state === 'announced' && mdnsOf(value).name !== name);
  t.is(h.status, 'ok');
  const renamed = mdnsOf(h).name;
  t.is(renamed, `${name} (2)`);
  t.truthy(gateway.process.logs().find((line) => line.renamedTo === renamed && line.name === name));
  // A device that starts looking now finds this gateway under its new name.
  const resolver = await zeroconf(lan.host('dev'), 'browse');
  const found = await resolver.waitFor((event) => event.event === 'added' && (event.txt as Json).id === id);
  t.is(found.port, GATEWAY_PORT);
  t.is(found.name, `${renamed}._modelferry._tcp.local.`);
  await resolver.process.stop();
});

test.serial('on shutdown the gateway says goodbye and the browser sees it go', async (t) => {
  const { gateway, browser, health } = await lanSetup();
  const name = mdnsOf(await health()).name;
  const status = await gateway.process.stop();
  t.is(status.code, 0);
  const down = await browser.waitFor((event) => event.event === 'down' && serviceOf(event).name === name);
  t.is(serviceOf(down).port, GATEWAY_PORT);
});
