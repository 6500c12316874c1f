import { readdir, readFile, writeFile } from 'node:fs/promises';
import path from 'node:path';
import type { ExecutionContext } from 'ava';
import { startDaemon, type RunningDaemon } from '../helpers/daemon-process.ts';
import { tempDir, until } from '../helpers/harness.ts';
import { modelVersions } from '../helpers/model-versions.ts';
import { testNeeding } from '../helpers/requirements.ts';
import { ALL_TOKEN } from '../helpers/tokens.ts';
import { buildFirmware, pipelineKey, pushSigned, sha256, startSim, type PipelineKey, type Sim } from './firmware.ts';

const test = testNeeding('firmware-host');

// Deltas end to end (docs/design.md "Deltas"): the real gateway makes them, the simulator
// applies them with the firmware's core. A device downloads only the delta and runs the new
// model, checked by sha256 and signature; one with deltas off downloads the model; a power
// cut in the middle of an apply resumes the delta after the reboot; a delta that does not
// make the model (altered on the gateway's disk) is refused and the model downloaded in the
// same cycle.

const SIZE = 1 << 20;

/** bytes_received from the --stats line of a finished run. */
function bytesReceived(sim: Sim): number {
  const stats = sim.events.find((e) => e.event === 'stats');
  const match = /bytes_received=(\d+)/.exec(stats?.detail ?? '');
  if (!match) throw new Error(`no bytes_received in\n${sim.transcript()}`);
  return Number(match[1]);
}

interface Setup {
  daemon: RunningDaemon;
  key: PipelineKey;
  dir: string;
  before: Buffer;
  after: Buffer;
  run(mac: string, extra?: string[]): Promise<Sim>;
  assign(version: string): Promise<void>;
  /** Resolves once the gateway offers `mac` a delta (it made it). */
  deltaReady(mac: string): Promise<{ size: number; sha256: string; url: string }>;
}

async function setup(t: ExecutionContext, change: Parameters<typeof modelVersions>[1] = 'fine-tuned head'): Promise<Setup> {
  await buildFirmware();
  const key = pipelineKey();
  const daemon = await startDaemon(t, { config: { trust: { keys: [{ publicKey: key.publicKey }], requireSignatures: true } } });
  const dir = await tempDir(t, 'modelferry-fw-delta-');
  const { before, after } = modelVersions(SIZE, change, 'e2e');
  await pushSigned(daemon, key, 'kws', '1', before);
  await pushSigned(daemon, key, 'kws', '2', after);
  const assign = async (version: string) => {
    const response = await daemon.fetch('/v1/assignments/default', {
      method: 'PUT', token: ALL_TOKEN, headers: { 'Content-Type': 'application/json' }, body: JSON.stringify({ model: 'kws', version }),
    });
    t.true(response.status < 300, await response.text());
  };
  const run = async (mac: string, extra: string[] = []) => {
    const sim = startSim(t, ['--mac', mac, '--state-dir', path.join(dir, mac.replaceAll(':', '')), '--gateway', daemon.url,
      '--public-key', key.publicKey, '--once', '--stats', ...extra]);
    await sim.exited;
    return sim;
  };
  const deltaReady = (mac: string) => until(`a delta offered to ${mac}`, async () => {
    const answer = await (await daemon.fetch(`/v1/devices/${mac}/model`)).json() as { delta?: { size: number; sha256: string; url: string } };
    return answer.delta;
  }, 60_000);
  return { daemon, key, dir, before, after, run, assign, deltaReady };
}

