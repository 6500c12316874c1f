import { writeFile } from 'node:fs/promises';
import path from 'node:path';
import { tempDir, type HasTeardown } from '../helpers/harness.ts';
import { fixture, makeProgram } from '../helpers/programs.ts';
import { testNeeding } from '../helpers/requirements.ts';
import { ALL_TOKEN } from '../helpers/tokens.ts';
import { assignModel, startLanGateway, type LanGateway } from '../lan/gateway.ts';
import { createLan, type LanHost } from '../lan/lan.ts';
import { buildFirmware, pipelineKey, sha256, SIM, type PipelineKey } from './firmware.ts';

const test = testNeeding('netns', 'firmware-host');

// A rogue gateway on the LAN (docs/security.md "TLS and pinning"): a real gateway, advertised
// by mDNS with a better prio than the site's, serving an older model signed by the site's own
// pipeline key (a recorded release). Every host here is a network namespace of test/lan.

const TLS_PORT = 8443;

/** PUT name@version signed by `key` (v2 over `seq`, or v1), from a pipeline host. */
async function pushSigned(from: LanHost, gateway: LanGateway, dir: string, key: PipelineKey, name: string, version: string, bytes: Buffer, seq?: string): Promise<void> {
  const file = path.join(dir, `${gateway.host.name}-${name}-${version}.pte`);
  await writeFile(file, bytes);
  const headers: Record<string, string> = {
    Authorization: `Bearer ${ALL_TOKEN}`, 'Content-Type': 'application/octet-stream', 'X-Signature': key.sign(name, version, bytes, seq), 'X-Signature-Key-Id': key.keyId,
  };
  if (seq !== undefined) headers['X-Signature-Seq'] = seq;
  const result = await from.http(`${gateway.url}/v1/models/${name}/${version}`, { method: 'PUT', bodyFile: file, headers });
  if (result.status !== 201 && result.status !== 200) throw new Error(`push ${name}@${version} to ${gateway.host.name}: ${result.status} ${result.body}`);
}

/** The site's gateway (prio 20) and the rogue (prio 5), both with mDNS, TLS beside plain HTTP, the site's key. */
async function siteAndRogue(t: HasTeardown, key: PipelineKey) {
  const lan = await createLan(t, ['gw', 'rogue', 'dev']);
  const trust = { keys: [{ publicKey: key.publicKey }] };
  const [site, rogue] = await Promise.all([
    startLanGateway(t, lan.host('gw'), { config: { mdns: { priority: 20 }, tls: { enabled: true, port: TLS_PORT }, trust } }),
    startLanGateway(t, lan.host('rogue'), { config: { mdns: { priority: 5 }, tls: { enabled: true, port: TLS_PORT }, trust } }),
  ]);
  return { dev: lan.host('dev'), site, rogue };
}

test('a device that pins its gateway ignores a rogue gateway with a better prio serving an older model signed by the trusted key', async (t) => {
  t.timeout(180_000);
  await buildFirmware();
  const key = pipelineKey();
  const { dev, site, rogue } = await siteAndRogue(t, key);
  const dir = await tempDir(t, 'modelferry-fw-rogue-');
  const older = fixture('add.pte');
  const current = makeProgram(15_000);
  await pushSigned(dev, site, dir, key, 'add', '2', current);
  await assignModel(dev, site, 'default', 'add', '2');
  await pushSigned(dev, rogue, dir, key, 'add', '1', older);
  await assignModel(dev, rogue, 'default', 'add', '1');
  const pin = (JSON.parse((await dev.http(`${site.url}/healthz`)).body) as { tls: { fingerprint: string } }).tls.fingerprint;

  const mac = '02:00:00:00:3a:01';
  const sim = dev.spawn(SIM, [
    '--mac', mac, '--state-dir', path.join(dir, 'pinned'), '--public-key', key.publicKey, '--pin-gateway', pin,
    '--discovery-timeout', '3000', '--wait', '20',
  ]);
  const loaded = await sim.waitForLine((line) => line.includes('"loaded"'), 90_000);
  const transcript = () => `${sim.lines.join('\n')}\n${sim.stderr}`;
  t.true(loaded.includes(sha256(current)), transcript());
  // Both advertise TLS: the rogue comes first by its prio, fails the pin at the handshake, and
  // is dropped at once; nothing of it was ever loaded.
  t.true(sim.lines.some((line) => line.includes('"gateways"') && line.includes(`first=https://${rogue.host.address}:${TLS_PORT}`)), transcript());
  t.true(sim.lines.some((line) => line.includes('pin_mismatch') && line.includes(`gateway=https://${rogue.host.address}:${TLS_PORT}`)), transcript());
  t.false(sim.lines.some((line) => line.includes(sha256(older))), transcript());
  const seenByRogue = await dev.http(`${rogue.url}/v1/devices/${mac}`, { headers: { Authorization: `Bearer ${ALL_TOKEN}` } });
  t.is(seenByRogue.status, 404, seenByRogue.body);
  const seenBySite = JSON.parse((await dev.http(`${site.url}/v1/devices/${mac}`, { headers: { Authorization: `Bearer ${ALL_TOKEN}` } })).body) as { state: string; running: { sha256: string } };
  t.like(seenBySite, { state: 'installed', running: { sha256: sha256(current) } });
  await sim.kill();
});

