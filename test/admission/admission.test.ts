import { readdir } from 'node:fs/promises';
import path from 'node:path';
import { Readable } from 'node:stream';
import test, { type ExecutionContext } from 'ava';
import { Admission } from '../../daemon/admission/admission.ts';
import type { Candidate, WayIn } from '../../daemon/admission/way-in.ts';
import { Catalog } from '../../daemon/catalog/catalog.ts';
import { systemClock } from '../../daemon/clock.ts';
import { isModelferryError, ModelferryError, type ErrorCode } from '../../daemon/errors.ts';
import { createLogger } from '../../daemon/log.ts';
import { generateKeyPair } from '../../daemon/signing/signature.ts';
import { TrustPolicy } from '../../daemon/signing/trust.ts';
import { BlobStore } from '../../daemon/store/blob-store.ts';
import { Database } from '../../daemon/store/database.ts';
import { DiskSpace } from '../../daemon/store/disk-space.ts';
import { tempDir } from '../helpers/harness.ts';
import { fixture, sha256 } from '../helpers/programs.ts';

// admit() on its own, with ways in written here: the rules run in their order whatever the
// way, a refusal stops the way at that point, and only what passed every rule is entered.

const log = createLogger('silent');
const key = generateKeyPair();

async function admissionParts(t: ExecutionContext, trust = { keys: [] as Array<{ publicKey: string }>, requireSignatures: false }) {
  const dir = await tempDir(t, 'modelferry-admission-');
  const database = new Database(path.join(dir, 'state'), log);
  const blobs = new BlobStore({ local: path.join(dir, 'state', 'blobs'), cache: path.join(dir, 'cache') }, log);
  const catalog = new Catalog(database, blobs, log);
  for (const part of [database, blobs, catalog]) await part.start();
  t.teardown(async () => {
    for (const part of [catalog, blobs, database]) await part.stop();
  });
  const admission = new Admission({ maxBytes: () => 64 * 1024, formats: () => ['executorch'], maxModels: () => 2000 }, {
    catalog, blobs, trust: new TrustPolicy(trust), disk: new DiskSpace({ reserveBytes: () => 0 }), clock: systemClock, log,
  });
  return { admission, blobs, catalog, dir };
}

/** A way in that receives `bytes` into the local folder and records what it was asked. */
function recordingWay(t: ExecutionContext, blobs: BlobStore, bytes: Buffer) {
  const asked: string[] = [];
  const way: WayIn<unknown> = {
    digests: 'claim',
    writing: 'the test was writing',
    plan() {
      asked.push('plan');
      return { dir: blobs.dirOf('local'), bytes: bytes.length, what: 'the test model' };
    },
    async bring({ maxBytes, room }) {
      asked.push('bring');
      return [await blobs.receive(Readable.from([bytes]), maxBytes, room ?? undefined)];
    },
    async enter(admitted) {
      asked.push('enter');
      t.true(admitted.every(({ bytes }) => blobs.isHeld(bytes.sha256)), 'held until the entry is written');
      return admitted.map(({ bytes }) => bytes);
    },
  };
  return { way, asked };
}

const candidate = (fields: Partial<Candidate> = {}): Candidate => ({
  name: 'kws', version: '1', sha256: null, size: null, claim: { signature: null, keyId: null }, ...fields,
});

async function refusedAs(t: ExecutionContext, code: ErrorCode, admitted: Promise<unknown>): Promise<ModelferryError> {
  const error = await t.throwsAsync(admitted);
  t.true(isModelferryError(error), String(error));
  t.is((error as ModelferryError).code, code, (error as Error).message);
  return error as ModelferryError;
}

test('the rules that need no bytes refuse before the way is asked for anything', async (t) => {
  const { admission, blobs } = await admissionParts(t, { keys: [{ publicKey: key.publicKey }], requireSignatures: true });
  const signed = { signature: Buffer.alloc(64).toString('base64'), keyId: key.keyId };
  const cases: Array<[ErrorCode, Candidate]> = [
    ['invalid_name', candidate({ name: 'Bad Name', claim: signed })],
    ['invalid_version', candidate({ version: 'latest', claim: signed })],
    ['body_too_large', candidate({ size: 64 * 1024 + 1, claim: signed })],
    ['signature_required', candidate()],
  ];
  for (const [code, refused] of cases) {
    const recording = recordingWay(t, blobs, fixture('add.pte'));
    await refusedAs(t, code, admission.admit([refused], recording.way));
    t.deepEqual(recording.asked, [], code);
  }
});

