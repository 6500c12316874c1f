import { execFile } from 'node:child_process';
import { promisify } from 'node:util';
import test from 'ava';
import { generateKeyPair, signModel } from '../../daemon/signing/signature.ts';
import { blobFiles, expectError, expectUnauthorized, leavesStateUnchanged, push, rawRequest, sendJson, storedState } from '../helpers/api.ts';
import { startGateway } from '../helpers/gateway.ts';
import { ADD_SHA256, fixture, fixturePath, makeProgram, MUL_SHA256, sha256 } from '../helpers/programs.ts';
import { ADMIN_TOKEN, ALL_TOKEN, PUSH_TOKEN, SYNC_TOKEN } from '../helpers/tokens.ts';
import { testNeeding } from '../helpers/requirements.ts';

// PUT /v1/models/{name}/{version} (docs/design.md "Admin and pipeline API", "Signatures",
// "Storage and crash safety") over real HTTP.

const run = promisify(execFile);
const b64 = (hex: string) => Buffer.from(hex, 'hex').toString('base64');

test('a new push answers 201 with the model record and a Location, and stores the blob under its sha256', async (t) => {
  const gw = await startGateway(t);
  const bytes = fixture('add.pte');
  const response = await push(gw, 'kws', '2026.11.24-3', bytes);
  t.is(response.status, 201);
  t.is(response.headers.get('location'), '/v1/models/kws/2026.11.24-3');
  const record = await response.json() as Record<string, unknown>;
  t.like(record, { name: 'kws', version: '2026.11.24-3', sha256: ADD_SHA256, size: bytes.length, format: 'executorch', signature: null, keyId: null });
  t.false(Number.isNaN(Date.parse(record.createdAt as string)));

  const state = await storedState(gw);
  t.deepEqual(state.blobs, [ADD_SHA256]);
  t.deepEqual(state.temp, []);
  const listed = await (await gw.fetch('/v1/models/kws', { token: ADMIN_TOKEN })).json() as { versions: unknown[] };
  t.deepEqual(listed.versions, [{ ...record, layer: 'local', cached: true }]);
  const artifact = await gw.fetch(`/v1/artifacts/${ADD_SHA256}`);
  t.is(artifact.status, 200);
  t.deepEqual(Buffer.from(await artifact.arrayBuffer()), bytes);
});

test('pushing the same bytes to the same name and version again is idempotent: 200 with the stored record', async (t) => {
  const gw = await startGateway(t);
  const bytes = fixture('add.pte');
  const first = await push(gw, 'kws', '1.0', bytes);
  t.is(first.status, 201);
  const record = await first.json();
  await leavesStateUnchanged(t, gw, async () => {
    const again = await push(gw, 'kws', '1.0', bytes);
    t.is(again.status, 200);
    t.is(again.headers.get('location'), '/v1/models/kws/1.0');
    t.deepEqual(await again.json(), record);
  });
});

test('other bytes under a stored name and version are refused with 409 version_conflict and change nothing', async (t) => {
  const gw = await startGateway(t);
  t.is((await push(gw, 'kws', '1.0', fixture('add.pte'))).status, 201);
  await leavesStateUnchanged(t, gw, async () => {
    await expectError(t, await push(gw, 'kws', '1.0', fixture('mul.pte')), 409, 'version_conflict');
  });
  const stored = await (await gw.fetch('/v1/models/kws/1.0', { token: ADMIN_TOKEN })).json() as { sha256: string };
  t.is(stored.sha256, ADD_SHA256);
});

test('the same bytes may be stored under several versions: one blob serves them all', async (t) => {
  const gw = await startGateway(t);
  t.is((await push(gw, 'kws', '1.0', fixture('add.pte'))).status, 201);
  t.is((await push(gw, 'kws', '1.1', fixture('add.pte'))).status, 201);
  const state = await storedState(gw);
  t.deepEqual(state.blobs, [ADD_SHA256]);
  t.is((state.models as { models: unknown[] }).models.length, 2);
});

test('a declared digest that matches the body is accepted, as X-Content-SHA256, Repr-Digest or both', async (t) => {
  const gw = await startGateway(t);
  const bytes = fixture('add.pte');
  const cases: Array<[string, Record<string, string>]> = [
    ['1', { 'X-Content-SHA256': ADD_SHA256 }],
    ['2', { 'Repr-Digest': `sha-256=:${b64(ADD_SHA256)}:` }],
    ['3', { 'X-Content-SHA256': ADD_SHA256, 'Repr-Digest': `sha-256=:${b64(ADD_SHA256)}:` }],
    // RFC 9530: a dictionary; algorithms the gateway does not know are ignored.
    ['4', { 'Repr-Digest': `sha-512=:${Buffer.alloc(64).toString('base64')}:, sha-256=:${b64(ADD_SHA256)}:` }],
  ];
  for (const [version, headers] of cases) {
    const response = await push(gw, 'kws', version, bytes, { headers });
    t.is(response.status, 201, `${JSON.stringify(headers)}: ${await response.clone().text()}`);
    t.is((await response.json() as { sha256: string }).sha256, ADD_SHA256);
  }
});

