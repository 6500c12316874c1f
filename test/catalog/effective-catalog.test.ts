import { createHash } from 'node:crypto';
import test from 'ava';
import { EffectiveCatalog } from '../../daemon/catalog/effective-catalog.ts';
import type { Assignment, LayerContent, ModelRecord, Rollout } from '../../daemon/catalog/types.ts';

// docs/design.md "Device poll" and "Layers and garbage collection": two layers, local over
// upstream; a device resolves by its own assignment, then its group's, then default; `latest`
// is the newest version.

const DEV_A = 'aa:bb:cc:dd:ee:01';
const DEV_B = 'aa:bb:cc:dd:ee:02';
const DEV_C = 'aa:bb:cc:dd:ee:03';

function model(name: string, version: string, createdAt: string, tag = ''): ModelRecord {
  return {
    name, version, sha256: createHash('sha256').update(`${name}@${version}${tag}`).digest('hex'), size: 1000 + version.length,
    format: 'executorch', signature: null, keyId: null, createdAt,
  };
}

function assign(selector: string, modelName: string, version: string, rollout: Rollout | null = null): Assignment {
  return { selector, model: modelName, version, rollout, updatedAt: '2026-11-24T12:00:00Z' };
}

function layer(content: Partial<LayerContent> = {}): LayerContent {
  return { models: [], assignments: [], groups: {}, ...content };
}

function catalog(local: Partial<LayerContent>, upstream: Partial<LayerContent> = {}): EffectiveCatalog {
  return new EffectiveCatalog([{ name: 'local', content: layer(local) }, { name: 'upstream', content: layer(upstream) }]);
}

const V1 = model('kws', '1.0.0', '2026-11-01T00:00:00Z');
const V2 = model('kws', '2.0.0', '2026-11-10T00:00:00Z');
const V3 = model('kws', '3.0.0', '2026-11-20T00:00:00Z');

test('for the same name and version the local model wins over the upstream one', (t) => {
  const localV1 = model('kws', '1.0.0', '2026-11-01T00:00:00Z', 'local');
  const c = catalog({ models: [localV1] }, { models: [V1, V2] });
  t.is(c.models.size, 2);
  t.is(c.models.get('kws@1.0.0')!.sha256, localV1.sha256);
  t.is(c.models.get('kws@1.0.0')!.layer, 'local');
  t.is(c.models.get('kws@2.0.0')!.layer, 'upstream');
});

test('for the same selector the local assignment wins over the upstream one', (t) => {
  const c = catalog({ models: [V1], assignments: [assign('default', 'kws', '1.0.0')] }, { models: [V2], assignments: [assign('default', 'kws', '2.0.0'), assign('group:lab', 'kws', '2.0.0')] });
  t.is(c.assignments.get('default')!.version, '1.0.0');
  t.is(c.assignments.get('default')!.layer, 'local');
  t.is(c.assignments.get('group:lab')!.layer, 'upstream');
  t.is(c.resolveDevice(DEV_A)!.model.version, '1.0.0');
});

test('for the same group name the local member list replaces the upstream one', (t) => {
  const c = catalog(
    { models: [V1, V2], assignments: [assign('group:lab', 'kws', '2.0.0'), assign('default', 'kws', '1.0.0')], groups: { lab: [DEV_B] } },
    { groups: { lab: [DEV_A] } },
  );
  t.deepEqual(c.groups.get('lab'), { members: [DEV_B], layer: 'local' });
  t.is(c.groupOf(DEV_A), undefined);
  t.is(c.groupOf(DEV_B), 'lab');
  t.is(c.resolveDevice(DEV_A)!.model.version, '1.0.0');
  t.is(c.resolveDevice(DEV_B)!.model.version, '2.0.0');
});

test('a device in a local group and another upstream group belongs to the local one', (t) => {
  const c = catalog({ groups: { field: [DEV_A] } }, { groups: { lab: [DEV_A, DEV_B] } });
  t.is(c.groupOf(DEV_A), 'field');
  t.is(c.groupOf(DEV_B), 'lab');
});

