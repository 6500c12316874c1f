import { createPublicKey, verify } from 'node:crypto';
import { readdir, readFile, stat, writeFile } from 'node:fs/promises';
import path from 'node:path';
import test from 'ava';
import { isModelferryError } from '../../daemon/errors.ts';
import { generateKeyPair } from '../../daemon/signing/signature.ts';
import { parseManifest } from '../../daemon/sync/manifest.ts';
import { publish } from '../../daemon/publish/publish.ts';
import { signModel } from '../helpers/api.ts';
import { runCli } from '../helpers/daemon-process.ts';
import { fixture, fixturePath, makeProgram, sha256 } from '../helpers/programs.ts';
import { publishBytes, storeDir } from '../sync/sync-helpers.ts';

// `modelferry publish` (docs/central-store.md "Publishing a store"): a static store folder
// that any HTTP server can serve, written so that a reader never sees a manifest naming a
// missing artifact, with the checks a push makes.

async function manifestOf(store: string) {
  return parseManifest(JSON.parse(await readFile(path.join(store, 'manifest.json'), 'utf8')));
}

async function refusal(t: import('ava').ExecutionContext, promise: Promise<unknown>, code: string): Promise<void> {
  const error = await t.throwsAsync(promise);
  t.true(isModelferryError(error), String(error));
  t.is((error as { code?: string }).code, code, (error as Error).message);
}

test('the CLI writes artifacts/<sha256> and a manifest that validates, with the model, its signature and the assignment', async (t) => {
  const store = await storeDir(t);
  const key = path.join(path.dirname(store), 'signing.key');
  const pair = generateKeyPair();
  await writeFile(key, pair.privateKeyPem);
  const result = await runCli(['publish', store, fixturePath('add.pte'), '--name', 'kws', '--version', '2026.11.24-3', '--assign', 'AA-BB-CC-DD-EE-01', '--sign-key', key]);
  t.is(result.code, 0, result.stderr);
  t.like(JSON.parse(result.stdout), { created: true, manifestChanged: true, name: 'kws', version: '2026.11.24-3', sha256: sha256(fixture('add.pte')), assigned: 'aa:bb:cc:dd:ee:01' });
  t.deepEqual(await readFile(path.join(store, 'artifacts', sha256(fixture('add.pte')))), fixture('add.pte'));
  const manifest = await manifestOf(store);
  t.is(manifest.models.length, 1);
  t.like(manifest.models[0], { name: 'kws', version: '2026.11.24-3', size: 1072, url: `artifacts/${sha256(fixture('add.pte'))}`, keyId: pair.keyId });
  t.deepEqual(manifest.assignments, [{ selector: 'aa:bb:cc:dd:ee:01', model: 'kws', version: '2026.11.24-3' }]);
  t.deepEqual((await readdir(store)).sort(), ['artifacts', 'manifest.json'], 'no lock or temporary file left');
  t.is((await stat(path.join(store, 'manifest.json'))).mode & 0o777, 0o644, 'readable by a web server');

  const again = await runCli(['publish', store, fixturePath('mul.pte'), '--name', 'kws', '--version', '2026.11.24-3']);
  t.is(again.code, 1);
  t.regex(again.stderr, /version_conflict/);
});

test('publish --sign-key signs v2 over --seq (else the time in milliseconds) and writes signatureSeq as a string; --seq without a signature writes nothing', async (t) => {
  const store = await storeDir(t);
  const dir = path.dirname(store);
  const key = path.join(dir, 'signing.key');
  const pair = generateKeyPair();
  await writeFile(key, pair.privateKeyPem);
  const result = await runCli(['publish', store, fixturePath('add.pte'), '--name', 'kws', '--version', '1', '--sign-key', key, '--seq', '9007199254740993']);
  t.is(result.code, 0, result.stderr);
  const text = await readFile(path.join(store, 'manifest.json'), 'utf8');
  t.regex(text, /"signatureSeq": "9007199254740993"/);
  const [model] = (await manifestOf(store)).models;
  const message = Buffer.from(`modelferry-v2:kws:1:${sha256(fixture('add.pte'))}:1072:9007199254740993`);
  t.true(verify(null, message, createPublicKey({ key: { kty: 'OKP', crv: 'Ed25519', x: Buffer.from(pair.publicKey, 'base64').toString('base64url') }, format: 'jwk' }), Buffer.from(model!.signature!, 'base64')));

  const before = Date.now();
  t.is((await runCli(['publish', store, fixturePath('mul.pte'), '--name', 'kws', '--version', '2', '--sign-key', key])).code, 0);
  const timed = (await manifestOf(store)).models.find((m) => m.version === '2')!;
  t.true(Number(timed.signatureSeq) >= before && Number(timed.signatureSeq) <= Date.now());

  const alone = await runCli(['publish', store, fixturePath('mul.pte'), '--name', 'kws', '--version', '3', '--seq', '5']);
  t.is(alone.code, 2);
  t.regex(alone.stderr, /--seq is the sequence of a signature/);
  t.is((await manifestOf(store)).models.length, 2);
});

