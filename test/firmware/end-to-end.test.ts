import path from 'node:path';
import { testNeeding } from '../helpers/requirements.ts';
import { startDaemon } from '../helpers/daemon-process.ts';
import { tempDir } from '../helpers/harness.ts';
import { fixture, makeProgram } from '../helpers/programs.ts';
import { ALL_TOKEN } from '../helpers/tokens.ts';
import { buildFirmware, devices, pipelineKey, pushSigned, startSim, untilInventory, type InventoryDevice } from './firmware.ts';

const test = testNeeding('firmware-host');

// The real gateway (a `modelferry serve` child, loopback, mDNS off) and several simulated
// devices built from the firmware sources, each with its own MAC, state folder and
// assignment. Models are signed by a pipeline key both the gateway and the devices trust.

const OPERATORS = 'aten::add.out,aten::mul.out';

function installedOn(list: InventoryDevice[], mac: string, sha: string): boolean {
  const device = list.find((d) => d.mac === mac);
  return device?.state === 'installed' && device.running?.sha256 === sha;
}

test('devices report what they can run, install their own models, follow a push by long poll, and resume after a power cut or a kill mid-download', async (t) => {
  t.timeout(150_000);
  await buildFirmware();
  const key = pipelineKey();
  const daemon = await startDaemon(t, { config: { trust: { keys: [{ publicKey: key.publicKey }], requireSignatures: true } } });
  const dir = await tempDir(t, 'modelferry-fw-e2e-');
  const assign = async (mac: string, model: string, version = 'latest') => {
    const response = await daemon.fetch(`/v1/assignments/${mac}`, {
      method: 'PUT', token: ALL_TOKEN, headers: { 'Content-Type': 'application/json' }, body: JSON.stringify({ model, version }),
    });
    t.true(response.status < 300, await response.text());
  };
  const sim = (mac: string, extra: string[] = []) => startSim(t, [
    '--mac', mac, '--state-dir', path.join(dir, mac.replaceAll(':', '')), '--gateway', daemon.url,
    '--public-key', key.publicKey, '--wait', '20', '--operators', OPERATORS, '--arena-bytes', '65536', ...extra,
  ]);

  // Three devices, three models: the two real programs and a bigger generated one.
  const v1 = { add: fixture('add.pte'), mul: fixture('mul.pte'), big: makeProgram(600_000) };
  const macs = { add: '02:00:00:00:fe:01', mul: '02:00:00:00:fe:02', big: '02:00:00:00:fe:03' } as const;
  const names = ['add', 'mul', 'big'] as const;
  const sha1: Record<string, string> = {};
  for (const name of names) {
    sha1[name] = await pushSigned(daemon, key, name, '1', v1[name]);
    await assign(macs[name], name);
  }
  const sims = names.map((name) => sim(macs[name]));
  await untilInventory(daemon, (list) => names.every((n) => installedOn(list, macs[n], sha1[n]!)), 'every device installed on v1');
  for (const [i, name] of names.entries()) {
    const loaded = await sims[i]!.waitFor((e) => e.event === 'loaded' && e.detail!.includes(sha1[name]!), `${name} loaded`);
    t.regex(loaded.detail!, /head=ET12/);
  }
  // What each firmware can run reached the inventory with its boot report.
  const seen = await devices(daemon);
  for (const name of names) {
    t.like(seen.find((d) => d.mac === macs[name]), {
      capabilities: { operators: OPERATORS.split(','), delegates: [], arenaBytes: 65536, slotBytes: 3_076_096, runtime: 'executorch' },
    });
  }

  // A push of new versions reaches every device while it long-polls (the poll interval is
  // 300 s: only a held poll answered on change gets them there within this test).
  const sha2: Record<string, string> = {};
  const v2 = { add: makeProgram(5_000), mul: makeProgram(9_000), big: makeProgram(700_000) };
  for (const name of names) sha2[name] = await pushSigned(daemon, key, name, '2', v2[name]);
  const after = await untilInventory(daemon, (list) => names.every((n) => installedOn(list, macs[n], sha2[n]!)), 'every device installed on v2');
  t.is(after.filter((d) => Object.values(macs).includes(d.mac as never)).length, 3);
  for (const s of sims) t.false(s.events.some((e) => e.event === 'failed'), s.transcript());

  // A fourth device loses power 300,000 bytes into the 700 kB model, then boots again.
  const mac4 = '02:00:00:00:fe:04';
  await assign(mac4, 'big');
  const cut = sim(mac4, ['--once', '--power-cut-after-bytes', '300000']);
  const cutExit = await cut.exited;
  t.is(cutExit.code, 137, cut.transcript());
  t.true(cut.events.some((e) => e.event === 'power_cut'));
  t.false(cut.events.some((e) => e.event === 'loaded'));
  const rebooted = sim(mac4, ['--once']);
  const rebootExit = await rebooted.exited;
  t.is(rebootExit.code, 0, rebooted.transcript());
  const resume = rebooted.events.find((e) => e.event === 'resume');
  t.truthy(resume, rebooted.transcript());
  t.regex(resume!.detail!, /offset=262144 of 700000/); // the last 64 KiB progress step before the cut
  await untilInventory(daemon, (list) => installedOn(list, mac4, sha2.big!), 'the rebooted device installed');

  // A fifth is killed (SIGKILL) while downloading slowly, once some progress is saved.
  const mac6 = '02:00:00:00:fe:06';
  await assign(mac6, 'big');
  const slow = sim(mac6, ['--once', '--max-download-rate', '150000']);
  await slow.waitFor((e) => e.event === 'progress', 'saved download progress');
  await slow.kill();
  t.false(slow.events.some((e) => e.event === 'loaded'));
  const restarted = sim(mac6, ['--once']);
  t.is((await restarted.exited).code, 0, restarted.transcript());
  t.truthy(restarted.events.find((e) => e.event === 'resume'), restarted.transcript());
  await untilInventory(daemon, (list) => installedOn(list, mac6, sha2.big!), 'the killed device installed after its restart');

  // A device whose firmware lacks the model's operator is not offered it: it keeps running
  // nothing, says so, and the inventory names what is missing.
  const mac7 = '02:00:00:00:fe:07';
  await assign(mac7, 'mul', '1'); // the real mul.pte: aten::mul.out
  const lacking = startSim(t, ['--mac', mac7, '--state-dir', path.join(dir, 'fe07'), '--gateway', daemon.url,
    '--public-key', key.publicKey, '--operators', 'aten::add.out', '--arena-bytes', '65536', '--once']);
  t.is((await lacking.exited).code, 1, lacking.transcript());
  t.false(lacking.events.some((e) => e.event === 'download'), lacking.transcript());
  const held = (await devices(daemon)).find((d) => d.mac === mac7) as InventoryDevice & { compatibility: { status: string; reasons: string[] } | null };
  t.is(held.state, 'idle');
  t.is(held.compatibility?.status, 'incompatible', JSON.stringify(held));
  t.regex(held.compatibility!.reasons.join(' '), /aten::mul\.out/);

  // A device that trusts another key refuses the gateway's model and says why.
  const stranger = pipelineKey();
  const mac5 = '02:00:00:00:fe:05';
  await assign(mac5, 'add');
  const refusing = startSim(t, ['--mac', mac5, '--state-dir', path.join(dir, 'fe05'), '--gateway', daemon.url, '--public-key', stranger.publicKey, '--once']);
  t.is((await refusing.exited).code, 1, refusing.transcript());
  t.false(refusing.events.some((e) => e.event === 'loaded'));
  const refused = await untilInventory(daemon, (list) => list.some((d) => d.mac === mac5 && d.state === 'failed'), 'the refusing device failed');
  t.regex(String(refused.find((d) => d.mac === mac5)!.report!.error), /^unknown_key/);
});
