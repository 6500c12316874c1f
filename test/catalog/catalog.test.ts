import path from 'node:path';
import { Readable } from 'node:stream';
import test, { type ExecutionContext } from 'ava';
import { Catalog } from '../../daemon/catalog/catalog.ts';
import type { EffectiveCatalog } from '../../daemon/catalog/effective-catalog.ts';
import type { Assignment, LayerContent, ModelRecord, Rollout } from '../../daemon/catalog/types.ts';
import { ModelferryError, type ErrorCode } from '../../daemon/errors.ts';
import { createLogger } from '../../daemon/log.ts';
import { BlobStore } from '../../daemon/store/blob-store.ts';
import { Database } from '../../daemon/store/database.ts';
import { tempDir } from '../helpers/harness.ts';
import { makeProgram, sha256 } from '../helpers/programs.ts';

// The catalog on a real LevelDB database and blob folder (docs/design.md
// "Layers and garbage collection", "Storage and crash safety"): every change persists, a
// refused change changes nothing, the upstream layer is replaced whole.

const log = createLogger('silent');
const DEV_A = 'aa:bb:cc:dd:ee:01';
const DEV_B = 'aa:bb:cc:dd:ee:02';

interface Handle {
  dir: string;
  db: Database;
  blobs: BlobStore;
  catalog: Catalog;
  close(): Promise<void>;
}

/** Opens the database, blob store and catalog of `dir`, as the daemon does at start. */
async function open(t: ExecutionContext, dir: string): Promise<Handle> {
  const db = new Database(path.join(dir, 'state'), log);
  await db.start();
  const blobs = new BlobStore({ local: path.join(dir, 'state', 'blobs'), cache: path.join(dir, 'cache') }, log);
  await blobs.start();
  const catalog = new Catalog(db, blobs, log);
  await catalog.start();
  let closed = false;
  const close = async () => {
    if (closed) return;
    closed = true;
    await catalog.stop();
    await blobs.stop();
    await db.stop();
  };
  // Registered after tempDir's teardown, so it runs first (ava runs teardowns in reverse).
  t.teardown(close);
  return { dir, db, blobs, catalog, close };
}

async function fresh(t: ExecutionContext): Promise<Handle> {
  return open(t, await tempDir(t, 'modelferry-catalog-'));
}

async function reopen(t: ExecutionContext, handle: Handle): Promise<Handle> {
  await handle.close();
  return open(t, handle.dir);
}

let clock = Date.parse('2026-11-01T00:00:00Z');
function nextCreatedAt(): string {
  clock += 60_000;
  return new Date(clock).toISOString();
}

/** Pushes bytes as the PUT route does: receive into a pending blob, commit it inside addModel. */
async function push(handle: Handle, name: string, version: string, bytes: Buffer = makeProgram(256)) {
  const pending = await handle.blobs.receive(Readable.from([bytes]), 1 << 20);
  const record: ModelRecord = {
    name, version, sha256: pending.sha256, size: pending.size, format: 'executorch', signature: null, keyId: null, createdAt: nextCreatedAt(),
  };
  try {
    return await handle.catalog.addModel(record, () => pending.commit());
  } catch (error) {
    await pending.discard();
    throw error;
  }
}

function assignment(selector: string, model: string, version: string, rollout: Rollout | null = null): Assignment {
  return { selector, model, version, rollout, updatedAt: '2026-11-24T12:00:00Z' };
}

function upstreamModel(name: string, version: string, tag = ''): ModelRecord {
  const bytes = Buffer.from(`${name}@${version}${tag}`);
  return { name, version, sha256: sha256(bytes), size: bytes.length, format: 'executorch', signature: null, keyId: null, createdAt: nextCreatedAt() };
}

async function refusedAs(t: ExecutionContext, code: ErrorCode, promise: Promise<unknown>): Promise<ModelferryError | undefined> {
  const error = await t.throwsAsync(promise, { instanceOf: ModelferryError });
  t.is(error?.code, code);
  return error;
}

/** Everything the catalog keeps, in a comparable form. */
function snapshot(catalog: Catalog) {
  const sortLayer = (content: Readonly<LayerContent>) => ({
    models: [...content.models].sort((a, b) => `${a.name}@${a.version}`.localeCompare(`${b.name}@${b.version}`)),
    assignments: [...content.assignments].sort((a, b) => a.selector.localeCompare(b.selector)),
    groups: Object.fromEntries(Object.entries(content.groups).sort(([a], [b]) => a.localeCompare(b))),
  });
  return { local: sortLayer(catalog.layer('local')), upstream: sortLayer(catalog.layer('upstream')), revision: catalog.current.revision };
}