test('a declared digest that does not match the body is refused with 400 digest_mismatch and nothing is kept', async (t) => {
  const gw = await startGateway(t);
  const bytes = fixture('add.pte');
  const cases: Array<Record<string, string>> = [
    { 'X-Content-SHA256': MUL_SHA256 },
    { 'Repr-Digest': `sha-256=:${b64(MUL_SHA256)}:` },
    // The two headers disagree with each other.
    { 'X-Content-SHA256': ADD_SHA256, 'Repr-Digest': `sha-256=:${b64(MUL_SHA256)}:` },
  ];
  for (const headers of cases) {
    await leavesStateUnchanged(t, gw, async () => {
      await expectError(t, await push(gw, 'kws', '1.0', bytes, { headers }), 400, 'digest_mismatch');
    });
  }
  t.deepEqual((await storedState(gw)).blobs, []);
});

test('a malformed declared digest is refused with 400 invalid_digest', async (t) => {
  const gw = await startGateway(t);
  const bytes = fixture('add.pte');
  const cases: Array<Record<string, string>> = [
    { 'X-Content-SHA256': 'not-a-digest' },
    { 'X-Content-SHA256': ADD_SHA256.slice(0, 63) },
    { 'X-Content-SHA256': `${ADD_SHA256}00` },
    // sha-256 of the wrong length.
    { 'Repr-Digest': `sha-256=:${Buffer.alloc(20).toString('base64')}:` },
    // sha-256 given as hex instead of a structured-field byte sequence.
    { 'Repr-Digest': `sha-256=${ADD_SHA256}` },
    { 'Repr-Digest': `sha-256=:${ADD_SHA256}:` },
  ];
  for (const headers of cases) {
    await leavesStateUnchanged(t, gw, async () => {
      const response = await push(gw, 'kws', '1.0', bytes, { headers });
      t.is(response.status, 400, JSON.stringify(headers));
      await expectError(t, response, 400, 'invalid_digest');
    });
  }
});

test('a body over artifacts.maxBytes by Content-Length is refused with 413 body_too_large before it is stored', async (t) => {
  const gw = await startGateway(t, { 'artifacts.maxBytes': '64 KiB' });
  await leavesStateUnchanged(t, gw, async () => {
    await expectError(t, await push(gw, 'kws', '1.0', makeProgram(64 * 1024 + 1)), 413, 'body_too_large');
  });
  // Exactly the limit is accepted.
  t.is((await push(gw, 'kws', '1.0', makeProgram(64 * 1024))).status, 201);
});

test('a chunked body without Content-Length is cut off at artifacts.maxBytes with 413 and leaves no temporary file', async (t) => {
  const gw = await startGateway(t, { 'artifacts.maxBytes': '64 KiB' });
  const chunk = makeProgram(16 * 1024);
  const stream = (chunks: number) => {
    let sent = 0;
    return new ReadableStream<Uint8Array>({
      pull(controller) {
        if (sent++ < chunks) controller.enqueue(new Uint8Array(chunk));
        else controller.close();
      },
    });
  };
  await leavesStateUnchanged(t, gw, async () => {
    const response = await gw.fetch('/v1/models/kws/1.0', { method: 'PUT', token: PUSH_TOKEN, body: stream(8), duplex: 'half' });
    await expectError(t, response, 413, 'body_too_large');
  });
  // The same streaming upload under the limit is stored: the 413 above was about size.
  const small = await gw.fetch('/v1/models/kws/1.0', { method: 'PUT', token: PUSH_TOKEN, body: stream(1), duplex: 'half' });
  t.is(small.status, 201);
  t.is((await small.json() as { sha256: string }).sha256, sha256(chunk));
});

test('bytes that are not an ExecuTorch program are refused with 415 unsupported_format under the default formats', async (t) => {
  const gw = await startGateway(t);
  const bodies = [
    Buffer.from('#!/bin/sh\necho this is not a model\n'),
    Buffer.alloc(0),
    Buffer.from('1234ETxy5678'),
  ];
  for (const body of bodies) {
    await leavesStateUnchanged(t, gw, async () => {
      await expectError(t, await push(gw, 'kws', '1.0', body), 415, 'unsupported_format');
    });
  }
});

