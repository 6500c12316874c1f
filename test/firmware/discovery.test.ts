import { writeFile } from 'node:fs/promises';
import path from 'node:path';
import { tempDir } from '../helpers/harness.ts';
import { ADD_SHA256, fixture, fixturePath, makeProgram } from '../helpers/programs.ts';
import { assignModel, GATEWAY_PORT, pushModel, startLanGateway } from '../lan/gateway.ts';
import { testNeeding } from '../helpers/requirements.ts';
import { createLan } from '../lan/lan.ts';
import { ALL_TOKEN } from '../helpers/tokens.ts';
import { buildFirmware, sha256, SIM } from './firmware.ts';

const test = testNeeding('netns', 'firmware-host', 'python3-zeroconf');

// The simulator finding its gateway by mDNS on the private LAN of test/lan (network
// namespaces and a bridge; nothing reaches the machine's interfaces): by the gateway's own
// advertisement (daemon/discovery), and by an independent responder that offers two.

// An independent DNS-SD responder (Debian's python3-zeroconf) advertising two gateways: the
// real one with prio 5, and one with prio 50 whose port answers nothing. The device must
// pick the lower prio.
const RESPONDER = `
import socket, sys, time
from zeroconf import Zeroconf, ServiceInfo
address, port = sys.argv[1], int(sys.argv[2])
zc = Zeroconf(interfaces=[address])
def advertise(name, port, prio):
    info = ServiceInfo("_modelferry._tcp.local.", name + "._modelferry._tcp.local.",
                       addresses=[socket.inet_aton(address)], port=port, server="gw-host.local.",
                       properties={"txtvers": "1", "api": "/v1", "id": name, "prio": str(prio), "rev": "1", "tls": "0"})
    zc.register_service(info)
advertise("real-gateway", port, 5)
advertise("dead-gateway", 9, 50)
print("advertising", flush=True)
time.sleep(120)
`;

test('a device finds the gateway by mDNS (lowest prio of two adverts) and installs its model', async (t) => {
  t.timeout(150_000);
  await buildFirmware();
  const lan = await createLan(t, ['gw', 'dev']);
  const gw = await startLanGateway(t, lan.host('gw'), { config: { mdns: { enabled: false } } });
  const dir = await tempDir(t, 'modelferry-fw-lan-');
  const script = path.join(dir, 'responder.py');
  await writeFile(script, RESPONDER);
  const responder = lan.host('gw').spawn('/usr/bin/python3', [script, lan.host('gw').address, String(GATEWAY_PORT)]);
  await responder.waitForLine((line) => line === 'advertising', 30_000);

  await pushModel(lan.host('dev'), gw, fixturePath('add.pte'), 'add', '1');
  await assignModel(lan.host('dev'), gw, 'default', 'add', '1');
  const mac = '02:00:00:00:1a:01';
  const sim = lan.host('dev').spawn(SIM, ['--mac', mac, '--state-dir', path.join(dir, 'dev'), '--once', '--discovery-timeout', '3000']);
  const code = await sim.exited;
  const transcript = `${sim.lines.join('\n')}\n${sim.stderr}`;
  t.is(code, 0, transcript);
  t.true(sim.lines.some((line) => line.includes('"gateways"') && line.includes(`first=${gw.url}`)), transcript);
  t.true(sim.lines.some((line) => line.includes('"loaded"') && line.includes(ADD_SHA256)), transcript);

  const inventory = await lan.host('dev').http(`${gw.url}/v1/devices/${mac}`, { headers: { Authorization: `Bearer ${ALL_TOKEN}` } });
  const device = JSON.parse(inventory.body) as { state: string; running: { sha256: string } };
  t.is(device.state, 'installed', inventory.body);
  t.is(device.running.sha256, ADD_SHA256);
});

test('devices on two LAN hosts find the gateway by its own mDNS advert, install their models, and follow a push', async (t) => {
  t.timeout(150_000);
  await buildFirmware();
  const lan = await createLan(t, ['gw', 'dev1', 'dev2']);
  const gw = await startLanGateway(t, lan.host('gw'));
  const dir = await tempDir(t, 'modelferry-fw-lan-');
  const admin = lan.host('dev1');
  const file = async (name: string, bytes: Buffer) => {
    const target = path.join(dir, name);
    await writeFile(target, bytes);
    return target;
  };
  const devices = [
    { host: 'dev1', mac: '02:00:00:00:1b:01', model: 'add', v1: fixture('add.pte') },
    { host: 'dev2', mac: '02:00:00:00:1b:02', model: 'mul', v1: fixture('mul.pte') },
    { host: 'dev2', mac: '02:00:00:00:1b:03', model: 'add', v1: fixture('add.pte') },
  ];
  await pushModel(admin, gw, await file('add.pte', fixture('add.pte')), 'add', '1');
  await pushModel(admin, gw, await file('mul.pte', fixture('mul.pte')), 'mul', '1');
  for (const d of devices) await assignModel(admin, gw, d.mac, d.model, 'latest');
  const sims = devices.map((d) => lan.host(d.host).spawn(SIM, [
    '--mac', d.mac, '--state-dir', path.join(dir, d.mac.replaceAll(':', '')), '--wait', '20', '--discovery-timeout', '2000',
  ]));
  const inventory = async () => {
    const result = await admin.http(`${gw.url}/v1/devices`, { headers: { Authorization: `Bearer ${ALL_TOKEN}` } });
    return (JSON.parse(result.body) as { devices: Array<{ mac: string; state: string; running: { sha256: string } | null }> }).devices;
  };
  const until = async (ok: (list: Awaited<ReturnType<typeof inventory>>) => boolean, what: string) => {
    const deadline = Date.now() + 60_000;
    for (let list = await inventory(); ; list = await inventory()) {
      if (ok(list)) return;
      if (Date.now() > deadline) throw new Error(`never ${what}: ${JSON.stringify(list)}\n${sims.map((s) => s.lines.join('\n')).join('\n--\n')}`);
      await new Promise((resolve) => setTimeout(resolve, 300));
    }
  };
  const installed = (list: Awaited<ReturnType<typeof inventory>>, mac: string, sha: string) =>
    list.some((d) => d.mac === mac && d.state === 'installed' && d.running?.sha256 === sha);
  await until((list) => devices.every((d) => installed(list, d.mac, sha256(d.v1))), 'every device installed');
  for (const s of sims) t.true(s.lines.some((line) => line.includes('"gateways"') && line.includes(`first=${gw.url}`)), s.lines.join('\n'));

  const v2 = makeProgram(20_000);
  await pushModel(admin, gw, await file('add2.pte', v2), 'add', '2');
  await until((list) => devices.filter((d) => d.model === 'add').every((d) => installed(list, d.mac, sha256(v2))), 'the add devices on version 2');
});
