import path from 'node:path';
import { testNeeding } from '../helpers/requirements.ts';
import { startDaemon } from '../helpers/daemon-process.ts';
import { tempDir, until } from '../helpers/harness.ts';
import { fixture, makeProgram } from '../helpers/programs.ts';
import { ALL_TOKEN } from '../helpers/tokens.ts';
import { buildFirmware, devices, pipelineKey, pushSigned, startSim, type InventoryDevice } from './firmware.ts';

const test = testNeeding('firmware-host');

// A new model stays pending on the device until its application confirms it. The real
// gateway and the simulator, whose application part rejects a model (--reject-model) or
// crashes on it (--crash-model: exit 134 before confirming; starting it again on the same
// state folder is the reboot): the device goes back to the model it ran, reports `failed`
// with `rolledBackFrom`, and the gateway counts it toward a rollout's haltOnFailures.

type Device = InventoryDevice & { rolledBack: { sha256: string; model: string; version: string; reason: string } | null };

test('a model the application crashes on twice, or rejects, is rolled back, reported with rolledBackFrom, and halts its rollout', async (t) => {
  t.timeout(150_000);
  await buildFirmware();
  const key = pipelineKey();
  const daemon = await startDaemon(t, { config: { trust: { keys: [{ publicKey: key.publicKey }], requireSignatures: true } } });
  const dir = await tempDir(t, 'modelferry-fw-confirm-');
  const api = async (method: string, route: string, body: unknown) => {
    const response = await daemon.fetch(route, { method, token: ALL_TOKEN, headers: { 'Content-Type': 'application/json' }, body: JSON.stringify(body) });
    t.true(response.status < 300, `${method} ${route}: ${response.status} ${await response.text()}`);
  };
  const device = async (mac: string): Promise<Device> => (await devices(daemon)).find((d) => d.mac === mac) as Device;
  const once = async (mac: string, extra: string[] = []) => {
    const sim = startSim(t, ['--mac', mac, '--state-dir', path.join(dir, mac.replaceAll(':', '')), '--gateway', daemon.url,
      '--public-key', key.publicKey, '--once', ...extra]);
    return { sim, exit: await sim.exited };
  };

  const v1 = fixture('add.pte');
  const v2 = makeProgram(50_000);
  const v3 = makeProgram(60_000);
  const sha1 = await pushSigned(daemon, key, 'kws', '1', v1);
  const sha2 = await pushSigned(daemon, key, 'kws', '2', v2);
  const sha3 = await pushSigned(daemon, key, 'kws', '3', v3);

  // A device on kws 1, confirmed; then a rollout of kws 2 to it that halts at one failure.
  const crashing = '02:00:00:00:fc:01';
  await api('PUT', `/v1/assignments/${crashing}`, { model: 'kws', version: '1' });
  t.is((await once(crashing)).exit.code, 0);
  await api('PUT', `/v1/assignments/${crashing}`, {
    model: 'kws', version: '2', rollout: { percent: 100, previous: { model: 'kws', version: '1' }, haltOnFailures: 1 },
  });

  // kws 2 crashes the application right after its activation, and again at the next boot.
  for (const run of ['after the install', 'at the first boot']) {
    const { sim, exit } = await once(crashing, ['--crash-model', sha2]);
    t.is(exit.code, 134, `${run}\n${sim.transcript()}`);
    t.truthy(sim.events.find((e) => e.event === 'loaded' && e.detail!.includes(`sha256=${sha2}`) && e.detail!.includes('status=pending')), sim.transcript());
  }
  // At the second boot it is not started again: kws 1 is, and the device says why.
  const back = await once(crashing, ['--crash-model', sha2]);
  t.false(back.sim.events.some((e) => e.event === 'crash'), back.sim.transcript());
  t.regex(back.sim.events.find((e) => e.event === 'rolled_back')!.detail!, new RegExp(`from=${sha2} to=${sha1} why=not_confirmed`));
  t.truthy(back.sim.events.find((e) => e.event === 'loaded' && e.detail!.includes(`sha256=${sha1}`) && e.detail!.includes('status=confirmed')));

  // The gateway counted it: the rollout halted and a rollback is counted for kws. Its cohort
  // is offered kws 1 again, which the device runs: on its next cycle it is installed again.
  const assignments = await (await daemon.fetch('/v1/assignments', { token: ALL_TOKEN })).json() as { assignments: { selector: string; rollout: { halted: { by: string; reasons: Record<string, number> } | null } }[] };
  const halted = assignments.assignments.find((a) => a.selector === crashing)!.rollout.halted;
  t.like(halted, { by: 'failures' });
  t.regex(Object.keys(halted!.reasons).join(), /^not_confirmed: kws 2 \(not confirmed after 2 boots\); rolled back to kws 1; next try in \d+ s/);
  t.regex(await (await daemon.fetch('/metrics')).text(), /^modelferry_device_rollbacks_total\{model="kws"\} 1$/m);
  const settled = await once(crashing, ['--crash-model', sha2]);
  t.is(settled.exit.code, 0, settled.sim.transcript());
  t.like(await device(crashing), { state: 'installed', running: { sha256: sha1 }, rolledBack: null });

  // Another device rejects kws 3 outright: back on kws 1, failed, rolledBack in the inventory.
  const rejecting = '02:00:00:00:fc:02';
  await api('PUT', `/v1/assignments/${rejecting}`, { model: 'kws', version: '1' });
  t.is((await once(rejecting)).exit.code, 0);
  await api('PUT', `/v1/assignments/${rejecting}`, { model: 'kws', version: '3' });
  const rejected = await once(rejecting, ['--reject-model', sha3]);
  t.is(rejected.exit.code, 1, rejected.sim.transcript());
  const view = await device(rejecting);
  t.like(view, { state: 'failed', running: { sha256: sha1 }, rolledBack: { sha256: sha3, model: 'kws', version: '3' } });
  t.regex(view.rolledBack!.reason, /^model_rejected: kws 3 \(the application: --reject-model\); rolled back to kws 1; next try in \d+ s/);
  t.is(view.report!.rolledBackFrom, sha3);
  // Run again: kws 3 is not fetched again before its backoff, and the device still says so.
  const again = await once(rejecting, ['--reject-model', sha3]);
  t.is(again.exit.code, 1);
  t.false(again.sim.events.some((e) => e.event === 'download'), again.sim.transcript());
  t.truthy(again.sim.events.find((e) => e.event === 'waiting' && e.detail!.includes(sha3)), again.sim.transcript());
  t.like(await device(rejecting), { state: 'failed', rolledBack: { sha256: sha3 } });

  // A device's first model has nothing to go back to: it stays, failed, and is not run.
  const fresh = '02:00:00:00:fc:03';
  await api('PUT', `/v1/assignments/${fresh}`, { model: 'kws', version: '1' });
  const first = await once(fresh, ['--reject-model', sha1]);
  t.is(first.exit.code, 1, first.sim.transcript());
  t.truthy(first.sim.events.find((e) => e.event === 'not_loaded' && e.detail!.includes(sha1)), first.sim.transcript());
  const stays = await device(fresh);
  t.like(stays, { state: 'failed', running: { sha256: sha1 }, rolledBack: null });
  t.regex(String(stays.report!.error), /^model_rejected: kws 1 \(the application: --reject-model\); no previous model to go back to: it stays active$/);
});

