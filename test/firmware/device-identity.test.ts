import { writeFile } from 'node:fs/promises';
import path from 'node:path';
import type { ExecutionContext } from 'ava';
import { runCli } from '../helpers/daemon-process.ts';
import { deviceKey, proofOf } from '../helpers/device-keys.ts';
import { tempDir } from '../helpers/harness.ts';
import { ADD_SHA256, fixturePath, makeProgram } from '../helpers/programs.ts';
import { testNeeding } from '../helpers/requirements.ts';
import { ALL_TOKEN } from '../helpers/tokens.ts';
import { assignModel, pushModel, startLanGateway, type LanGateway } from '../lan/gateway.ts';
import { createLan, type LanHost } from '../lan/lan.ts';
import { buildFirmware, sha256, SIM } from './firmware.ts';

const test = testNeeding('netns', 'firmware-host');

// Device identity end to end (docs/security.md "Device identity"): the simulator, built from
// the firmware's sources, proves its own Ed25519 key to a real gateway on the private LAN of
// test/lan, under `accepted` (a new device waits for an operator, a preauthorized one does
// not) and `pinned`, where another host sending reports for admitted devices changes nothing.

interface SimRun {
  code: number | null;
  lines: string[];
  text: string;
}

/** One cycle of the simulator on `host` (--once), to its exit. */
async function once(host: LanHost, gw: LanGateway, mac: string, dir: string, extra: string[] = []): Promise<SimRun> {
  const sim = host.spawn(SIM, ['--mac', mac, '--state-dir', path.join(dir, mac.replaceAll(':', '')), '--gateway', gw.url, '--once', ...extra]);
  const code = await sim.exited;
  return { code, lines: sim.lines, text: `${sim.lines.join('\n')}\n${sim.stderr}` };
}

/** `mac,publicKey` as the simulator prints it: a line of the CSV preauthorize reads. */
async function keyLine(host: LanHost, mac: string, dir: string): Promise<string> {
  const result = await host.run(SIM, ['--mac', mac, '--state-dir', path.join(dir, mac.replaceAll(':', '')), '--print-key']);
  if (result.code !== 0) throw new Error(`--print-key: ${result.stderr}`);
  return result.stdout.trim();
}

async function cli(t: ExecutionContext, host: LanHost, gw: LanGateway, ...args: string[]): Promise<string> {
  const result = await runCli([...args, '--gateway', gw.url, '--token', ALL_TOKEN], { prefix: host.prefix });
  t.is(result.code, 0, `modelferry ${args.join(' ')}: ${result.stderr}`);
  return result.stdout;
}

async function inventoryOf(host: LanHost, gw: LanGateway, mac: string): Promise<{ status: number; body: Record<string, unknown> }> {
  const result = await host.http(`${gw.url}/v1/devices/${mac}`, { headers: { Authorization: `Bearer ${ALL_TOKEN}` } });
  return { status: result.status, body: JSON.parse(result.body) as Record<string, unknown> };
}

test('under accepted a new device waits as pending, sending nothing but its proof, and installs once an operator accepts it; a preauthorized device installs at once', async (t) => {
  t.timeout(180_000);
  await buildFirmware();
  const lan = await createLan(t, ['gw', 'dev']);
  const dev = lan.host('dev');
  const gw = await startLanGateway(t, lan.host('gw'), { config: { mdns: { enabled: false }, devices: { admission: 'accepted' } } });
  const dir = await tempDir(t, 'modelferry-fw-identity-');
  await pushModel(dev, gw, fixturePath('add.pte'), 'add', '1');
  await assignModel(dev, gw, 'default', 'add', '1');

  // A new device: its first request (the boot report) is refused, it proves its key, and the
  // gateway keeps it pending. Nothing it would report reaches the inventory.
  const newcomer = '02:00:00:00:2a:01';
  const first = await once(dev, gw, newcomer, dir);
  t.is(first.code, 1, first.text);
  t.true(first.lines.some((line) => line.includes('"auth"') && line.includes('result=device_pending') && line.includes('wait_ms=60000')), first.text);
  t.false(first.lines.some((line) => line.includes('"report"') || line.includes('"loaded"')), first.text);
  const pending = JSON.parse(await cli(t, dev, gw, 'devices', 'pending')) as { devices: Array<{ mac: string; publicKey: string; state: string }> };
  const offered = pending.devices.find((d) => d.mac === newcomer);
  t.like(offered, { state: 'pending', publicKey: (await keyLine(dev, newcomer, dir)).split(',')[1] });
  const unseen = await inventoryOf(dev, gw, newcomer);
  t.true(unseen.status === 404 || unseen.body.state === null, JSON.stringify(unseen));

  await cli(t, dev, gw, 'devices', 'accept', newcomer);
  const accepted = await once(dev, gw, newcomer, dir);
  t.is(accepted.code, 0, accepted.text);
  t.true(accepted.lines.some((line) => line.includes('"auth"') && line.includes('result=ok')), accepted.text);
  t.like((await inventoryOf(dev, gw, newcomer)).body, { admission: 'accepted', state: 'installed', running: { sha256: ADD_SHA256 } });

  // A device whose key the manufacturing line exported: preauthorized, it installs at once,
  // proving its key before its first request.
  const made = '02:00:00:00:2a:02';
  const csv = path.join(dir, 'keys.csv');
  await writeFile(csv, `mac,publicKey\n${await keyLine(dev, made, dir)}\n`);
  await cli(t, dev, gw, 'devices', 'preauthorize', csv);
  const preauthorized = await once(dev, gw, made, dir, ['--always-authenticate']);
  t.is(preauthorized.code, 0, preauthorized.text);
  t.false(preauthorized.text.includes('device_pending'), preauthorized.text);
  t.like((await inventoryOf(dev, gw, made)).body, { admission: 'accepted', state: 'installed', running: { sha256: ADD_SHA256 } });
});