test('models, assignments and groups persist across stop and start', async (t) => {
  let h = await fresh(t);
  const bytes = makeProgram(512);
  const { created, record } = await push(h, 'kws', '1.0.0', bytes);
  t.true(created);
  t.is(record.sha256, sha256(bytes));
  await h.catalog.setAssignment(assignment('default', 'kws', 'latest'));
  await h.catalog.setAssignment(assignment('group:lab', 'kws', '1.0.0'));
  await h.catalog.setGroup('lab', [DEV_A, DEV_B]);
  const before = snapshot(h.catalog);

  h = await reopen(t, h);
  t.deepEqual(snapshot(h.catalog), before);
  t.deepEqual(h.catalog.layer('local').models, [record]);
  t.is(h.catalog.current.resolveDevice(DEV_A)!.model.sha256, sha256(bytes));
  t.is(h.catalog.current.resolveDevice(DEV_A)!.assignment.selector, 'group:lab');
  t.is(h.blobs.size(record.sha256), 512);
});

test('pushing the same name, version and bytes again is idempotent and changes nothing', async (t) => {
  const h = await fresh(t);
  const bytes = makeProgram(300);
  const first = await push(h, 'kws', '1.0.0', bytes);
  const revision = h.catalog.current.revision;
  let fired = 0;
  h.catalog.onChange(() => fired++);
  const again = await push(h, 'kws', '1.0.0', bytes);
  t.false(again.created);
  t.deepEqual(again.record, first.record);
  t.is(h.catalog.current.revision, revision);
  t.is(fired, 0);
  t.is(h.catalog.layer('local').models.length, 1);
});

test('the same version with other bytes is a version_conflict and the stored model stays', async (t) => {
  let h = await fresh(t);
  const original = makeProgram(300);
  await push(h, 'kws', '1.0.0', original);
  const before = snapshot(h.catalog);
  const other = makeProgram(300);
  const error = await refusedAs(t, 'version_conflict', push(h, 'kws', '1.0.0', other));
  t.true(error?.message.includes(sha256(original)));
  t.is(h.blobs.size(sha256(other)), undefined);
  t.deepEqual(snapshot(h.catalog), before);
  h = await reopen(t, h);
  t.deepEqual(snapshot(h.catalog), before);
  t.is(h.catalog.current.models.get('kws@1.0.0')!.sha256, sha256(original));
});

test('a version the upstream layer holds with other bytes is a version_conflict for a local push', async (t) => {
  const h = await fresh(t);
  await h.catalog.replaceUpstream({ models: [upstreamModel('kws', '1.0.0')], assignments: [], groups: {} });
  await refusedAs(t, 'version_conflict', push(h, 'kws', '1.0.0'));
  t.deepEqual(h.catalog.layer('local').models, []);
});

test('concurrent pushes of one version with different bytes: exactly one is stored, the other is a version_conflict', async (t) => {
  const h = await fresh(t);
  const results = await Promise.allSettled([push(h, 'kws', '1.0.0'), push(h, 'kws', '1.0.0'), push(h, 'kws', '1.0.0')]);
  t.is(results.filter((r) => r.status === 'fulfilled').length, 1);
  for (const r of results) if (r.status === 'rejected') t.is((r.reason as ModelferryError).code, 'version_conflict');
  t.is(h.catalog.layer('local').models.length, 1);
});

test('a push whose blob cannot be written stores no catalog entry', async (t) => {
  let h = await fresh(t);
  const record: ModelRecord = { name: 'kws', version: '1.0.0', sha256: 'a'.repeat(64), size: 10, format: 'executorch', signature: null, keyId: null, createdAt: nextCreatedAt() };
  await t.throwsAsync(h.catalog.addModel(record, async () => { throw new Error('disk full'); }), { message: 'disk full' });
  t.is(h.catalog.current.models.size, 0);
  h = await reopen(t, h);
  t.is(h.catalog.current.models.size, 0);
});