test('a device that runs v1 installs v2 from the delta, downloading a few percent of it; with deltas off it downloads v2', async (t) => {
  t.timeout(240_000);
  const { after, run, assign, deltaReady } = await setup(t);
  const [withDeltas, without] = ['02:00:00:00:de:01', '02:00:00:00:de:02'];
  await assign('1');
  for (const mac of [withDeltas, without]) {
    const first = await run(mac, mac === without ? ['--no-deltas'] : []);
    t.is((await first.exited).code, 0, first.transcript());
  }
  await assign('2');
  const delta = await deltaReady(withDeltas);
  const updated = await run(withDeltas);
  t.is((await updated.exited).code, 0, updated.transcript());
  t.truthy(updated.events.find((e) => e.event === 'delta_applied'), updated.transcript());
  t.truthy(updated.events.find((e) => e.event === 'loaded' && e.detail!.includes(sha256(after))), updated.transcript());
  const bytes = bytesReceived(updated);
  t.log(`with the delta: ${bytes} bytes received for a ${after.length}-byte model (the delta: ${delta.size})`);
  t.true(bytes >= delta.size && bytes < 0.05 * after.length, `${bytes} bytes`);

  const full = await run(without, ['--no-deltas']);
  t.is((await full.exited).code, 0, full.transcript());
  t.false(full.events.some((e) => e.event.startsWith('delta')), full.transcript());
  t.true(bytesReceived(full) >= after.length);
});

test('a power cut in the middle of an apply: after the reboot the old model runs, and the delta resumes where it stopped', async (t) => {
  t.timeout(240_000);
  // Two regions (at 30 % and 70 %): a cut at 67 % leaves the first region's bytes behind.
  const { after, run, assign, deltaReady } = await setup(t, 'two regions');
  const mac = '02:00:00:00:de:03';
  await assign('1');
  t.is((await (await run(mac)).exited).code, 0);
  await assign('2');
  const delta = await deltaReady(mac);
  const cut = await run(mac, ['--power-cut-after-bytes', '700000']);
  t.is((await cut.exited).code, 137, cut.transcript());
  t.truthy(cut.events.find((e) => e.event === 'delta'), cut.transcript());
  const rebooted = await run(mac);
  t.is((await rebooted.exited).code, 0, rebooted.transcript());
  const slot = rebooted.events.find((e) => e.event === 'active');
  t.notRegex(slot!.detail!, new RegExp(sha256(after)), 'the old model is what boots');
  const resumed = rebooted.events.find((e) => e.event === 'delta_resume');
  t.truthy(resumed, rebooted.transcript());
  t.regex(resumed!.detail!, /offset=655360 of /, 'from the last 64 KiB step before the cut');
  t.truthy(rebooted.events.find((e) => e.event === 'loaded' && e.detail!.includes(sha256(after))), rebooted.transcript());
  t.true(bytesReceived(rebooted) < 0.75 * delta.size, `the rest of the delta, not all of it again (${bytesReceived(rebooted)} of ${delta.size})`);
});

test('a delta that does not make the model is refused, reported, and the model downloaded in the same cycle', async (t) => {
  t.timeout(240_000);
  const { daemon, after, run, assign, deltaReady } = await setup(t);
  const mac = '02:00:00:00:de:04';
  await assign('1');
  t.is((await (await run(mac)).exited).code, 0);
  await assign('2');
  await deltaReady(mac);
  // A byte of the delta file altered on the gateway's disk (its name, and so its ETag, kept).
  const folder = path.join(daemon.dir, 'cache', 'deltas');
  const [name] = (await readdir(folder)).filter((entry) => entry.includes('-'));
  const file = path.join(folder, name!);
  const bytes = await readFile(file);
  bytes[bytes.length - 100]! ^= 0x40;
  await writeFile(file, bytes);
  const updated = await run(mac);
  t.is((await updated.exited).code, 0, updated.transcript());
  const refused = updated.events.find((e) => e.event === 'delta_refused');
  t.truthy(refused, updated.transcript());
  t.truthy(updated.events.find((e) => e.event === 'loaded' && e.detail!.includes(sha256(after))), updated.transcript());
  t.true(bytesReceived(updated) > after.length, 'the full artifact was downloaded too');
  t.regex(updated.events.filter((e) => e.event === 'report').map((e) => e.detail).join('\n'), /bad_delta: /);
});
