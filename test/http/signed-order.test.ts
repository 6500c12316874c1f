import type { RollbackWarning } from '../../daemon/devices/rollback-warnings.ts';
import { leavesStateUnchanged, expectError, poll, push, sendJson } from '../helpers/api.ts';
import { startGateway, type TestGateway } from '../helpers/gateway.ts';
import { tempDir, type HasTeardown } from '../helpers/harness.ts';
import { fixture, sha256, ADD_SHA256, MUL_SHA256 } from '../helpers/programs.ts';
import { testNeeding } from '../helpers/requirements.ts';
import { ADMIN_TOKEN, SYNC_TOKEN } from '../helpers/tokens.ts';
import { opensslKey, opensslSign, type OpensslKey } from '../signing/openssl-ed25519.ts';

// Signed order over HTTP (docs/security.md "Signature order"): a push carries its sequence
// in X-Signature-Seq, verified with the signature; the record, the answer devices get and
// the manifest carry it as `signatureSeq` (a decimal string, null for v1); an assignment
// that devices will refuse as a rollback is answered with a warning.

const test = testNeeding('openssl');

const ADD = fixture('add.pte');
const MUL = fixture('mul.pte');
const MAC = 'aa:bb:cc:dd:ee:31';

async function signedGateway(t: HasTeardown): Promise<{ gw: TestGateway; key: OpensslKey }> {
  const key = await opensslKey(await tempDir(t), 'pipeline');
  const gw = await startGateway(t, { 'trust.keys': JSON.stringify([{ publicKey: key.publicKey }]) });
  return { gw, key };
}

function message(name: string, version: string, bytes: Buffer, seq?: string): string {
  const base = `${name}:${version}:${sha256(bytes)}:${bytes.length}`;
  return seq === undefined ? `modelferry-v1:${base}` : `modelferry-v2:${base}:${seq}`;
}

async function pushSigned(gw: TestGateway, key: OpensslKey, version: string, bytes: Buffer, seq?: string): Promise<Response> {
  const signature = await opensslSign(key, message('kws', version, bytes, seq));
  return push(gw, 'kws', version, bytes, { signed: { signature, keyId: key.keyId, seq: seq ?? null } });
}

test('a push with X-Signature-Seq is verified as v2 and stored with signatureSeq, which devices get next to the signature', async (t) => {
  const { gw, key } = await signedGateway(t);
  const seq = '18446744073709551615';
  const response = await pushSigned(gw, key, '1.0', ADD, seq);
  t.is(response.status, 201, await response.clone().text());
  t.like(await response.json(), { keyId: key.keyId, signatureSeq: seq });
  t.like(await (await gw.fetch('/v1/models/kws/1.0', { token: ADMIN_TOKEN })).json(), { signatureSeq: seq });

  t.is((await sendJson(gw, 'PUT', '/v1/assignments/default', { model: 'kws', version: '1.0' })).status, 201);
  const answer = await poll(gw, MAC);
  t.is(answer.status, 200);
  t.deepEqual(Object.keys(answer.json.model), ['name', 'version', 'sha256', 'size', 'url', 'signature', 'keyId', 'signatureSeq']);
  t.is(answer.json.model.signatureSeq, seq);
  t.regex(answer.bytes.toString('utf8'), /"signatureSeq":"18446744073709551615"/, 'a string in the JSON, never a number');

  const manifest = await (await gw.fetch('/v1/manifest', { token: SYNC_TOKEN })).json() as { models: Array<{ signatureSeq: string | null }> };
  t.is(manifest.models[0]!.signatureSeq, seq);
});

test('a v1 signature (no X-Signature-Seq) is still accepted, and answered with signatureSeq null', async (t) => {
  const { gw, key } = await signedGateway(t);
  const response = await pushSigned(gw, key, '1.0', ADD);
  t.is(response.status, 201);
  t.like(await response.json(), { signatureSeq: null });
  t.is((await sendJson(gw, 'PUT', '/v1/assignments/default', { model: 'kws', version: '1.0' })).status, 201);
  t.is((await poll(gw, MAC)).json.model.signatureSeq, null);
});

test('a sequence without a signature, a malformed one, one the signature was not made over, or a v2 signature without its sequence: 400 invalid_signature, nothing stored', async (t) => {
  const { gw, key } = await signedGateway(t);
  t.is((await pushSigned(gw, key, '0.9', MUL, '1')).status, 201, 'something stored, to see it stay');
  const v2 = await opensslSign(key, message('kws', '1.0', ADD, '200'));
  const v1 = await opensslSign(key, message('kws', '1.0', ADD));
  const signed = { 'X-Signature': v2, 'X-Signature-Key-Id': key.keyId };
  const attempts: Array<[Record<string, string>, string]> = [
    [{ 'X-Signature-Seq': '200' }, 'X-Signature-Seq was sent without X-Signature'],
    [{ ...signed, 'X-Signature-Seq': '0200' }, 'X-Signature-Seq "0200" is not a sequence'],
    [{ ...signed, 'X-Signature-Seq': '18446744073709551616' }, 'is not a sequence'],
    [{ ...signed, 'X-Signature-Seq': '-1' }, 'is not a sequence'],
    [{ ...signed, 'X-Signature-Seq': '201' }, 'with sequence 201 (X-Signature-Seq)'],
    [{ 'X-Signature': v1, 'X-Signature-Key-Id': key.keyId, 'X-Signature-Seq': '200' }, 'with sequence 200'],
    [signed, 'as a v1 signature (no X-Signature-Seq)'],
  ];
  for (const [headers, says] of attempts) {
    await leavesStateUnchanged(t, gw, async () => {
      await expectError(t, await push(gw, 'kws', '1.0', ADD, { headers }), 400, 'invalid_signature', says);
    });
  }
});