test('with artifacts.formats including any, bytes that are not ExecuTorch are stored with format unknown', async (t) => {
  const gw = await startGateway(t, { 'artifacts.formats': '[executorch, any]' });
  const body = Buffer.from('a tflite model, say');
  const response = await push(gw, 'blob', '1.0', body);
  t.is(response.status, 201);
  t.like(await response.json(), { name: 'blob', version: '1.0', sha256: sha256(body), size: body.length, format: 'unknown' });
  t.like(await (await push(gw, 'kws', '1.0', fixture('add.pte'))).json(), { format: 'executorch' });
});

test('an eh00 extended header whose sizes do not fit the file is refused with 415 unsupported_format', async (t) => {
  const gw = await startGateway(t);
  const bad = [
    makeProgram(1024, { programSize: 4096n, segmentBase: 0n, segmentSize: 0n }),
    makeProgram(1024, { programSize: 16n }),
    makeProgram(1024, { segmentBase: 2048n, segmentSize: 0n }),
    makeProgram(1024, { programSize: 512n, segmentBase: 256n, segmentSize: 0n }),
    makeProgram(1024, { segmentSize: 1024n }),
    makeProgram(1024, { length: 8 }),
    makeProgram(1024, { length: 2048 }),
  ];
  for (const body of bad) {
    await leavesStateUnchanged(t, gw, async () => {
      await expectError(t, await push(gw, 'kws', '1.0', body), 415, 'unsupported_format');
    });
  }
  // A consistent header of the same shape is accepted.
  t.is((await push(gw, 'kws', '1.0', makeProgram(1024))).status, 201);
});

test('names and versions outside the identifier grammar are refused with 400 invalid_name or invalid_version', async (t) => {
  const gw = await startGateway(t);
  const body = fixture('add.pte');
  const cases: Array<[string, string]> = [
    ['/v1/models/../1.0', 'invalid_name'],
    ['/v1/models/%2e%2e/1.0', 'invalid_name'],
    ['/v1/models/kws/..', 'invalid_version'],
    ['/v1/models/kws/%2E%2E', 'invalid_version'],
    ['/v1/models/..%2f..%2fetc/1.0', 'invalid_name'],
    ['/v1/models/kws%2fx/1.0', 'invalid_name'],
    ['/v1/models/kws/1.0%2f..', 'invalid_version'],
    ['/v1/models/kws%00/1.0', 'invalid_name'],
    ['/v1/models/kws%0a/1.0', 'invalid_name'],
    ['/v1/models/kws/1.0%0A', 'invalid_version'],
    ['/v1/models/k%20ws/1.0', 'invalid_name'],
    ['/v1/models/kws/1.0%00', 'invalid_version'],
    ['/v1/models/kws/latest', 'invalid_version'],
    ['/v1/models/KWS/1.0', 'invalid_name'],
    ['/v1/models/.kws/1.0', 'invalid_name'],
    ['/v1/models/kws/-1', 'invalid_version'],
    [`/v1/models/${'a'.repeat(65)}/1.0`, 'invalid_name'],
    [`/v1/models/kws/${'1'.repeat(65)}`, 'invalid_version'],
  ];
  for (const [rawPath, code] of cases) {
    await leavesStateUnchanged(t, gw, async () => {
      const response = await rawRequest(gw, 'PUT', rawPath, { token: PUSH_TOKEN, body });
      await expectError(t, response, 400, code);
    });
  }
  // The longest names the grammar allows are accepted.
  const response = await rawRequest(gw, 'PUT', `/v1/models/${'a'.repeat(64)}/V${'1'.repeat(63)}`, { token: PUSH_TOKEN, body });
  t.is(response.status, 201, response.text);
});

test('a push path with an extra segment matches no route: 404 not_found', async (t) => {
  const gw = await startGateway(t);
  for (const rawPath of ['/v1/models/kws/1.0/extra', '/v1/models/kws/1.0/..', '/v1/models/kws/1.0/%2e%2e/x', '/v1/models//kws/1.0']) {
    await leavesStateUnchanged(t, gw, async () => {
      const response = await rawRequest(gw, 'PUT', rawPath, { token: PUSH_TOKEN, body: fixture('add.pte') });
      await expectError(t, response, 404, 'not_found');
    });
  }
  // Without a version the path names the model, which cannot be PUT.
  await leavesStateUnchanged(t, gw, async () => {
    const response = await rawRequest(gw, 'PUT', '/v1/models/kws', { token: PUSH_TOKEN, body: fixture('add.pte') });
    await expectError(t, response, 405, 'method_not_allowed');
  });
});

