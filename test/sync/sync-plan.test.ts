import test from 'ava';
import type { ModelRecord } from '../../daemon/catalog/types.ts';
import { ModelferryError } from '../../daemon/errors.ts';
import type { Manifest } from '../../daemon/sync/manifest.ts';
import {
  artifactsToFetch, authFor, bytesToFetch, firstValidators, followsChanges, MAX_ROUNDS, missingModels, resent, stalePartials, upstreamLayer,
  type SavedState,
} from '../../daemon/sync/sync-plan.ts';
import { inPool } from '../../daemon/sync/worker-pool.ts';

// What a sync decides, on its own: no store, no disk, no database.

const A = 'a'.repeat(64);
const B = 'b'.repeat(64);
const STORE = new URL('https://store.example/site/manifest.json');

const model = (name: string, version: string, sha256: string, size: number, url = `artifacts/${sha256}`): Manifest['models'][number] => ({
  name, version, sha256, size, url, signature: null, keyId: null, signatureSeq: null, createdAt: '2026-11-24T12:00:00Z',
});

const manifest = (models: Manifest['models'], extra: Partial<Manifest> = {}): Manifest => ({
  format: 'modelferry.manifest/v1', revision: 'r1', generatedAt: '2026-11-24T13:00:00Z', models, assignments: [], groups: {}, ...extra,
});

const saved: SavedState = { url: STORE.href, etag: '"1"', lastModified: null, revision: 'r1', content: 'c1', lastSuccessAt: '2026-11-24T13:00:00Z' };

test('the first manifest request is conditional only while every blob of the upstream layer is here at its size', (t) => {
  const layer = [{ sha256: A, size: 10 }, { sha256: B, size: 20 }] as ModelRecord[];
  t.is(firstValidators(saved, layer, (sha) => ({ [A]: 10, [B]: 20 })[sha]), saved);
  t.is(firstValidators(saved, layer, (sha) => ({ [A]: 10 })[sha]), undefined, 'a blob is gone (the cache was cleaned)');
  t.is(firstValidators(saved, layer, (sha) => ({ [A]: 10, [B]: 19 })[sha]), undefined, 'a blob of the wrong size');
  t.is(firstValidators(undefined, layer, () => 10), undefined, 'nothing saved for this URL');
});

test('models are missing when their blob is absent or of another size', (t) => {
  const models = [model('kws', '1', A, 10), model('kws', '2', B, 20)];
  t.deepEqual(missingModels(manifest(models), (sha) => ({ [A]: 10, [B]: 21 })[sha]), [models[1]]);
});

test('the same content sent again with nothing missing is nothing to apply; new validators are remembered', (t) => {
  t.deepEqual(resent(saved, 'c1', 0, { etag: '"1"', lastModified: null }), { remember: null });
  t.deepEqual(resent(saved, 'c1', 0, { etag: '"2"', lastModified: null }), { remember: { ...saved, etag: '"2"' } });
  t.is(resent(saved, 'c2', 0, { etag: '"1"', lastModified: null }), null, 'other content');
  t.is(resent(saved, 'c1', 1, { etag: '"1"', lastModified: null }), null, 'a blob to fetch again');
  t.is(resent(undefined, 'c1', 0, { etag: '"1"', lastModified: null }), null, 'never synced');
});

test('a changed manifest is followed for MAX_ROUNDS rounds, and only from a store that sends validators', (t) => {
  t.true(followsChanges(1, { etag: '"1"', lastModified: null }));
  t.true(followsChanges(1, { etag: null, lastModified: 'Sun, 01 Nov 2026 00:00:00 GMT' }));
  t.false(followsChanges(1, { etag: null, lastModified: null }));
  t.false(followsChanges(MAX_ROUNDS, { etag: '"1"', lastModified: null }));
});