test('a fleet of ten on kws 1; a rollout of kws 2 that the first devices reject or crash on halts at the third failure, the rest never download kws 2, and no device is ever without a model', async (t) => {
  t.timeout(300_000);
  await buildFirmware();
  const key = pipelineKey();
  const daemon = await startDaemon(t, { config: { trust: { keys: [{ publicKey: key.publicKey }], requireSignatures: true } } });
  const dir = await tempDir(t, 'modelferry-fw-fleet-');
  const api = async (method: string, route: string, body?: unknown) => {
    const response = await daemon.fetch(route, { method, token: ALL_TOKEN, headers: { 'Content-Type': 'application/json' }, body: body === undefined ? undefined : JSON.stringify(body) });
    const text = await response.text();
    t.true(response.status < 300, `${method} ${route}: ${response.status} ${text}`);
    return text ? JSON.parse(text) : undefined;
  };
  const once = async (mac: string, extra: string[] = []) => {
    const sim = startSim(t, ['--mac', mac, '--state-dir', path.join(dir, mac.replaceAll(':', '')), '--gateway', daemon.url,
      '--public-key', key.publicKey, '--once', ...extra]);
    return { sim, exit: await sim.exited };
  };
  const halted = async () => ((await api('GET', '/v1/assignments')).assignments.find((a: { selector: string }) => a.selector === 'group:fleet').rollout.halted as { by: string; failed: number } | null);

  const sha1 = await pushSigned(daemon, key, 'kws', '1', fixture('add.pte'));
  const sha2 = await pushSigned(daemon, key, 'kws', '2', makeProgram(40_000));
  const fleet = Array.from({ length: 10 }, (_, i) => `02:00:00:00:fd:${(i + 1).toString(16).padStart(2, '0')}`);
  await api('PUT', '/v1/groups/fleet', { members: fleet });
  await api('PUT', '/v1/assignments/group:fleet', { model: 'kws', version: '1' });
  for (const mac of fleet) t.is((await once(mac)).exit.code, 0, `${mac} installs kws 1`);
  t.true((await devices(daemon)).filter((d) => fleet.includes(d.mac)).every((d) => d.running?.sha256 === sha1 && d.state === 'installed'));

  await api('PUT', '/v1/assignments/group:fleet', { model: 'kws', version: '2', rollout: { percent: 100, previous: { model: 'kws', version: '1' }, haltOnFailures: 3 } });
  // Two applications reject kws 2 after loading it; the third crashes on it at every boot.
  const [first, second, third, ...rest] = fleet as [string, string, string, ...string[]];
  for (const mac of [first, second]) {
    const { sim, exit } = await once(mac, ['--reject-model', sha2]);
    t.is(exit.code, 1, sim.transcript());
    t.regex(sim.events.find((e) => e.event === 'rolled_back')!.detail!, new RegExp(`from=${sha2} to=${sha1}`), sim.transcript());
    t.falsy(await halted(), `not halted after ${mac}: below haltOnFailures 3`);
  }
  for (const boot of ['after the install', 'at the first boot']) t.is((await once(third, ['--crash-model', sha2])).exit.code, 134, boot);
  const back = await once(third, ['--crash-model', sha2]);
  t.regex(back.sim.events.find((e) => e.event === 'rolled_back')!.detail!, new RegExp(`from=${sha2} to=${sha1} why=not_confirmed`), back.sim.transcript());
  const halt = await until('the rollout halted at the third failure', halted);
  t.like(halt, { by: 'failures', failed: 3 });

  // Devices that poll after the halt are offered kws 1, which they run: nothing to download.
  for (const mac of rest) {
    const { sim, exit } = await once(mac);
    t.is(exit.code, 0, sim.transcript());
    t.false(sim.events.some((e) => e.detail?.includes(sha2)), `${mac} never hears of kws 2:\n${sim.transcript()}`);
  }
  const inventory = (await devices(daemon)).filter((d) => fleet.includes(d.mac));
  t.is(inventory.length, 10);
  // Every device runs kws 1: the three that tried kws 2 went back to it, the rest never left it.
  for (const d of inventory) t.is(d.running?.sha256, sha1, `${d.mac} runs kws 1`);
  t.regex(await (await daemon.fetch('/metrics')).text(), /^modelferry_device_rollbacks_total\{model="kws"\} 3$/m);
});
