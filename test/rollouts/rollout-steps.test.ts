import test, { type ExecutionContext } from 'ava';
import type { Clock } from '../../daemon/clock.ts';
import { assign, bucketOf, poll, pushed, sendJson } from '../helpers/api.ts';
import { startGateway, type TestGateway } from '../helpers/gateway.ts';
import { until } from '../helpers/harness.ts';
import { ADD_SHA256, MUL_SHA256, fixture } from '../helpers/programs.ts';
import { ADMIN_TOKEN } from '../helpers/tokens.ts';

// Automatic progression (`steps`, `stepAfterMinutes`) on a clock the test moves: nothing
// sleeps. The gateway runs in this process so that it can be given the clock.

class TestClock implements Clock {
  #ms = Date.now();
  readonly #ticks = new Set<() => Promise<void>>();

  now(): Date {
    return new Date(this.#ms);
  }

  every(_ms: number, tick: () => Promise<void>): () => void {
    this.#ticks.add(tick);
    return () => this.#ticks.delete(tick);
  }

  /** Moves time on and runs the periodic checks, as the minute timer would. */
  async advance(minutes: number): Promise<void> {
    this.#ms += minutes * 60_000;
    for (const tick of this.#ticks) await tick();
  }
}

async function setUp(t: ExecutionContext): Promise<{ gw: TestGateway; clock: TestClock }> {
  const clock = new TestClock();
  const gw = await startGateway(t, {}, { clock });
  await pushed(t, gw, 'kws', '1', fixture('add.pte'));
  await pushed(t, gw, 'kws', '2', fixture('mul.pte'));
  return { gw, clock };
}

async function rolloutOf(gw: TestGateway, selector: string): Promise<any> {
  const body = await (await gw.fetch('/v1/assignments', { token: ADMIN_TOKEN })).json() as any;
  return body.assignments.find((a: any) => a.selector === selector).rollout;
}

/** Waits until the gateway has judged the last reports (it does so right after them) and halted the rollout of `selector`. */
function untilHalted(gw: TestGateway, selector: string): Promise<unknown> {
  return until(`the rollout of ${selector} halted`, async () => (await rolloutOf(gw, selector)).halted || undefined);
}

function macIn(range: [number, number], version = '2'): string {
  for (let i = 0; ; i++) {
    const mac = `0f:00:00:00:${(i >> 8).toString(16).padStart(2, '0')}:${(i & 0xff).toString(16).padStart(2, '0')}`;
    const bucket = bucketOf(mac, 'kws', version);
    if (bucket >= range[0] && bucket < range[1]) return mac;
  }
}

test('steps raise the percentage one step per stepAfterMinutes while healthy, and stop at a halt', async (t) => {
  const { gw, clock } = await setUp(t);
  const late = macIn([10, 50]);
  await assign(t, gw, 'default', { model: 'kws', version: '2', rollout: { previous: { model: 'kws', version: '1' }, steps: [10, 50, 100], stepAfterMinutes: 30, haltOnFailures: 1 } });
  t.like(await rolloutOf(gw, 'default'), { percent: 10, steps: [10, 50, 100], stepAfterMinutes: 30 });
  t.is((await poll(gw, late)).json.model.sha256, ADD_SHA256);

  await clock.advance(29);
  t.is((await rolloutOf(gw, 'default')).percent, 10, 'not before stepAfterMinutes');
  await clock.advance(2);
  t.is((await rolloutOf(gw, 'default')).percent, 50);
  t.is((await poll(gw, late)).json.model.sha256, MUL_SHA256, 'the new step adds devices');

  t.is((await sendJson(gw, 'POST', `/v1/devices/${late}/report`, { state: 'failed', sha256: ADD_SHA256, error: 'load failed' })).status, 204);
  await untilHalted(gw, 'default');
  await clock.advance(120);
  t.like(await rolloutOf(gw, 'default'), { percent: 50, halted: { by: 'failures', failed: 1 } });

  // Resumed, it steps again from the time of the resume.
  t.is((await gw.fetch('/v1/assignments/default/rollout/resume', { method: 'POST', token: ADMIN_TOKEN })).status, 200);
  await clock.advance(31);
  t.like(await rolloutOf(gw, 'default'), { percent: 100, halted: null });
  await clock.advance(31);
  t.is((await rolloutOf(gw, 'default')).percent, 100, 'no step past the last');
});

test('without haltOnFailures, any failure in the cohort holds the steps; a count threshold halts at that count', async (t) => {
  const { gw, clock } = await setUp(t);
  const early = macIn([0, 20]);
  await assign(t, gw, early, { model: 'kws', version: '2', rollout: { previous: { model: 'kws', version: '1' }, steps: [20, 100], stepAfterMinutes: 10 } });
  t.is((await sendJson(gw, 'POST', `/v1/devices/${early}/report`, { state: 'failed', error: 'crc' })).status, 204);
  await clock.advance(60);
  t.like(await rolloutOf(gw, early), { percent: 20, halted: null });

  const [a, b] = [macIn([0, 100]), '0f:00:00:01:00:01'];
  t.is((await sendJson(gw, 'PUT', '/v1/groups/pair', { members: [a, b] })).status, 201);
  await assign(t, gw, 'group:pair', { model: 'kws', version: '2', rollout: { percent: 100, previous: { model: 'kws', version: '1' }, haltOnFailures: 2 } });
  t.is((await sendJson(gw, 'POST', `/v1/devices/${a}/report`, { state: 'failed', error: 'e1' })).status, 204);
  t.is((await sendJson(gw, 'POST', `/v1/devices/${b}/report`, { state: 'idle' })).status, 204);
  t.falsy((await rolloutOf(gw, 'group:pair')).halted);
  t.is((await sendJson(gw, 'POST', `/v1/devices/${b}/report`, { state: 'failed', error: 'e2' })).status, 204);
  await untilHalted(gw, 'group:pair');
  t.like((await rolloutOf(gw, 'group:pair')).halted, { by: 'failures', failed: 2, cohort: 2, reasons: { e1: 1, e2: 1 } });
});

test('minDevices: failures are judged once the cohort is big enough, whichever report completes it', async (t) => {
  const { gw } = await setUp(t);
  const [a, b] = ['0f:00:00:03:00:01', '0f:00:00:03:00:02'];
  t.is((await sendJson(gw, 'PUT', '/v1/groups/duo', { members: [a, b] })).status, 201);
  await assign(t, gw, 'group:duo', { model: 'kws', version: '2', rollout: { percent: 100, previous: { model: 'kws', version: '1' }, haltOnFailures: 1, minDevices: 2 } });
  t.is((await sendJson(gw, 'POST', `/v1/devices/${a}/report`, { state: 'failed', error: 'boom' })).status, 204);
  t.like((await (await gw.fetch('/v1/assignments', { token: ADMIN_TOKEN })).json() as any).assignments[0], { cohort: { cohort: 1, failed: 1, passed: false } });
  t.falsy((await rolloutOf(gw, 'group:duo')).halted, 'one known device is below minDevices');
  t.is((await sendJson(gw, 'POST', `/v1/devices/${b}/report`, { state: 'installed', sha256: MUL_SHA256 })).status, 204);
  await untilHalted(gw, 'group:duo');
  t.like((await rolloutOf(gw, 'group:duo')).halted, { failed: 1, cohort: 2 });
});

test('rollout fields are validated', async (t) => {
  const { gw } = await setUp(t);
  const previous = { model: 'kws', version: '1' };
  for (const rollout of [
    { previous, percent: 10, haltOnFailures: '0%' },
    { previous, percent: 10, haltOnFailures: '101%' },
    { previous, percent: 10, haltOnFailures: 0 },
    { previous, percent: 10, minDevices: 0 },
    { previous, steps: [50, 25], stepAfterMinutes: 5 },
    { previous, steps: [5, 25] },
    { previous },
  ]) {
    const response = await sendJson(gw, 'PUT', '/v1/assignments/default', { model: 'kws', version: '2', rollout });
    t.is(response.status, 400, JSON.stringify(rollout));
    t.is(((await response.json()) as any).error, 'invalid_body');
  }
  t.is((await sendJson(gw, 'PUT', '/v1/assignments/default?strict=maybe', { model: 'kws', version: '2' })).status, 400);
});

test('capabilities are kept across a restart, and still decide what a device is offered', async (t) => {
  const { gw } = await setUp(t);
  const mac = '0f:00:00:02:00:01';
  await assign(t, gw, 'default', { model: 'kws', version: '1' });
  const capabilities = { operators: ['aten::add.out'], delegates: ['XnnpackBackend'], arenaBytes: 2048, slotBytes: 4096, runtime: 'executorch 1.0' };
  t.is((await sendJson(gw, 'POST', `/v1/devices/${mac}/report`, { state: 'installed', sha256: ADD_SHA256, capabilities })).status, 204);
  await assign(t, gw, 'default', { model: 'kws', version: '2' });
  await gw.restart();
  const device = await (await gw.fetch(`/v1/devices/${mac}`, { token: ADMIN_TOKEN })).json() as any;
  t.like(device.capabilities, capabilities);
  t.is((await poll(gw, mac)).json.model.sha256, ADD_SHA256);
});