test('a model is in_use while an assignment resolves to it: exact, latest or rollout previous', async (t) => {
  let h = await fresh(t);
  await push(h, 'kws', '1.0.0');
  await push(h, 'kws', '2.0.0');
  await push(h, 'kws', '3.0.0');
  await h.catalog.setAssignment(assignment(DEV_A, 'kws', '1.0.0'));
  await h.catalog.setAssignment(assignment('default', 'kws', 'latest', { percent: 20, previous: { model: 'kws', version: '2.0.0' } }));
  const before = snapshot(h.catalog);

  const exact = await refusedAs(t, 'in_use', h.catalog.deleteModel('kws', '1.0.0'));
  t.is(exact?.message, `kws@1.0.0 is assigned to ${DEV_A}; change those assignments first`);
  await refusedAs(t, 'in_use', h.catalog.deleteModel('kws', '2.0.0'));
  await refusedAs(t, 'in_use', h.catalog.deleteModel('kws', '3.0.0'));
  h = await reopen(t, h);
  t.deepEqual(snapshot(h.catalog), before);

  await h.catalog.deleteAssignment(DEV_A);
  await h.catalog.deleteModel('kws', '1.0.0');
  h = await reopen(t, h);
  t.deepEqual(h.catalog.layer('local').models.map((m) => m.version).sort(), ['2.0.0', '3.0.0']);
  t.false(h.catalog.current.models.has('kws@1.0.0'));
});

test('deleting a model the catalog does not hold is model_not_found', async (t) => {
  const h = await fresh(t);
  await push(h, 'kws', '1.0.0');
  await refusedAs(t, 'model_not_found', h.catalog.deleteModel('kws', '9.9.9'));
  await refusedAs(t, 'model_not_found', h.catalog.deleteModel('other', '1.0.0'));
  t.is(h.catalog.layer('local').models.length, 1);
});

test('deleting a model that came from the upstream store is upstream_owned', async (t) => {
  let h = await fresh(t);
  await h.catalog.replaceUpstream({ models: [upstreamModel('kws', '1.0.0')], assignments: [], groups: {} });
  const error = await refusedAs(t, 'upstream_owned', h.catalog.deleteModel('kws', '1.0.0'));
  t.is(error?.message, 'kws@1.0.0 comes from the upstream store; remove it there');
  h = await reopen(t, h);
  t.true(h.catalog.current.models.has('kws@1.0.0'));
});

test('deleting an assignment or a group that came from the upstream store is upstream_owned, and both stay', async (t) => {
  let h = await fresh(t);
  await h.catalog.replaceUpstream({
    models: [upstreamModel('kws', '1.0.0')],
    assignments: [assignment('default', 'kws', '1.0.0')],
    groups: { lab: [DEV_A] },
  });
  await refusedAs(t, 'upstream_owned', h.catalog.deleteAssignment('default'));
  await refusedAs(t, 'upstream_owned', h.catalog.deleteGroup('lab'));
  await refusedAs(t, 'assignment_not_found', h.catalog.deleteAssignment('group:lab'));
  await refusedAs(t, 'group_not_found', h.catalog.deleteGroup('field'));
  h = await reopen(t, h);
  t.true(h.catalog.current.assignments.has('default'));
  t.deepEqual(h.catalog.current.groups.get('lab')?.members, [DEV_A]);
});

test('an assignment to a missing model or version is model_not_found and is not stored', async (t) => {
  let h = await fresh(t);
  await push(h, 'kws', '1.0.0');
  const before = snapshot(h.catalog);
  const noModel = await refusedAs(t, 'model_not_found', h.catalog.setAssignment(assignment('default', 'vision', '1.0.0')));
  t.is(noModel?.message, 'no model named vision in the catalog');
  await refusedAs(t, 'model_not_found', h.catalog.setAssignment(assignment('default', 'vision', 'latest')));
  const noVersion = await refusedAs(t, 'model_not_found', h.catalog.setAssignment(assignment('default', 'kws', '2.0.0')));
  t.is(noVersion?.message, 'no version 2.0.0 of kws in the catalog');
  await refusedAs(t, 'model_not_found', h.catalog.setAssignment(assignment('default', 'kws', '1.0.0', { percent: 10, previous: { model: 'kws', version: '0.9.0' } })));
  h = await reopen(t, h);
  t.deepEqual(snapshot(h.catalog), before);
  t.deepEqual(h.catalog.layer('local').assignments, []);
});

test('an assignment may name a model of the upstream layer', async (t) => {
  let h = await fresh(t);
  await h.catalog.replaceUpstream({ models: [upstreamModel('kws', '1.0.0')], assignments: [], groups: {} });
  await h.catalog.setAssignment(assignment(DEV_A, 'kws', '1.0.0'));
  h = await reopen(t, h);
  t.is(h.catalog.current.resolveDevice(DEV_A)!.model.layer, 'upstream');
  t.is(h.catalog.current.resolveDevice(DEV_A)!.assignment.layer, 'local');
});

