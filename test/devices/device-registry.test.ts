import path from 'node:path';
import test, { type ExecutionContext } from 'ava';
import { DeviceRegistry, type DeviceRecord } from '../../daemon/devices/device-registry.ts';
import { createLogger } from '../../daemon/log.ts';
import { Database } from '../../daemon/store/database.ts';
import { tempDir } from '../helpers/harness.ts';

// The device registry (README "Storage and crash safety"): polls and reports change records
// in memory; they reach LevelDB in one batch per flush, and at stop.

const log = createLogger('silent');
const DEV_A = 'aa:bb:cc:dd:ee:01';
const DEV_B = 'aa:bb:cc:dd:ee:02';
const T0 = new Date('2026-11-24T10:00:00Z');
const T1 = new Date('2026-11-24T10:05:00Z');

async function open(t: ExecutionContext, dir: string) {
  const db = new Database(path.join(dir, 'state'), log);
  await db.start();
  // A flush period far longer than any test: flushes happen only when a test asks.
  const devices = new DeviceRegistry(db, log, 3600);
  await devices.start();
  let stopped = false;
  const stop = async () => {
    if (stopped) return;
    stopped = true;
    await devices.stop();
    await db.stop();
  };
  t.teardown(stop);
  return { db, devices, stop };
}

/** What is on disk, read past the registry. */
async function stored(db: Database): Promise<Record<string, DeviceRecord>> {
  const out: Record<string, DeviceRecord> = {};
  for await (const [mac, record] of db.table<DeviceRecord>('devices').iterator()) out[mac] = record;
  return out;
}

test('the first poll creates a record; later ones move lastSeen and address, never firstSeen', async (t) => {
  const { devices } = await open(t, await tempDir(t));
  const first = devices.seen(DEV_A, '192.168.1.20', T0);
  t.deepEqual(first, { mac: DEV_A, firstSeen: T0.toISOString(), lastSeen: T0.toISOString(), address: '192.168.1.20', report: null });
  devices.seen(DEV_A, '192.168.1.21', T1);
  t.deepEqual(devices.get(DEV_A), { mac: DEV_A, firstSeen: T0.toISOString(), lastSeen: T1.toISOString(), address: '192.168.1.21', report: null });
  t.is(devices.size, 1);
});

test('an IPv4-mapped IPv6 address is shown as IPv4; no address is null', async (t) => {
  const { devices } = await open(t, await tempDir(t));
  t.is(devices.seen(DEV_A, '::ffff:10.0.0.7', T0).address, '10.0.0.7');
  t.is(devices.seen(DEV_B, undefined, T0).address, null);
  t.is(devices.seen(DEV_B, 'fe80::1', T0).address, 'fe80::1');
});

test('a report counts as being seen and is kept with the time it arrived', async (t) => {
  const { devices } = await open(t, await tempDir(t));
  devices.report(DEV_A, '10.0.0.7', { state: 'installed', sha256: 'a'.repeat(64), model: 'kws', version: '1.0.0' }, T1);
  t.deepEqual(devices.get(DEV_A), {
    mac: DEV_A, firstSeen: T1.toISOString(), lastSeen: T1.toISOString(), address: '10.0.0.7',
    report: { state: 'installed', sha256: 'a'.repeat(64), model: 'kws', version: '1.0.0', at: T1.toISOString() },
  });
});

test('the list is sorted by MAC', async (t) => {
  const { devices } = await open(t, await tempDir(t));
  devices.seen(DEV_B, null, T0);
  devices.seen(DEV_A, null, T0);
  t.deepEqual(devices.list().map((d) => d.mac), [DEV_A, DEV_B]);
});

test('nothing reaches the disk until a flush, and then every changed record does', async (t) => {
  const { db, devices } = await open(t, await tempDir(t));
  devices.seen(DEV_A, '10.0.0.1', T0);
  devices.report(DEV_B, '10.0.0.2', { state: 'idle' }, T0);
  t.deepEqual(await stored(db), {});
  await devices.flush();
  t.deepEqual(await stored(db), { [DEV_A]: devices.get(DEV_A)!, [DEV_B]: devices.get(DEV_B)! });
});

test('stop writes what is pending, and a restart reads every record back', async (t) => {
  const dir = await tempDir(t);
  const first = await open(t, dir);
  first.devices.seen(DEV_A, '10.0.0.1', T0);
  first.devices.report(DEV_A, '10.0.0.1', { state: 'failed', error: 'sha256 mismatch' }, T1);
  const before = structuredClone(first.devices.get(DEV_A));
  await first.stop();

  const second = await open(t, dir);
  t.deepEqual(second.devices.get(DEV_A), before);
  t.is(second.devices.size, 1);
});

test('concurrent flushes share the work and both settle after the write', async (t) => {
  const { db, devices } = await open(t, await tempDir(t));
  devices.seen(DEV_A, null, T0);
  await Promise.all([devices.flush(), devices.flush()]);
  t.deepEqual(Object.keys(await stored(db)), [DEV_A]);
});
