import { writeFile } from 'node:fs/promises';
import path from 'node:path';
import { tempDir } from '../helpers/harness.ts';
import { fixturePath, ADD_SHA256 } from '../helpers/programs.ts';
import { assignModel, GATEWAY_PORT, pushModel, startLanGateway } from '../lan/gateway.ts';
import { createLan, lanTest } from '../lan/lan.ts';
import { ALL_TOKEN } from '../helpers/tokens.ts';
import { buildFirmware, SIM } from './firmware.ts';

// The simulator finding its gateway by mDNS on the private LAN of test/lan (network
// namespaces and a bridge; nothing reaches the machine's interfaces).

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

lanTest('a device finds the gateway by mDNS (lowest prio of two adverts) and installs its model', async (t) => {
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