test('setting an assignment again replaces it', async (t) => {
  let h = await fresh(t);
  await push(h, 'kws', '1.0.0');
  await push(h, 'kws', '2.0.0');
  await h.catalog.setAssignment(assignment('default', 'kws', '1.0.0'));
  await h.catalog.setAssignment(assignment('default', 'kws', '2.0.0'));
  h = await reopen(t, h);
  t.deepEqual(h.catalog.layer('local').assignments, [assignment('default', 'kws', '2.0.0')]);
});

test('deleting an assignment or a group that does not exist is assignment_not_found / group_not_found', async (t) => {
  const h = await fresh(t);
  await refusedAs(t, 'assignment_not_found', h.catalog.deleteAssignment('default'));
  await refusedAs(t, 'group_not_found', h.catalog.deleteGroup('lab'));
});

test('a device already in another group is a group_conflict and neither group changes', async (t) => {
  let h = await fresh(t);
  await h.catalog.setGroup('lab', [DEV_A]);
  const before = snapshot(h.catalog);
  const error = await refusedAs(t, 'group_conflict', h.catalog.setGroup('field', [DEV_B, DEV_A]));
  t.is(error?.message, `${DEV_A} is already in group lab; a device is in at most one group`);
  h = await reopen(t, h);
  t.deepEqual(snapshot(h.catalog), before);
  t.deepEqual(h.catalog.layer('local').groups, { lab: [DEV_A] });
});

test('a group can be rewritten with its own members, and a device moves after leaving its group', async (t) => {
  let h = await fresh(t);
  await h.catalog.setGroup('lab', [DEV_A]);
  await h.catalog.setGroup('lab', [DEV_A, DEV_B]);
  await h.catalog.setGroup('lab', [DEV_B]);
  await h.catalog.setGroup('field', [DEV_A]);
  await h.catalog.deleteGroup('lab');
  h = await reopen(t, h);
  t.deepEqual(h.catalog.layer('local').groups, { field: [DEV_A] });
  t.is(h.catalog.current.groupOf(DEV_A), 'field');
  t.is(h.catalog.current.groupOf(DEV_B), undefined);
});

test('replaceUpstream replaces the whole upstream layer and leaves the local layer alone', async (t) => {
  let h = await fresh(t);
  await push(h, 'local-model', '1.0.0');
  await h.catalog.setGroup('mine', [DEV_B]);
  const first: LayerContent = {
    models: [upstreamModel('kws', '1.0.0'), upstreamModel('kws', '2.0.0')],
    assignments: [assignment('default', 'kws', 'latest'), assignment('group:lab', 'kws', '1.0.0')],
    groups: { lab: [DEV_A] },
  };
  await h.catalog.replaceUpstream(first);
  const local = structuredClone(h.catalog.layer('local'));
  h = await reopen(t, h);
  t.deepEqual(h.catalog.layer('upstream'), first);

  const second: LayerContent = {
    models: [upstreamModel('kws', '2.0.0'), upstreamModel('vision', '1.0.0')],
    assignments: [assignment('group:field', 'vision', '1.0.0')],
    groups: { field: [DEV_A] },
  };
  await h.catalog.replaceUpstream(second);
  h = await reopen(t, h);
  t.deepEqual(h.catalog.layer('upstream'), second);
  t.deepEqual(h.catalog.layer('local'), local);
  t.false(h.catalog.current.models.has('kws@1.0.0'));
  t.false(h.catalog.current.assignments.has('default'));
  t.false(h.catalog.current.groups.has('lab'));
  t.is(h.catalog.current.resolveDevice(DEV_A)!.model.name, 'vision');

  await h.catalog.replaceUpstream({ models: [], assignments: [], groups: {} });
  h = await reopen(t, h);
  t.deepEqual(h.catalog.layer('upstream'), { models: [], assignments: [], groups: {} });
  t.deepEqual(h.catalog.layer('local'), local);
});