test('concurrent pushes to one name and version: the first wins, other bytes get 409, the same bytes 200', async (t) => {
  const gw = await startGateway(t);
  const [a, b] = [makeProgram(32 * 1024), makeProgram(32 * 1024)];
  const statuses = await Promise.all([push(gw, 'kws', '1.0', a), push(gw, 'kws', '1.0', b)]);
  t.deepEqual(statuses.map((r) => r.status).sort(), [201, 409]);
  const winner = statuses[0]!.status === 201 ? a : b;
  const state = await storedState(gw);
  t.deepEqual(state.blobs, [sha256(winner)]);
  t.deepEqual(state.temp, []);
  const same = await Promise.all([push(gw, 'kws', '2.0', a), push(gw, 'kws', '2.0', a)]);
  t.deepEqual(same.map((r) => r.status).sort(), [200, 201]);
});

test('a push without a token is refused with 401 and WWW-Authenticate: Bearer', async (t) => {
  const gw = await startGateway(t);
  await leavesStateUnchanged(t, gw, async () => {
    const response = await gw.fetch('/v1/models/kws/1.0', { method: 'PUT', body: fixture('add.pte') });
    await expectUnauthorized(t, response);
  });
});

test('a push with a token the gateway does not know, or a non-Bearer scheme, is refused with 401', async (t) => {
  const gw = await startGateway(t);
  const attempts: Array<Record<string, string>> = [
    { Authorization: 'Bearer wrong-token-0123456789abcdef' },
    { Authorization: `Bearer ${PUSH_TOKEN}x` },
    { Authorization: `Basic ${Buffer.from(`pipeline:${PUSH_TOKEN}`).toString('base64')}` },
    { Authorization: PUSH_TOKEN },
  ];
  for (const headers of attempts) {
    await leavesStateUnchanged(t, gw, async () => {
      const response = await gw.fetch('/v1/models/kws/1.0', { method: 'PUT', headers, body: fixture('add.pte') });
      await expectUnauthorized(t, response);
    });
  }
});

test('a push with a token that lacks the push scope is refused with 403 forbidden', async (t) => {
  const gw = await startGateway(t);
  for (const token of [ADMIN_TOKEN, SYNC_TOKEN]) {
    await leavesStateUnchanged(t, gw, async () => {
      await expectError(t, await push(gw, 'kws', '1.0', fixture('add.pte'), { token }), 403, 'forbidden');
    });
  }
  t.is((await push(gw, 'kws', '1.0', fixture('add.pte'), { token: ALL_TOKEN })).status, 201);
});

test('a push signed with a trusted key is stored with its signature, which reaches devices in their model answer', async (t) => {
  const key = generateKeyPair();
  const gw = await startGateway(t, { 'trust.keys': JSON.stringify([{ publicKey: key.publicKey }]) });
  const bytes = fixture('add.pte');
  const signed = signModel(key.privateKeyPem, { name: 'kws', version: '2026.11.24-3', sha256: ADD_SHA256, size: bytes.length });
  t.is(signed.keyId, key.keyId);
  const response = await push(gw, 'kws', '2026.11.24-3', bytes, { signed });
  t.is(response.status, 201);
  t.like(await response.json(), { signature: signed.signature, keyId: key.keyId });

  const assign = await sendJson(gw, 'PUT', '/v1/assignments/aa:bb:cc:dd:ee:01', { model: 'kws', version: '2026.11.24-3' });
  t.is(assign.status, 201);
  const poll = await gw.fetch('/v1/devices/aa:bb:cc:dd:ee:01/model');
  t.is(poll.status, 200);
  t.deepEqual((await poll.json() as { model: unknown }).model, {
    name: 'kws',
    version: '2026.11.24-3',
    sha256: ADD_SHA256,
    size: bytes.length,
    url: `/v1/artifacts/${ADD_SHA256}`,
    signature: signed.signature,
    keyId: key.keyId,
    signatureSeq: null,
  });
});

test('with trust keys configured, an unsigned push is still accepted unless signatures are required', async (t) => {
  const key = generateKeyPair();
  const gw = await startGateway(t, { 'trust.keys': JSON.stringify([{ publicKey: key.publicKey }]) });
  const response = await push(gw, 'kws', '1.0', fixture('add.pte'));
  t.is(response.status, 201);
  t.like(await response.json(), { signature: null, keyId: null });
});