test('a refusal on the bytes enters nothing and leaves no blob; in order: format, declared digest, signature', async (t) => {
  const { admission, blobs, catalog, dir } = await admissionParts(t, { keys: [{ publicKey: key.publicKey }], requireSignatures: false });
  const text = Buffer.from('not a program');
  const cases: Array<[ErrorCode, Buffer, Candidate]> = [
    // Not a program and not the declared digest either: the format is named first.
    ['unsupported_format', text, candidate({ sha256: sha256(fixture('mul.pte')) })],
    ['digest_mismatch', fixture('add.pte'), candidate({ sha256: sha256(fixture('mul.pte')) })],
    ['invalid_signature', fixture('add.pte'), candidate({ claim: { signature: Buffer.alloc(64).toString('base64'), keyId: key.keyId } })],
  ];
  for (const [code, bytes, refused] of cases) {
    const recording = recordingWay(t, blobs, bytes);
    await refusedAs(t, code, admission.admit([refused], recording.way));
    t.deepEqual(recording.asked, ['plan', 'bring'], code);
  }
  t.is(catalog.current.models.size, 0);
  t.deepEqual((await readdir(path.join(dir, 'state', 'blobs'))).filter((name) => name !== 'tmp'), []);
  t.deepEqual(await readdir(path.join(dir, 'state', 'blobs', 'tmp')), [], 'the received bytes were discarded');
});

test('a way reports rule refusals as its own; its own errors pass as they are', async (t) => {
  const { admission, blobs } = await admissionParts(t);
  const recording = recordingWay(t, blobs, Buffer.from('not a program'));
  const way: WayIn<unknown> = {
    ...recording.way,
    refusal: (error, refused, stage) => new ModelferryError('manifest_invalid', `${refused.name}@${refused.version} (${stage}): ${error.message}`),
  };
  const before = await refusedAs(t, 'manifest_invalid', admission.admit([candidate({ size: 1 << 20 })], way));
  t.regex(before.message, /^kws@1 \(before bytes\): the artifact is 1048576 bytes/);
  const after = await refusedAs(t, 'manifest_invalid', admission.admit([candidate()], way));
  t.regex(after.message, /^kws@1 \(after bytes\): the body is not an ExecuTorch program/);
  const own = { ...way, plan: () => { throw new ModelferryError('upstream_error', 'the way failed'); } };
  t.is((await refusedAs(t, 'upstream_error', admission.admit([candidate()], own))).message, 'the way failed');
});

test('a way that has nothing to bring ends the admission with its result, claiming no room', async (t) => {
  const { admission, blobs } = await admissionParts(t);
  const recording = recordingWay(t, blobs, fixture('add.pte'));
  const way: WayIn<unknown> = { ...recording.way, plan: () => ({ done: 'nothing new' }), enter: async () => 'entered' };
  t.is(await admission.admit([candidate()], way), 'nothing new');
  t.deepEqual(recording.asked, []);
});

test('what passes every rule is entered with the record admission made of it, the blob held until then', async (t) => {
  const { admission, blobs } = await admissionParts(t);
  const recording = recordingWay(t, blobs, fixture('add.pte'));
  let record: unknown;
  const way: WayIn<unknown> = {
    ...recording.way,
    async enter(admitted) {
      t.true(blobs.isHeld(sha256(fixture('add.pte'))));
      record = admitted[0]!.record;
    },
  };
  await admission.admit([candidate({ sha256: sha256(fixture('add.pte')), size: fixture('add.pte').length, createdAt: '2026-11-24T12:00:00Z' })], way);
  t.like(record, { name: 'kws', version: '1', sha256: sha256(fixture('add.pte')), size: fixture('add.pte').length, format: 'executorch', signature: null, keyId: null, createdAt: '2026-11-24T12:00:00Z' });
  t.false(blobs.isHeld(sha256(fixture('add.pte'))), 'released once entered');
});