test('a replaceUpstream that cannot be written changes neither the database nor what devices see', async (t) => {
  let h = await fresh(t);
  const first: LayerContent = { models: [upstreamModel('kws', '1.0.0')], assignments: [assignment('default', 'kws', '1.0.0')], groups: {} };
  await h.catalog.replaceUpstream(first);
  const before = snapshot(h.catalog);
  await h.db.stop(); // the batch will fail: the database is closed
  await t.throwsAsync(h.catalog.replaceUpstream({ models: [upstreamModel('kws', '2.0.0')], assignments: [assignment('default', 'kws', '2.0.0')], groups: {} }));
  t.deepEqual(snapshot(h.catalog), before);
  h = await reopen(t, h);
  t.deepEqual(snapshot(h.catalog), before);
});

test('a local assignment wins over the upstream one for the same selector until it is deleted', async (t) => {
  let h = await fresh(t);
  await h.catalog.replaceUpstream({ models: [upstreamModel('kws', '1.0.0')], assignments: [assignment('default', 'kws', '1.0.0')], groups: {} });
  await push(h, 'kws', '2.0.0');
  await h.catalog.setAssignment(assignment('default', 'kws', '2.0.0'));
  t.is(h.catalog.current.resolveDevice(DEV_A)!.model.version, '2.0.0');
  await h.catalog.deleteAssignment('default');
  h = await reopen(t, h);
  t.is(h.catalog.current.resolveDevice(DEV_A)!.model.version, '1.0.0');
  t.is(h.catalog.current.resolveDevice(DEV_A)!.assignment.layer, 'upstream');
});

test('onChange listeners get the new catalog with a new revision after each change, and not after a refused one', async (t) => {
  const h = await fresh(t);
  const seen: EffectiveCatalog[] = [];
  const unsubscribe = h.catalog.onChange((catalog) => seen.push(catalog));
  const revisions = [h.catalog.current.revision];

  await push(h, 'kws', '1.0.0');
  await h.catalog.setAssignment(assignment('default', 'kws', '1.0.0'));
  await h.catalog.setGroup('lab', [DEV_A]);
  await h.catalog.replaceUpstream({ models: [upstreamModel('vision', '1.0.0')], assignments: [], groups: {} });
  t.is(seen.length, 4);
  for (const catalog of seen) revisions.push(catalog.revision);
  t.is(new Set(revisions).size, 5);
  t.is(seen.at(-1), h.catalog.current);

  await t.throwsAsync(h.catalog.setAssignment(assignment('default', 'missing', '1.0.0')));
  await t.throwsAsync(h.catalog.deleteModel('kws', '1.0.0'));
  t.is(seen.length, 4);

  unsubscribe();
  await h.catalog.deleteAssignment('default');
  t.is(seen.length, 4);
  t.not(h.catalog.current.revision, revisions.at(-1));
});

test('the same content gives the same revision after a restart', async (t) => {
  let h = await fresh(t);
  await push(h, 'kws', '1.0.0');
  await h.catalog.setAssignment(assignment('default', 'kws', 'latest'));
  const revision = h.catalog.current.revision;
  h = await reopen(t, h);
  t.is(h.catalog.current.revision, revision);
});

test('a second process cannot open the same database', async (t) => {
  const h = await fresh(t);
  const second = new Database(path.join(h.dir, 'state'), log);
  await t.throwsAsync(second.start(), { message: `the database in ${path.join(h.dir, 'state')} (paths.state) is in use by another modelferry process: stop that one, or give this one another state folder (--state-dir)` });
});

test('the cache check hashes each blob once, names every model that shares it, and finds corrupt and missing ones', async (t) => {
  const h = await fresh(t);
  const shared = makeProgram(300);
  await push(h, 'kws', '1.0.0', shared);
  await push(h, 'kws-copy', '1.0.0', shared);
  const corrupt = await push(h, 'vad', '1.0.0');
  const missing = await push(h, 'wake', '1.0.0');
  const { rm, writeFile } = await import('node:fs/promises');
  await writeFile(h.blobs.pathOf(corrupt.record.sha256), 'not what it was');
  await rm(h.blobs.pathOf(missing.record.sha256));

  const results = (await h.catalog.checkCache()).map((r) => ({ ...r, models: [...r.models].sort() }));
  t.deepEqual(results.sort((a, b) => a.models[0]!.localeCompare(b.models[0]!)), [
    { sha256: sha256(shared), models: ['kws-copy@1.0.0', 'kws@1.0.0'], status: 'ok' },
    { sha256: corrupt.record.sha256, models: ['vad@1.0.0'], status: 'corrupt' },
    { sha256: missing.record.sha256, models: ['wake@1.0.0'], status: 'missing' },
  ]);
  t.false(h.blobs.holds(corrupt.record));
});