test('under pinned, reports spoofed by another host for admitted devices are refused and do not halt their rollout; that host cannot prove their MACs with its own key', async (t) => {
  t.timeout(180_000);
  await buildFirmware();
  const lan = await createLan(t, ['gw', 'dev', 'intruder']);
  const dev = lan.host('dev');
  const intruder = lan.host('intruder');
  const gw = await startLanGateway(t, lan.host('gw'), { config: { mdns: { enabled: false }, devices: { admission: 'pinned' } } });
  const dir = await tempDir(t, 'modelferry-fw-identity-');
  const v2 = makeProgram(12_000);
  const v2File = path.join(dir, 'add2.pte');
  await writeFile(v2File, v2);
  await pushModel(dev, gw, fixturePath('add.pte'), 'add', '1');
  await pushModel(dev, gw, v2File, 'add', '2');
  const rollout = { model: 'add', version: '2', rollout: { percent: 100, previous: { model: 'add', version: '1' }, haltOnFailures: 1 } };
  const assigned = await dev.http(`${gw.url}/v1/assignments/default`, {
    method: 'PUT', body: JSON.stringify(rollout), headers: { Authorization: `Bearer ${ALL_TOKEN}`, 'Content-Type': 'application/json' },
  });
  t.true(assigned.status < 300, assigned.body);

  const macs = ['02:00:00:00:2b:01', '02:00:00:00:2b:02'];
  for (const mac of macs) {
    const run = await once(dev, gw, mac, dir);
    t.is(run.code, 0, run.text);
    t.like((await inventoryOf(dev, gw, mac)).body, { admission: 'pinned', state: 'installed', running: { sha256: sha256(v2) } });
  }

  const failed = () => JSON.stringify({ state: 'failed', sha256: sha256(v2), model: 'add', version: '2', error: 'model_rejected: add 2 (spoofed)' });
  for (const mac of macs) {
    for (const headers of [{}, { Authorization: `Bearer ${ALL_TOKEN}` }, { Authorization: 'Bearer guessed-device-token' }] as Array<Record<string, string>>) {
      const spoofed = await intruder.http(`${gw.url}/v1/devices/${mac}/report`, { method: 'POST', body: failed(), headers: { ...headers, 'Content-Type': 'application/json' } });
      t.is(spoofed.status, 401, spoofed.body);
    }
    // Its own key over a fresh challenge: the MAC is pinned to the device's key.
    const challenge = JSON.parse((await intruder.http(`${gw.url}/v1/devices/${mac}/challenge`, { method: 'POST' })).body) as { challenge: string };
    const proof = proofOf(deviceKey(mac), challenge.challenge);
    const stolen = await intruder.http(`${gw.url}/v1/devices/${mac}/token`, { method: 'POST', body: JSON.stringify(proof), headers: { 'Content-Type': 'application/json' } });
    t.is(stolen.status, 401, stolen.body);
    t.is((JSON.parse(stolen.body) as { error: string }).error, 'device_auth_failed');
  }

  const list = JSON.parse((await dev.http(`${gw.url}/v1/assignments`, { headers: { Authorization: `Bearer ${ALL_TOKEN}` } })).body) as { assignments: Array<{ selector: string; rollout: { halted?: unknown } }> };
  t.falsy(list.assignments.find((a) => a.selector === 'default')!.rollout.halted);
  for (const mac of macs) {
    t.like((await inventoryOf(dev, gw, mac)).body, { state: 'installed', running: { sha256: sha256(v2) } });
    const again = await once(dev, gw, mac, dir);
    t.is(again.code, 0, again.text);
  }
});