test('a device resolves by its own assignment, then its group, then default', (t) => {
  const c = catalog({
    models: [V1, V2, V3],
    assignments: [assign(DEV_A, 'kws', '3.0.0'), assign('group:lab', 'kws', '2.0.0'), assign('default', 'kws', '1.0.0')],
    groups: { lab: [DEV_A, DEV_B] },
  });
  const a = c.resolveDevice(DEV_A)!;
  t.is(a.model.version, '3.0.0');
  t.is(a.assignment.selector, DEV_A);
  t.false(a.held);
  const b = c.resolveDevice(DEV_B)!;
  t.is(b.model.version, '2.0.0');
  t.is(b.assignment.selector, 'group:lab');
  const other = c.resolveDevice(DEV_C)!;
  t.is(other.model.version, '1.0.0');
  t.is(other.assignment.selector, 'default');
});

test('a group without its own assignment falls through to default', (t) => {
  const c = catalog({ models: [V1], assignments: [assign('default', 'kws', '1.0.0')], groups: { lab: [DEV_A] } });
  t.is(c.resolveDevice(DEV_A)!.assignment.selector, 'default');
});

test('an upstream device assignment beats a local default: precedence is per selector', (t) => {
  const c = catalog({ models: [V1], assignments: [assign('default', 'kws', '1.0.0')] }, { models: [V2], assignments: [assign(DEV_A, 'kws', '2.0.0')] });
  t.is(c.resolveDevice(DEV_A)!.model.version, '2.0.0');
  t.is(c.resolveDevice(DEV_B)!.model.version, '1.0.0');
});

test('a device with nothing assigned, or assigned a missing model, resolves to nothing', (t) => {
  t.is(catalog({ models: [V1] }).resolveDevice(DEV_A), undefined);
  t.is(catalog({ models: [V1], assignments: [assign('default', 'kws', '9.9.9')] }).resolveDevice(DEV_A), undefined);
  t.is(catalog({ assignments: [assign('default', 'other', 'latest')] }).resolveDevice(DEV_A), undefined);
});

test('latest is the version with the newest createdAt, whatever the version text or layer', (t) => {
  const newestButSmall = model('kws', '0.1.0', '2026-11-30T00:00:00Z');
  const c = catalog({ models: [V2, newestButSmall], assignments: [assign('default', 'kws', 'latest')] }, { models: [V3, V1] });
  t.deepEqual(c.versionsOf('kws').map((m) => m.version), ['0.1.0', '3.0.0', '2.0.0', '1.0.0']);
  t.is(c.resolveRef({ model: 'kws', version: 'latest' })!.version, '0.1.0');
  t.is(c.resolveDevice(DEV_A)!.model.version, '0.1.0');
  t.is(c.resolveRef({ model: 'kws', version: '2.0.0' })!.version, '2.0.0');
  t.is(c.resolveRef({ model: 'nothing', version: 'latest' }), undefined);
});

test('latest breaks a createdAt tie by the higher version, compared numerically', (t) => {
  const at = '2026-11-24T00:00:00Z';
  const c = catalog({ models: [model('kws', '1.9', at), model('kws', '1.10', at), model('kws', '1.2', at)] });
  t.is(c.resolveRef({ model: 'kws', version: 'latest' })!.version, '1.10');
});

test('selectorsUsing names the selectors whose assignment resolves to the model: exact, latest and rollout previous', (t) => {
  const other = model('vision', '1.0.0', '2026-11-01T00:00:00Z');
  const c = catalog({
    models: [V1, V2, V3, other],
    assignments: [
      assign(DEV_A, 'kws', '2.0.0'),
      assign('group:lab', 'kws', 'latest'),
      assign('default', 'kws', '3.0.0', { percent: 10, previous: { model: 'kws', version: '1.0.0' } }),
      assign(DEV_B, 'vision', '1.0.0'),
    ],
  });
  t.deepEqual(c.selectorsUsing('kws', '2.0.0'), [DEV_A]);
  t.deepEqual(c.selectorsUsing('kws', '3.0.0').sort(), ['default', 'group:lab']);
  t.deepEqual(c.selectorsUsing('kws', '1.0.0'), ['default']);
  t.deepEqual(c.selectorsUsing('vision', '1.0.0'), [DEV_B]);
  t.deepEqual(c.selectorsUsing('kws', '9.0.0'), []);
});