test('a signature that does not verify for this name, version and body is refused with 400 invalid_signature', async (t) => {
  const key = generateKeyPair();
  const gw = await startGateway(t, { 'trust.keys': JSON.stringify([{ publicKey: key.publicKey }]) });
  const bytes = fixture('add.pte');
  const fields = { name: 'kws', version: '1.0', sha256: ADD_SHA256, size: bytes.length };
  const wrong = [
    signModel(key.privateKeyPem, { ...fields, version: '1.1' }),
    signModel(key.privateKeyPem, { ...fields, name: 'kws2' }),
    signModel(key.privateKeyPem, { ...fields, sha256: MUL_SHA256 }),
    signModel(key.privateKeyPem, { ...fields, size: bytes.length + 1 }),
  ];
  const good = signModel(key.privateKeyPem, fields);
  const malformed = [
    { signature: Buffer.alloc(64, 1).toString('base64'), keyId: key.keyId },
    { signature: good.signature.slice(0, -4), keyId: key.keyId },
    { signature: 'not base64 at all!', keyId: key.keyId },
    { signature: good.signature, keyId: key.keyId.toUpperCase() },
  ];
  for (const claim of [...wrong, ...malformed]) {
    await leavesStateUnchanged(t, gw, async () => {
      const response = await push(gw, 'kws', '1.0', bytes, { signed: claim });
      await expectError(t, response, 400, 'invalid_signature');
    });
  }
  // A key id without a signature is refused too.
  await leavesStateUnchanged(t, gw, async () => {
    await expectError(t, await push(gw, 'kws', '1.0', bytes, { headers: { 'X-Signature-Key-Id': key.keyId } }), 400, 'invalid_signature');
  });
  // And the right signature is accepted.
  t.is((await push(gw, 'kws', '1.0', bytes, { signed: good })).status, 201);
});

test('a signature by a key that is not in trust.keys is refused with 400 unknown_key', async (t) => {
  const trusted = generateKeyPair();
  const stranger = generateKeyPair();
  const gw = await startGateway(t, { 'trust.keys': JSON.stringify([{ publicKey: trusted.publicKey }]) });
  const bytes = fixture('add.pte');
  const signed = signModel(stranger.privateKeyPem, { name: 'kws', version: '1.0', sha256: ADD_SHA256, size: bytes.length });
  await leavesStateUnchanged(t, gw, async () => {
    const response = await push(gw, 'kws', '1.0', bytes, { signed });
    await expectError(t, response, 400, 'unknown_key');
  });
});

test('with trust.requireSignatures an unsigned push is refused with 400 signature_required', async (t) => {
  const key = generateKeyPair();
  const gw = await startGateway(t, { 'trust.keys': JSON.stringify([{ publicKey: key.publicKey }]), 'trust.requireSignatures': 'true' });
  const bytes = fixture('add.pte');
  await leavesStateUnchanged(t, gw, async () => {
    await expectError(t, await push(gw, 'kws', '1.0', bytes), 400, 'signature_required');
  });
  const signed = signModel(key.privateKeyPem, { name: 'kws', version: '1.0', sha256: ADD_SHA256, size: bytes.length });
  t.is((await push(gw, 'kws', '1.0', bytes, { signed })).status, 201);
});

testNeeding('curl')('the Jenkins one-liner with the real curl binary stores the model, and curl --fail exits 22 on a refused push', async (t) => {
  const gw = await startGateway(t);
  const url = `${gw.url}/v1/models/kws/2026.11.24-3`;
  const { stdout } = await run('curl', ['--fail', '-sS', '-X', 'PUT', '-H', `Authorization: Bearer ${PUSH_TOKEN}`, '--data-binary', `@${fixturePath('add.pte')}`, url]);
  t.like(JSON.parse(stdout), { name: 'kws', version: '2026.11.24-3', sha256: ADD_SHA256, size: fixture('add.pte').length, format: 'executorch' });
  t.deepEqual((await storedState(gw)).blobs, [ADD_SHA256]);

  await leavesStateUnchanged(t, gw, async () => {
    const error = await t.throwsAsync(run('curl', ['--fail', '-sS', '-X', 'PUT', '-H', `Authorization: Bearer ${PUSH_TOKEN}`, '--data-binary', `@${fixturePath('mul.pte')}`, url]));
    t.is((error as Error & { code?: unknown }).code, 22);
    t.regex((error as Error & { stderr?: string }).stderr ?? '', /409/);
  });
  t.false((await blobFiles(gw)).includes(MUL_SHA256));
});
