import { createHash } from 'node:crypto';
import test from 'ava';
import { EffectiveCatalog } from '../../daemon/catalog/effective-catalog.ts';
import { rolloutBucket } from '../../daemon/catalog/rollout.ts';
import type { Assignment, LayerContent, ModelRecord } from '../../daemon/catalog/types.ts';

// docs/design.md "Staged rollouts": a device gets the new version when bucket < percent, else
// rollout.previous; bucket = first 4 bytes of sha256("<mac>:<name>:<version>") as a
// big-endian unsigned integer, modulo 100.

function independentBucket(mac: string, name: string, version: string): number {
  const digest = createHash('sha256').update(Buffer.from(`${mac}:${name}:${version}`, 'utf8')).digest();
  return (((digest[0]! << 24) >>> 0) + (digest[1]! << 16) + (digest[2]! << 8) + digest[3]!) % 100;
}

function macs(count: number): string[] {
  return Array.from({ length: count }, (_, i) => {
    const bytes = createHash('sha256').update(`device-${i}`).digest().subarray(0, 6);
    return [...bytes].map((b) => b.toString(16).padStart(2, '0')).join(':');
  });
}

function model(name: string, version: string, createdAt: string): ModelRecord {
  return { name, version, sha256: createHash('sha256').update(`${name}@${version}`).digest('hex'), size: 1000, format: 'executorch', signature: null, keyId: null, createdAt };
}

function catalogWithRollout(percent: number, version = '2.0.0'): EffectiveCatalog {
  const assignment: Assignment = {
    selector: 'default', model: 'kws', version, rollout: { percent, previous: { model: 'kws', version: '1.0.0' } }, updatedAt: '2026-11-24T12:00:00Z',
  };
  const local: LayerContent = {
    models: [model('kws', '1.0.0', '2026-11-01T00:00:00Z'), model('kws', '2.0.0', '2026-11-24T00:00:00Z')],
    assignments: [assignment],
    groups: {},
  };
  return new EffectiveCatalog([{ name: 'local', content: local }, { name: 'upstream', content: { models: [], assignments: [], groups: {} } }]);
}

const FLEET = macs(500);

test('the bucket matches values computed outside Node (Python hashlib)', (t) => {
  t.is(rolloutBucket('aa:bb:cc:dd:ee:ff', 'kws', '1.0.0'), 47);
  t.is(rolloutBucket('aa:bb:cc:dd:ee:ff', 'kws', '2.0.0'), 9);
  t.is(rolloutBucket('00:11:22:33:44:55', 'kws', '2.0.0'), 65);
  t.is(rolloutBucket('de:ad:be:ef:00:01', 'vision', '2026.11.24-3'), 20);
});

test('the bucket is sha256("<mac>:<name>:<version>") first four bytes big-endian modulo 100, for every device', (t) => {
  for (const mac of FLEET) {
    t.is(rolloutBucket(mac, 'kws', '2.0.0'), independentBucket(mac, 'kws', '2.0.0'), mac);
  }
});

test('buckets spread over 0..99 and cohorts change with the release', (t) => {
  const buckets = FLEET.map((mac) => rolloutBucket(mac, 'kws', '2.0.0'));
  t.true(buckets.every((b) => Number.isInteger(b) && b >= 0 && b < 100));
  t.true(new Set(buckets).size > 90);
  const next = FLEET.map((mac) => rolloutBucket(mac, 'kws', '3.0.0'));
  t.true(next.filter((b, i) => b !== buckets[i]).length > 400);
});

test('a device gets the new version exactly when its bucket is below the percent, else rollout.previous', (t) => {
  for (const percent of [1, 10, 37, 50, 99]) {
    const catalog = catalogWithRollout(percent);
    for (const mac of FLEET) {
      const resolution = catalog.resolveDevice(mac)!;
      const inCohort = independentBucket(mac, 'kws', '2.0.0') < percent;
      t.is(resolution.model.version, inCohort ? '2.0.0' : '1.0.0', `${mac} at ${percent}%`);
      t.is(resolution.held, !inCohort);
      t.is(resolution.assignment.selector, 'default');
    }
  }
});

test('raising the percent only ever adds devices to the new version', (t) => {
  let previous = new Set<string>();
  for (let percent = 0; percent <= 100; percent += 5) {
    const catalog = catalogWithRollout(percent);
    const onNew = new Set(FLEET.filter((mac) => catalog.resolveDevice(mac)!.model.version === '2.0.0'));
    for (const mac of previous) t.true(onNew.has(mac), `${mac} left the new version when raising to ${percent}%`);
    t.true(onNew.size >= previous.size);
    previous = onNew;
  }
  t.is(previous.size, FLEET.length);
});

test('the share of devices on the new version follows the percent', (t) => {
  const share = FLEET.filter((mac) => catalogWithRollout(30).resolveDevice(mac)!.model.version === '2.0.0').length / FLEET.length;
  t.true(share > 0.2 && share < 0.4, `share ${share}`);
});

test('percent 0 keeps every device on previous, percent 100 moves every device', (t) => {
  const none = catalogWithRollout(0);
  const all = catalogWithRollout(100);
  for (const mac of FLEET) {
    t.is(none.resolveDevice(mac)!.model.version, '1.0.0');
    t.true(none.resolveDevice(mac)!.held);
    t.is(all.resolveDevice(mac)!.model.version, '2.0.0');
    t.false(all.resolveDevice(mac)!.held);
  }
});

test('a rollout to latest computes the bucket with the concrete newest version', (t) => {
  const catalog = catalogWithRollout(50, 'latest');
  for (const mac of FLEET.slice(0, 100)) {
    const inCohort = independentBucket(mac, 'kws', '2.0.0') < 50;
    t.is(catalog.resolveDevice(mac)!.model.version, inCohort ? '2.0.0' : '1.0.0', mac);
  }
});

test('a held device whose previous version is missing resolves to nothing', (t) => {
  const local: LayerContent = {
    models: [model('kws', '2.0.0', '2026-11-24T00:00:00Z')],
    assignments: [{ selector: 'default', model: 'kws', version: '2.0.0', rollout: { percent: 0, previous: { model: 'kws', version: '1.0.0' } }, updatedAt: '2026-11-24T12:00:00Z' }],
    groups: {},
  };
  const catalog = new EffectiveCatalog([{ name: 'local', content: local }]);
  t.is(catalog.resolveDevice(FLEET[0]!), undefined);
});