test('a device that does not pin its gateway refuses the older release a rogue with a better prio replays, and still gets the site\'s next one', async (t) => {
  t.timeout(180_000);
  await buildFirmware();
  const key = pipelineKey();
  const lan = await createLan(t, ['gw', 'rogue', 'dev']);
  const dev = lan.host('dev');
  const trust = { keys: [{ publicKey: key.publicKey }] };
  const site = await startLanGateway(t, lan.host('gw'), { config: { mdns: { priority: 20 }, trust } });
  const dir = await tempDir(t, 'modelferry-fw-rogue-');
  const older = fixture('add.pte');
  const current = makeProgram(15_000);
  const next = makeProgram(16_000);
  await pushSigned(dev, site, dir, key, 'add', '2', current, '2');
  await assignModel(dev, site, 'default', 'add', '2');

  // The device confirms add 2 (sequence 2) from the site before the rogue appears.
  const mac = '02:00:00:00:3b:01';
  const state = path.join(dir, 'unpinned');
  const first = dev.spawn(SIM, ['--mac', mac, '--state-dir', state, '--public-key', key.publicKey, '--gateway', site.url, '--once']);
  t.is(await first.exited, 0, first.lines.join('\n'));

  // The rogue replays add 1, signed by the site's key with sequence 1.
  const rogue = await startLanGateway(t, lan.host('rogue'), { config: { mdns: { priority: 5 }, trust } });
  await pushSigned(dev, rogue, dir, key, 'add', '1', older, '1');
  await assignModel(dev, rogue, 'default', 'add', '1');
  const sim = dev.spawn(SIM, ['--mac', mac, '--state-dir', state, '--public-key', key.publicKey, '--discovery-timeout', '3000', '--wait', '10']);
  const transcript = () => `${sim.lines.join('\n')}\n${sim.stderr}`;
  const refused = await sim.waitForLine((line) => line.includes('"failed"') && line.includes('rollback_refused'), 90_000);
  t.regex(refused, /rollback_refused: add 1 \(signed sequence 1, below 2 that this device confirmed\)/);
  t.true(sim.lines.some((line) => line.includes('"gateways"') && line.includes(`first=${rogue.url}`)), transcript());

  // The rogue answers 304 to its long polls from now on; the site's next release arrives anyway.
  await pushSigned(dev, site, dir, key, 'add', '3', next, '3');
  await assignModel(dev, site, 'default', 'add', '3');
  await sim.waitForLine((line) => line.includes('"confirmed"') && line.includes(sha256(next)), 90_000);
  t.false(sim.lines.some((line) => line.includes('"loaded"') && line.includes(sha256(older))), transcript());
  const seenBySite = JSON.parse((await dev.http(`${site.url}/v1/devices/${mac}`, { headers: { Authorization: `Bearer ${ALL_TOKEN}` } })).body) as { state: string; running: { sha256: string } };
  t.like(seenBySite, { state: 'installed', running: { sha256: sha256(next) } });
  const seenByRogue = JSON.parse((await dev.http(`${rogue.url}/v1/devices/${mac}`, { headers: { Authorization: `Bearer ${ALL_TOKEN}` } })).body) as { report: { error?: string } };
  t.regex(seenByRogue.report.error ?? '', /rollback_refused/);
  await sim.kill();
});