test('publishing the same bytes again is idempotent and leaves manifest.json untouched (its ETag stays)', async (t) => {
  const store = await storeDir(t);
  const first = await publishBytes(store, 'kws', '1', fixture('add.pte'), { assign: 'default' });
  const before = await readFile(path.join(store, 'manifest.json'));
  const { mtimeMs } = await stat(path.join(store, 'manifest.json'));
  const again = await publishBytes(store, 'kws', '1', fixture('add.pte'), { assign: 'default' });
  t.like(again, { created: false, manifestChanged: false, revision: first.revision });
  t.deepEqual(await readFile(path.join(store, 'manifest.json')), before);
  t.is((await stat(path.join(store, 'manifest.json'))).mtimeMs, mtimeMs);
});

test('a version already published with other bytes is version_conflict and changes nothing', async (t) => {
  const store = await storeDir(t);
  await publishBytes(store, 'kws', '1', fixture('add.pte'));
  const before = await readFile(path.join(store, 'manifest.json'));
  await refusal(t, publishBytes(store, 'kws', '1', fixture('mul.pte')), 'version_conflict');
  t.deepEqual(await readFile(path.join(store, 'manifest.json')), before);
  t.deepEqual(await readdir(path.join(store, 'artifacts')), [sha256(fixture('add.pte'))]);
});

test('names, versions and selectors follow the push rules; other bytes than a program are unsupported_format; nothing is written', async (t) => {
  const store = await storeDir(t);
  await refusal(t, publishBytes(store, 'KWS', '1', fixture('add.pte')), 'invalid_name');
  await refusal(t, publishBytes(store, 'kws', 'latest', fixture('add.pte')), 'invalid_version');
  await refusal(t, publishBytes(store, 'kws', '1', fixture('add.pte'), { assign: 'group:' }), 'invalid_selector');
  await refusal(t, publishBytes(store, 'kws', '1', Buffer.from('not a program at all')), 'unsupported_format');
  await refusal(t, publishBytes(store, 'kws', '1', fixture('add.pte'), { signature: { signature: 'short', keyId: '0123456789abcdef' } }), 'invalid_signature');
  t.deepEqual(await readdir(store), [], 'nothing written');
});

test('a signature made elsewhere is carried into the manifest as given', async (t) => {
  const store = await storeDir(t);
  const signed = signModel('kws', '1', fixture('add.pte'));
  await publishBytes(store, 'kws', '1', fixture('add.pte'), { signature: signed });
  t.like((await manifestOf(store)).models[0], signed);
});

test('a store whose manifest.json is not valid is refused, not overwritten', async (t) => {
  const store = await storeDir(t);
  await writeFile(path.join(store, 'manifest.json'), '{"format":"something else"}');
  await refusal(t, publishBytes(store, 'kws', '1', fixture('add.pte')), 'manifest_invalid');
  t.is(await readFile(path.join(store, 'manifest.json'), 'utf8'), '{"format":"something else"}');
});

test('concurrent publishes to one store all end up in it, and a reader never sees a manifest naming a missing artifact', async (t) => {
  const store = await storeDir(t);
  const programs = Array.from({ length: 12 }, () => makeProgram(64 * 1024));
  let reading = true;
  let reads = 0;
  const reader = (async () => {
    while (reading) {
      const text = await readFile(path.join(store, 'manifest.json'), 'utf8').catch(() => undefined);
      if (text !== undefined) {
        reads++;
        const present = new Set(await readdir(path.join(store, 'artifacts')));
        for (const model of (JSON.parse(text) as { models: Array<{ sha256: string }> }).models) {
          if (!present.has(model.sha256)) throw new Error(`the manifest names ${model.sha256}, which is not in artifacts/`);
        }
      }
      await new Promise((resolve) => setImmediate(resolve));
    }
  })();
  await Promise.all(programs.map((bytes, i) => publishBytes(store, 'kws', String(i), bytes, { assign: 'default' })));
  reading = false;
  await reader;
  t.true(reads > 0);
  const manifest = await manifestOf(store);
  t.deepEqual(manifest.models.map((m) => m.sha256).sort(), programs.map(sha256).sort());
  t.is(manifest.assignments.length, 1);
  t.deepEqual((await readdir(path.join(store, 'artifacts'))).sort(), programs.map(sha256).sort(), 'no temporary files left');
});