test('without trust keys a v2 signature is passed on with its sequence (devices verify it); a malformed sequence is still refused', async (t) => {
  const key = await opensslKey(await tempDir(t), 'pipeline');
  const gw = await startGateway(t);
  const signature = await opensslSign(key, message('kws', '1.0', ADD, '7'));
  const stored = await push(gw, 'kws', '1.0', ADD, { signed: { signature, keyId: key.keyId, seq: '7' } });
  t.is(stored.status, 201);
  t.like(await stored.json(), { signature, keyId: key.keyId, signatureSeq: '7' });
  await leavesStateUnchanged(t, gw, async () => {
    await expectError(t, await push(gw, 'kws', '2.0', MUL, { signed: { signature, keyId: key.keyId, seq: '7.0' } }), 400, 'invalid_signature', 'is not a sequence');
  });
});

async function report(gw: TestGateway, mac: string, body: unknown): Promise<void> {
  const response = await gw.fetch(`/v1/devices/${mac}/report`, { method: 'POST', headers: { 'Content-Type': 'application/json' }, body: JSON.stringify(body) });
  if (response.status !== 204) throw new Error(`report: ${response.status} ${await response.text()}`);
}

async function assignAnswer(gw: TestGateway, selector: string, body: unknown): Promise<{ status: number; warnings: RollbackWarning[] }> {
  const response = await sendJson(gw, 'PUT', `/v1/assignments/${selector}`, body);
  const json = await response.json() as { warnings: RollbackWarning[] };
  return { status: response.status, warnings: json.warnings };
}

test('an assignment that devices under it will refuse as a rollback is taken, and answered with a warning saying how many, which sequences and what to do', async (t) => {
  const { gw, key } = await signedGateway(t);
  t.is((await pushSigned(gw, key, '1.0', MUL, '100')).status, 201);
  t.is((await pushSigned(gw, key, '2.0', ADD, '200')).status, 201);
  t.is((await pushSigned(gw, key, '0.1', MUL)).status, 201, 'v1: sequence 0');
  const fleet = ['02:00:00:00:31:01', '02:00:00:00:31:02', '02:00:00:00:31:03'];
  t.deepEqual((await assignAnswer(gw, 'default', { model: 'kws', version: '2.0' })).warnings, []);
  for (const mac of fleet.slice(0, 2)) await report(gw, mac, { state: 'installed', model: 'kws', version: '2.0', sha256: ADD_SHA256 });
  await report(gw, fleet[2]!, { state: 'installed', model: 'kws', version: '1.0', sha256: MUL_SHA256 });

  const back = await assignAnswer(gw, 'default', { model: 'kws', version: '1.0' });
  t.is(back.status, 200, 'taken all the same');
  t.deepEqual(back.warnings, [{
    code: 'rollback_refused', model: 'kws', version: '1.0', signatureSeq: '100', devices: 2, runningSeq: '200', macs: fleet.slice(0, 2),
    message: '2 devices under default run kws signed with sequence 200 > 100 (kws@1.0) and will refuse it as a rollback; '
      + 'publish its bytes again under a higher sequence with `modelferry rollback kws --to 1.0 --sign-key KEY`',
  }]);
  t.like((await (await gw.fetch('/v1/assignments', { token: ADMIN_TOKEN })).json() as { assignments: unknown[] }).assignments[0], { selector: 'default', version: '1.0' });

  const v1 = await assignAnswer(gw, 'default', { model: 'kws', version: '0.1' });
  t.like(v1.warnings[0], { signatureSeq: null, devices: 3, runningSeq: '200' });
  t.regex(v1.warnings[0]!.message, /^3 devices under default run kws signed with sequence 200 > 0 \(kws@0\.1\)/);

  // A device's own assignment decides for it alone; a staged rollout is checked for both versions.
  const one = await assignAnswer(gw, fleet[2]!, { model: 'kws', version: '2.0', rollout: { percent: 50, previous: { model: 'kws', version: '0.1' } } });
  t.deepEqual(one.warnings.map((w) => [w.version, w.devices, w.macs]), [['0.1', 1, [fleet[2]]]]);
});