test('selectorsUsing follows latest to the newest version only', (t) => {
  const c = catalog({ models: [V1, V2], assignments: [assign('default', 'kws', 'latest')] });
  t.deepEqual(c.selectorsUsing('kws', '2.0.0'), ['default']);
  t.deepEqual(c.selectorsUsing('kws', '1.0.0'), []);
});

test('the revision is equal for equal content, whatever the order or the layer objects', (t) => {
  const a = catalog({ models: [V1, V2], assignments: [assign('default', 'kws', '1.0.0'), assign(DEV_A, 'kws', '2.0.0')], groups: { lab: [DEV_A, DEV_B] } });
  const b = catalog({ models: [V2, V1], assignments: [assign(DEV_A, 'kws', '2.0.0'), assign('default', 'kws', '1.0.0')], groups: { lab: [DEV_B, DEV_A] } });
  t.regex(a.revision, /^[0-9a-f]{16}$/);
  t.is(a.revision, b.revision);
  // updatedAt is bookkeeping, not content a device sees.
  const c = catalog({ models: [V1, V2], assignments: [{ ...assign('default', 'kws', '1.0.0'), updatedAt: '2030-01-01T00:00:00Z' }, assign(DEV_A, 'kws', '2.0.0')], groups: { lab: [DEV_A, DEV_B] } });
  t.is(c.revision, a.revision);
});

test('the revision does not depend on the key order of a rollout record (JSON from the API, a manifest or LevelDB)', (t) => {
  const rollout = { percent: 10, previous: { model: 'kws', version: '1.0.0' } };
  const reordered = JSON.parse('{"previous":{"version":"1.0.0","model":"kws"},"percent":10}') as Rollout;
  t.deepEqual(reordered, rollout);
  t.is(
    catalog({ models: [V1, V2], assignments: [assign('default', 'kws', '2.0.0', rollout)] }).revision,
    catalog({ models: [V1, V2], assignments: [assign('default', 'kws', '2.0.0', reordered)] }).revision,
  );
});

test('the revision changes whenever a model, an assignment, a rollout or a group changes', (t) => {
  const base = { models: [V1, V2], assignments: [assign('default', 'kws', '1.0.0')], groups: { lab: [DEV_A] } };
  const revision = catalog(base).revision;
  const variants: Array<[string, Partial<LayerContent>]> = [
    ['a model added', { ...base, models: [V1, V2, V3] }],
    ['a model removed', { ...base, models: [V1] }],
    ['a model signature', { ...base, models: [V1, { ...V2, signature: 'c2ln', keyId: '0123456789abcdef' }] }],
    ['an assignment version', { ...base, assignments: [assign('default', 'kws', '2.0.0')] }],
    ['an assignment added', { ...base, assignments: [assign('default', 'kws', '1.0.0'), assign(DEV_B, 'kws', '2.0.0')] }],
    ['a rollout', { ...base, assignments: [assign('default', 'kws', '2.0.0', { percent: 10, previous: { model: 'kws', version: '1.0.0' } })] }],
    ['a group member', { ...base, groups: { lab: [DEV_A, DEV_B] } }],
    ['a group renamed', { ...base, groups: { field: [DEV_A] } }],
  ];
  const seen = new Set([revision]);
  for (const [what, content] of variants) {
    const changed = catalog(content).revision;
    t.not(changed, revision, what);
    seen.add(changed);
  }
  t.is(seen.size, variants.length + 1);
  t.not(catalog({ ...base, assignments: [assign('default', 'kws', '2.0.0', { percent: 10, previous: { model: 'kws', version: '1.0.0' } })] }).revision,
    catalog({ ...base, assignments: [assign('default', 'kws', '2.0.0', { percent: 20, previous: { model: 'kws', version: '1.0.0' } })] }).revision, 'rollout percent');
});