test('one download per blob, at its URL resolved against the manifest; a URL that cannot be fetched is manifest_invalid naming the model', (t) => {
  const queue = artifactsToFetch([model('kws', '1', A, 10), model('kws', '2', A, 10), model('asr', '1', B, 20, 'https://cdn.example/b')], STORE);
  t.deepEqual(queue.map((blob) => [blob.sha256, blob.size, blob.url.href]), [
    [A, 10, `https://store.example/site/artifacts/${A}`],
    [B, 20, 'https://cdn.example/b'],
  ]);
  for (const [url, message] of [['http://[bad', /kws@3 has an invalid url/], ['file:///etc/passwd', /kws@3 has a url that is neither http\(s\) nor in the manifest's own bucket: file:/]] as const) {
    const error = t.throws(() => artifactsToFetch([model('kws', '3', B, 20, url)], STORE), { instanceOf: ModelferryError });
    t.is(error?.code, 'manifest_invalid');
    t.regex(error!.message, message);
  }
});

test('the bytes to claim are what partial downloads do not hold yet', (t) => {
  const queue = artifactsToFetch([model('kws', '1', A, 100), model('kws', '2', B, 50)], STORE);
  t.is(bytesToFetch(queue, [0, 0]), 150);
  t.is(bytesToFetch(queue, [40, 50]), 60);
});

test('the store token goes to the manifest origin only, never to a CDN it points at', (t) => {
  t.deepEqual(authFor(new URL('https://store.example/site/artifacts/x'), STORE, 'secret-token-0123456789'), { Authorization: 'Bearer secret-token-0123456789' });
  t.deepEqual(authFor(new URL('https://cdn.example/x'), STORE, 'secret-token-0123456789'), {});
  t.deepEqual(authFor(STORE, STORE, null), {});
});

test('partial downloads of blobs the manifest no longer names are stale', (t) => {
  t.deepEqual(stalePartials([`${A}.part`, `${B}.part`, 'other'], [model('kws', '1', A, 10)]), [`${B}.part`, 'other']);
});

test('the upstream layer takes the admitted records, the manifest assignments as of its date, and its groups sorted without repeats', (t) => {
  const records = [{ name: 'kws', version: '1', sha256: A } as ModelRecord];
  const layer = upstreamLayer(manifest([model('kws', '1', A, 10)], {
    assignments: [{ selector: 'default', model: 'kws', version: '1' }, { selector: 'group:lab', model: 'kws', version: 'latest', rollout: { percent: 10, previous: { model: 'kws', version: '1' } } }],
    groups: { lab: ['02:00:00:00:00:02', '02:00:00:00:00:01', '02:00:00:00:00:02'] },
  }), records);
  t.is(layer.models, records);
  t.deepEqual(layer.assignments, [
    { selector: 'default', model: 'kws', version: '1', rollout: null, updatedAt: '2026-11-24T13:00:00Z' },
    { selector: 'group:lab', model: 'kws', version: 'latest', rollout: { percent: 10, previous: { model: 'kws', version: '1' } }, updatedAt: '2026-11-24T13:00:00Z' },
  ]);
  t.deepEqual(layer.groups, { lab: ['02:00:00:00:00:01', '02:00:00:00:00:02'] });
});

test('the worker pool runs at most its concurrency at once, starts nothing after a failure, and throws it once the others are done', async (t) => {
  let running = 0;
  let most = 0;
  const started: number[] = [];
  const finished: number[] = [];
  const work = async (item: number) => {
    started.push(item);
    running++;
    most = Math.max(most, running);
    await new Promise((resolve) => setImmediate(resolve));
    running--;
    if (item === 3) throw new Error('item 3 failed');
    finished.push(item);
  };
  await t.throwsAsync(inPool([1, 2, 3, 4, 5, 6], 2, work), { message: 'item 3 failed' });
  t.is(most, 2);
  t.false(started.includes(5), 'nothing new after the failure');
  t.is(running, 0, 'the one under way finished first');
  t.is(await inPool([1, 2, 4], 2, work), 3);
});
