import { writeFile } from 'node:fs/promises';
import path from 'node:path';
import { tempDir, until } from '../helpers/harness.ts';
import { modelVersions } from '../helpers/model-versions.ts';
import { testNeeding } from '../helpers/requirements.ts';
import { ALL_TOKEN } from '../helpers/tokens.ts';
import { assignModel, pushModel, startLanGateway } from '../lan/gateway.ts';
import { createLan } from '../lan/lan.ts';
import { buildFirmware, sha256, SIM } from './firmware.ts';

const test = testNeeding('netns', 'firmware-host');

// A fleet behind a slow link (the short form of bench/deltas.ts's convergence row): the
// devices' host on the LAN of test/lan gets what the gateway sends through a 16 Mbit/s token
// bucket; after a fine-tuned head is assigned, every device installs it from the delta, and
// only deltas cross the link. Times are logged against the link's physical limits, never
// asserted (they are bench/ figures).

const DEVICES = 5;
const SIZE = 512 * 1024;
const LINK_BITS_PER_SECOND = 16_000_000;

test('devices behind a 16 Mbit/s link converge on a new model by its delta, and only deltas cross the link', async (t) => {
  t.timeout(300_000);
  await buildFirmware();
  const lan = await createLan(t, ['gw', 'dev', 'pipe']);
  await lan.host('dev').shapeDownlink('16mbit', '32kbit');
  // The devices share their host's address: each long poll must be held (4 per address by default).
  const gw = await startLanGateway(t, lan.host('gw'), { config: { mdns: { enabled: false }, devices: { maxLongPollsPerAddress: 16 } } });
  const pipe = lan.host('pipe');
  const dir = await tempDir(t, 'modelferry-fw-delta-fleet-');
  const { before, after } = modelVersions(SIZE, 'fine-tuned head', 'lan');
  for (const [version, bytes] of [['1', before], ['2', after]] as const) {
    const file = path.join(dir, `kws-${version}.pte`);
    await writeFile(file, bytes);
    await pushModel(pipe, gw, file, 'kws', version);
  }
  await assignModel(pipe, gw, 'default', 'kws', '1');
  const macs = Array.from({ length: DEVICES }, (_, i) => `02:00:00:00:df:0${i}`);
  const sims = macs.map((mac) => lan.host('dev').spawn(SIM, ['--mac', mac, '--state-dir', path.join(dir, mac.replaceAll(':', '')), '--gateway', gw.url, '--wait', '60', '--slot-bytes', String(2 * SIZE)]));
  const admin = { Authorization: `Bearer ${ALL_TOKEN}` };
  const installed = (sha: string) => until(`every device on ${sha.slice(0, 8)}`, async () => {
    const { devices } = JSON.parse((await pipe.http(`${gw.url}/v1/devices`, { headers: admin })).body) as { devices: Array<{ mac: string; state: string; running: { sha256: string } | null }> };
    return macs.every((mac) => devices.some((d) => d.mac === mac && d.state === 'installed' && d.running?.sha256 === sha)) || undefined;
  }, 240_000);
  await installed(sha256(before));
  const metric = async (name: string) => Number(new RegExp(`^${name} (\\S+)$`, 'm').exec((await pipe.http(`${gw.url}/metrics`)).body)?.[1] ?? 0);
  const [artifactBytes, deltaBytes] = [await metric('modelferry_artifact_sent_bytes_total'), await metric('modelferry_delta_sent_bytes_total')];

  const started = Date.now();
  await assignModel(pipe, gw, 'default', 'kws', '2');
  await installed(sha256(after));
  const seconds = (Date.now() - started) / 1000;
  for (const [i, sim] of sims.entries()) t.true(sim.lines.some((line) => line.includes('"delta_applied"')), `${macs[i]}:\n${sim.lines.join('\n')}`);
  t.is(await metric('modelferry_artifact_sent_bytes_total'), artifactBytes, 'no full artifact crossed the link');
  const sent = (await metric('modelferry_delta_sent_bytes_total')) - deltaBytes;
  t.true(sent > 0 && sent < 0.05 * DEVICES * after.length, `${sent} delta bytes for ${DEVICES} devices`);
  const limit = (bytes: number) => (bytes * 8) / LINK_BITS_PER_SECOND;
  t.log(`${DEVICES} devices converged in ${seconds.toFixed(2)} s; physical limit of the deltas ${limit(sent).toFixed(2)} s, of full downloads ${limit(DEVICES * after.length).toFixed(2)} s`);
});
