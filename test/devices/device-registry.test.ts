import path from 'node:path';
import test, { type ExecutionContext } from 'ava';
import { DeviceRegistry, type DeviceRecord, type SeenOutcome } from '../../daemon/devices/device-registry.ts';
import { createLogger } from '../../daemon/log.ts';
import { Database, type BatchOperation } from '../../daemon/store/database.ts';
import { tempDir } from '../helpers/harness.ts';

// The device registry (docs/design.md "Storage and crash safety"): polls and reports change records
// in memory; they reach LevelDB in one batch per flush, and at stop.

const log = createLogger('silent');
const DEV_A = 'aa:bb:cc:dd:ee:01';
const DEV_B = 'aa:bb:cc:dd:ee:02';
const T0 = new Date('2026-11-24T10:00:00Z');
const T1 = new Date('2026-11-24T10:05:00Z');

async function open(t: ExecutionContext, dir: string, limits = { maxKnown: 1000, newPerAddressPerMinute: 1000 }, named = new Set<string>()) {
  const db = new Database(path.join(dir, 'state'), log);
  await db.start();
  // A flush period far longer than any test: flushes happen only when a test asks.
  const devices = new DeviceRegistry(db, log, { seenFlushSeconds: 3600, ...limits }, (mac) => named.has(mac));
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

/** What is on disk, as a registry started afresh on the same database reads it. */
async function stored(db: Database): Promise<Record<string, DeviceRecord>> {
  const reader = new DeviceRegistry(db, log, { seenFlushSeconds: 3600, maxKnown: 1000, newPerAddressPerMinute: 1000 }, () => false);
  await reader.start();
  const out: Record<string, DeviceRecord> = {};
  for (const record of reader.records()) out[record.mac] = structuredClone(record);
  await reader.stop();
  return out;
}

/** The tables each batch write touched, and how many entries in each. */
function recordBatches(db: Database): Array<Record<string, number>> {
  const batches: Array<Record<string, number>> = [];
  const level = db.level;
  const batch = level.batch.bind(level);
  level.batch = ((operations: BatchOperation[]) => {
    const touched: Record<string, number> = {};
    for (const operation of operations) {
      const name = `${operation.type} ${String((operation.sublevel as { prefix?: string } | undefined)?.prefix ?? '')}`;
      touched[name] = (touched[name] ?? 0) + 1;
    }
    batches.push(touched);
    return batch(operations);
  }) as typeof level.batch;
  return batches;
}

test('the first poll creates a record; later ones move lastSeen and address, never firstSeen', async (t) => {
  const { devices } = await open(t, await tempDir(t));
  const first = devices.seen(DEV_A, '192.168.1.20', true, T0);
  t.deepEqual(first.kind === 'recorded' ? first.record : first, { mac: DEV_A, firstSeen: T0.toISOString(), lastSeen: T0.toISOString(), address: '192.168.1.20', report: null });
  devices.seen(DEV_A, '192.168.1.21', true, T1);
  t.deepEqual(devices.get(DEV_A), { mac: DEV_A, firstSeen: T0.toISOString(), lastSeen: T1.toISOString(), address: '192.168.1.21', report: null });
  t.is(devices.size, 1);
});

test('an IPv4-mapped IPv6 address is shown as IPv4; no address is null', async (t) => {
  const { devices } = await open(t, await tempDir(t));
  const address = (outcome: SeenOutcome) => outcome.kind === 'recorded' ? outcome.record.address : outcome.kind;
  t.is(address(devices.seen(DEV_A, '::ffff:10.0.0.7', true, T0)), '10.0.0.7');
  t.is(address(devices.seen(DEV_B, undefined, true, T0)), null);
  t.is(address(devices.seen(DEV_B, 'fe80::1', true, T0)), 'fe80::1');
});

test('a report counts as being seen and is kept with the time it arrived', async (t) => {
  const { devices } = await open(t, await tempDir(t));
  devices.report(DEV_A, '10.0.0.7', true, { state: 'installed', sha256: 'a'.repeat(64), model: 'kws', version: '1.0.0' }, T1);
  t.deepEqual(devices.get(DEV_A), {
    mac: DEV_A, firstSeen: T1.toISOString(), lastSeen: T1.toISOString(), address: '10.0.0.7',
    report: { state: 'installed', sha256: 'a'.repeat(64), model: 'kws', version: '1.0.0', at: T1.toISOString() },
  });
});

test('pages are in MAC order: `next` names the last MAC of a page that has more after it', async (t) => {
  const { devices } = await open(t, await tempDir(t));
  const macs = Array.from({ length: 7 }, (_, i) => `aa:bb:cc:dd:ee:${(0x30 - i * 5).toString(16).padStart(2, '0')}`);
  for (const mac of macs) devices.seen(mac, null, true, T0);
  const sorted = [...macs].sort();
  const first = devices.page(3, null);
  t.deepEqual(first.records.map((d) => d.mac), sorted.slice(0, 3));
  t.is(first.next, sorted[2]!);
  t.deepEqual(devices.page(3, first.next!).records.map((d) => d.mac), sorted.slice(3, 6));
  t.deepEqual(devices.page(3, sorted[5]!), { records: [devices.get(sorted[6]!)!], next: null });
  t.deepEqual(devices.page(3, 'aa:bb:cc:dd:ee:ff'), { records: [], next: null });
});

test('a MAC that neither resolves nor is named by the catalog gets no record; a named one does', async (t) => {
  const { devices } = await open(t, await tempDir(t), undefined, new Set([DEV_B]));
  t.deepEqual(devices.seen(DEV_A, null, false, T0), { kind: 'ignored' });
  t.deepEqual(devices.report(DEV_A, null, false, { state: 'idle' }, T0), { kind: 'ignored' });
  t.is(devices.seen(DEV_B, null, false, T0).kind, 'recorded');
  t.is(devices.size, 1);
});

test('new MACs from one address are limited to newPerAddressPerMinute, refilled over the minute; other addresses and known devices are not held back', async (t) => {
  const { devices } = await open(t, await tempDir(t), { maxKnown: 1000, newPerAddressPerMinute: 2 });
  const mac = (i: number) => `aa:bb:cc:00:00:${i.toString(16).padStart(2, '0')}`;
  t.is(devices.seen(mac(1), '10.0.0.1', true, T0).kind, 'recorded');
  t.is(devices.seen(mac(2), '10.0.0.1', true, T0).kind, 'recorded');
  t.deepEqual(devices.seen(mac(3), '10.0.0.1', true, T0), { kind: 'rate_limited', retryAfterSeconds: 30 });
  t.is(devices.seen(mac(1), '10.0.0.1', true, T0).kind, 'recorded');
  t.is(devices.seen(mac(4), '10.0.0.2', true, T0).kind, 'recorded');
  t.is(devices.seen(mac(3), '10.0.0.1', true, new Date(T0.getTime() + 30_000)).kind, 'recorded');
});

test('past maxKnown the least recently seen record the catalog does not name is evicted, also from disk', async (t) => {
  const named = new Set(['aa:bb:cc:00:00:01']);
  const { db, devices } = await open(t, await tempDir(t), { maxKnown: 3, newPerAddressPerMinute: 1000 }, named);
  const mac = (i: number) => `aa:bb:cc:00:00:${i.toString(16).padStart(2, '0')}`;
  for (const i of [1, 2, 3]) devices.seen(mac(i), null, true, T0);
  await devices.flush();
  devices.seen(mac(2), null, true, T1);
  devices.seen(mac(4), null, true, T1);
  t.deepEqual(devices.page(10, null).records.map((d) => d.mac), [mac(1), mac(2), mac(4)], '03 went: 01 is named, 02 was seen since');
  await devices.flush();
  t.deepEqual(Object.keys(await stored(db)).sort(), [mac(1), mac(2), mac(4)]);
  named.add(mac(2));
  named.add(mac(4));
  t.deepEqual(devices.seen(mac(5), null, true, T1), { kind: 'ignored' }, 'no room when every record is named');
});

test('nothing reaches the disk until a flush, and then every changed record does', async (t) => {
  const { db, devices } = await open(t, await tempDir(t));
  devices.seen(DEV_A, '10.0.0.1', true, T0);
  devices.report(DEV_B, '10.0.0.2', true, { state: 'idle' }, T0);
  t.deepEqual(await stored(db), {});
  await devices.flush();
  t.deepEqual(await stored(db), { [DEV_A]: devices.get(DEV_A)!, [DEV_B]: devices.get(DEV_B)! });
});

test('stop writes what is pending, and a restart reads every record back', async (t) => {
  const dir = await tempDir(t);
  const first = await open(t, dir);
  first.devices.seen(DEV_A, '10.0.0.1', true, T0);
  first.devices.report(DEV_A, '10.0.0.1', true, { state: 'failed', error: 'sha256 mismatch' }, T1);
  const before = structuredClone(first.devices.get(DEV_A));
  await first.stop();

  const second = await open(t, dir);
  t.deepEqual(second.devices.get(DEV_A), before);
  t.is(second.devices.size, 1);
});

test('concurrent flushes share the work and both settle after the write', async (t) => {
  const { db, devices } = await open(t, await tempDir(t));
  devices.seen(DEV_A, null, true, T0);
  await Promise.all([devices.flush(), devices.flush()]);
  t.deepEqual(Object.keys(await stored(db)), [DEV_A]);
});

test('a poll writes only its last seen and address: the report and capabilities are not written again', async (t) => {
  const { db, devices } = await open(t, await tempDir(t));
  const capabilities = { operators: Array.from({ length: 500 }, (_, i) => `aten::op_${i}.out`), delegates: [] };
  devices.report(DEV_A, '10.0.0.1', true, { state: 'installed', sha256: 'a'.repeat(64), capabilities }, T0);
  await devices.flush();
  const batches = recordBatches(db);
  devices.seen(DEV_A, '10.0.0.9', true, T1);
  await devices.flush();
  t.deepEqual(batches, [{ 'put !seen!': 1 }]);
  t.is(await db.table<string>('seen', 'utf8').get(DEV_A), `${T1.getTime()} 10.0.0.9`);
  t.deepEqual((await stored(db))[DEV_A], devices.get(DEV_A));
});

test('records written whole, before last seen and capabilities had tables of their own, are read and split at the next flush', async (t) => {
  const dir = await tempDir(t);
  const old: DeviceRecord = {
    mac: DEV_A, firstSeen: T0.toISOString(), lastSeen: T1.toISOString(), address: '10.0.0.4',
    report: { state: 'idle', at: T1.toISOString() }, capabilities: { operators: ['aten::add.out'], delegates: [], at: T0.toISOString() },
  };
  const first = await open(t, dir);
  await first.db.table<DeviceRecord>('devices').put(DEV_A, old);
  await first.stop();

  const second = await open(t, dir);
  t.deepEqual(second.devices.get(DEV_A), old);
  await second.devices.flush();
  t.deepEqual(await second.db.table('devices').get(DEV_A), { mac: DEV_A, firstSeen: old.firstSeen, report: old.report });
  t.deepEqual(await stored(second.db), { [DEV_A]: old });
});

test('devices of one firmware share one copy of their operator list, also after a restart; a different list is its own', async (t) => {
  const dir = await tempDir(t);
  const first = await open(t, dir);
  const operators = () => Array.from({ length: 300 }, (_, i) => `aten::op_${i}.out`);
  // Each report parsed on its own, as requests are: equal lists, distinct arrays.
  first.devices.report(DEV_A, '10.0.0.1', true, { state: 'idle', capabilities: { operators: operators(), delegates: [] } }, T0);
  first.devices.report(DEV_B, '10.0.0.2', true, { state: 'idle', capabilities: { operators: operators(), delegates: [] } }, T1);
  t.is(first.devices.get(DEV_A)!.capabilities!.operators, first.devices.get(DEV_B)!.capabilities!.operators);
  t.is(first.devices.get(DEV_A)!.capabilities!.at, T0.toISOString(), 'each device keeps its own time');
  const other = 'aa:bb:cc:dd:ee:03';
  first.devices.report(other, '10.0.0.3', true, { state: 'idle', capabilities: { operators: [...operators(), 'aten::extra.out'], delegates: [] } }, T1);
  t.not(first.devices.get(other)!.capabilities!.operators, first.devices.get(DEV_A)!.capabilities!.operators);
  await first.stop();

  const second = await open(t, dir);
  t.is(second.devices.get(DEV_A)!.capabilities!.operators, second.devices.get(DEV_B)!.capabilities!.operators);
  t.deepEqual(second.devices.get(DEV_A)!.capabilities!.operators, operators());
});
