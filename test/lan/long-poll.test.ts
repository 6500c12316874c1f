import { readFile, writeFile } from 'node:fs/promises';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import test from 'ava';
import { tempDir, Teardowns } from '../helpers/harness.ts';
import { makeProgram } from '../helpers/programs.ts';
import { assignModel, pushModel, startLanGateway, type LanGateway } from './gateway.ts';
import { createLan, lanTest, type Lan, type LanHost } from './lan.ts';
import { Peer, type Json } from './mdns-peers.ts';

// Long polls across the LAN (docs/design.md "Device poll"): devices on their own hosts hold
// `?wait=N` requests; a push from the pipeline host answers exactly the ones it concerns.
// Times are logged for the closing report, never asserted.

const LONG_POLL_TOOL = fileURLToPath(new URL('./tools/long-polls.mjs', import.meta.url));
const FLEET = 1000;
const DEVICE_HOSTS = ['d1', 'd2', 'd3', 'd4'];

const shared = new Teardowns();
test.after.always(() => shared.run());

interface Setup {
  lan: Lan;
  gateway: LanGateway;
  pipe: LanHost;
  push: (name: string, version: string) => Promise<void>;
  health: () => Promise<Json>;
}

let setup: Promise<Setup> | undefined;
function lanSetup(): Promise<Setup> {
  setup ??= (async () => {
    // Each device has an address of its own, as on a real LAN: per-address limits see one device each.
    const lan = await createLan(shared, ['gw', 'pipe', ...DEVICE_HOSTS], {
      clientsPerHost: Object.fromEntries(DEVICE_HOSTS.map((name) => [name, FLEET / DEVICE_HOSTS.length])),
    });
    // The default limits (docs/limits.md): they are sized for one device per
    // address, which is what these devices are.
    const gateway = await startLanGateway(shared, lan.host('gw'), { config: { mdns: { enabled: false } } });
    const pipe = lan.host('pipe');
    const dir = await tempDir(shared, 'modelferry-lan-models-');
    const push = async (name: string, version: string) => {
      const file = path.join(dir, `${name}-${version}.pte`);
      await writeFile(file, makeProgram(4096));
      await pushModel(pipe, gateway, file, name, version);
    };
    await push('kws', '1.0.0');
    // `latest`: a push of a new version is what changes the devices' answer.
    await assignModel(pipe, gateway, 'default', 'kws', 'latest');
    const health = async () => JSON.parse((await pipe.http(`${gateway.url}/healthz`)).body) as Json;
    return { lan, gateway, pipe, push, health };
  })();
  return setup;
}

/** Resolves once the gateway holds at least `count` long polls. */
async function holding(health: () => Promise<Json>, count: number): Promise<void> {
  const deadline = Date.now() + 30_000;
  while (Number((await health()).longPolls) < count) {
    if (Date.now() > deadline) throw new Error(`the gateway never held ${count} long polls`);
    await new Promise((resolve) => setTimeout(resolve, 100));
  }
}

function mac(host: number, index: number): string {
  return `02:00:00:${host.toString(16).padStart(2, '0')}:${(index >> 8).toString(16).padStart(2, '0')}:${(index & 0xff).toString(16).padStart(2, '0')}`;
}

async function etagOf(device: LanHost, gateway: LanGateway, address: string): Promise<string> {
  const answer = await device.http(`${gateway.url}/v1/devices/${address}/model`);
  if (answer.status !== 200) throw new Error(`${address}: ${answer.status} ${answer.body}`);
  return answer.headers.etag!;
}

lanTest.serial('a held long poll is answered 200 with the new model after a push that changes its answer', async (t) => {
  t.timeout(120_000); // the first test builds the LAN and starts the gateway
  const { lan, gateway, push, health } = await lanSetup();
  const device = lan.host('d1');
  const address = mac(0xa0, 1);
  const etag = await etagOf(device, gateway, address);
  const poll = device.http(`${gateway.url}/v1/devices/${address}/model?wait=60`, { headers: { 'If-None-Match': etag } });
  await holding(health, 1);
  const pushedAt = Date.now();
  await push('kws', '2.0.0');
  const answer = await poll;
  t.log(`answered ${Date.now() - pushedAt} ms after the push started`);
  t.is(answer.status, 200);
  t.is(JSON.parse(answer.body).model.version, '2.0.0');
  t.not(answer.headers.etag, etag);
});

lanTest.serial('a held long poll is answered 304 at its deadline, and a push for another device does not wake it', async (t) => {
  const { lan, gateway, pipe, push, health } = await lanSetup();
  const [quiet, other] = [mac(0xa0, 2), mac(0xa0, 3)];
  const [quietTag, otherTag] = await Promise.all([etagOf(lan.host('d1'), gateway, quiet), etagOf(lan.host('d2'), gateway, other)]);
  const order: string[] = [];
  const quietPoll = lan.host('d1').http(`${gateway.url}/v1/devices/${quiet}/model?wait=3`, { headers: { 'If-None-Match': quietTag } })
    .then((answer) => { order.push('quiet'); return answer; });
  const otherPoll = lan.host('d2').http(`${gateway.url}/v1/devices/${other}/model?wait=60`, { headers: { 'If-None-Match': otherTag } })
    .then((answer) => { order.push('other'); return answer; });
  await holding(health, 2);
  await push('vad', '1.0.0');
  await assignModel(pipe, gateway, other, 'vad', '1.0.0');
  const [quietAnswer, otherAnswer] = await Promise.all([quietPoll, otherPoll]);
  t.is(otherAnswer.status, 200);
  t.is(JSON.parse(otherAnswer.body).model.name, 'vad');
  t.is(quietAnswer.status, 304);
  t.is(quietAnswer.headers.etag, quietTag);
  t.deepEqual(order, ['other', 'quiet']);
});

lanTest.serial('1,000 long polls held by devices (one address each) on four hosts are all answered after one push', async (t) => {
  t.timeout(180_000);
  const { lan, gateway, push, health } = await lanSetup();
  const perHost = FLEET / DEVICE_HOSTS.length;
  const idle = await memoryOf(gateway.process.pid);
  const clients = DEVICE_HOSTS.map((name, h) => {
    const host = lan.host(name);
    const macs = Array.from({ length: perHost }, (_, i) => mac(h + 1, i));
    const spec = { url: gateway.url, macs, wait: 120, localAddresses: host.clientAddresses };
    return new Peer(host.spawn(process.execPath, [LONG_POLL_TOOL, JSON.stringify(spec)]));
  });
  await Promise.all(clients.map((client) => client.waitFor((event) => event.event === 'holding', 60_000)));
  await holding(health, FLEET);
  const pushStarted = Date.now();
  await push('kws', '3.0.0');
  const pushAcknowledged = Date.now();
  const results = await Promise.all(clients.map((client) => client.waitFor((event) => event.event === 'done', 60_000)));
  const rss = await memoryOf(gateway.process.pid);
  const last = Math.max(...results.map((result) => Number(result.last)));
  t.log(`push to last of ${FLEET} answers: ${last - pushStarted} ms from the push's start, ${last - pushAcknowledged} ms from its acknowledgement`);
  t.log(`gateway memory then: VmRSS ${rss.VmRSS}, VmHWM ${rss.VmHWM} (VmRSS ${idle.VmRSS} before the long polls)`);
  for (const result of results) {
    t.deepEqual(result.statuses, { 200: perHost });
    t.deepEqual(result.versions, { '3.0.0': perHost });
  }
});

async function memoryOf(pid: number): Promise<Record<string, string>> {
  const status = await readFile(`/proc/${pid}/status`, 'utf8');
  return Object.fromEntries(status.split('\n').filter((line) => /^Vm(RSS|HWM):/.test(line)).map((line) => {
    const [key, value] = line.split(':');
    return [key!, value!.trim()];
  }));
}
