import { readFile } from 'node:fs/promises';
import type { ExecutionContext } from 'ava';
import { compareSignatureSeq, isSignatureSeq, signatureSeqSchema } from '../../daemon/contract/identifiers.ts';
import { isModelferryError } from '../../daemon/errors.ts';
import { parsePublicKey, signModel, signedMessage, verifyModel, type SignedFields } from '../../daemon/signing/signature.ts';
import { TrustPolicy } from '../../daemon/signing/trust.ts';
import { tempDir } from '../helpers/harness.ts';
import { testNeeding } from '../helpers/requirements.ts';
import { opensslKey, opensslSign, opensslVerifies } from './openssl-ed25519.ts';

// Signed order (docs/security.md "Signature order"): a v2 signature covers a sequence,
// ed25519 over the UTF-8 text `modelferry-v2:<name>:<version>:<sha256>:<size>:<seq>`, seq an
// unsigned 64-bit decimal. v1 signatures stay valid and count as sequence 0. openssl makes
// and checks signatures here, so the format is pinned by something other than our code.

const test = testNeeding('openssl');

const FIELDS: SignedFields = {
  name: 'kws',
  version: '2026.11.24-3',
  sha256: 'c9608ddefe472e0ebd8d4a900dc0957d893381c928dd1c648a439a6e88470b18',
  size: 1072,
};
const MAX = '18446744073709551615';
const v2 = (seq: string) => `modelferry-v2:kws:2026.11.24-3:c9608ddefe472e0ebd8d4a900dc0957d893381c928dd1c648a439a6e88470b18:1072:${seq}`;

function refusedAs(t: ExecutionContext, code: string, run: () => void) {
  const error = t.throws(run);
  t.true(isModelferryError(error), String(error));
  t.is((error as { code?: string }).code, code);
  return error as Error;
}

test('the v2 message is exactly modelferry-v2:<name>:<version>:<sha256>:<size>:<seq> in UTF-8; without a sequence it is v1', (t) => {
  t.deepEqual(signedMessage({ ...FIELDS, seq: '1733000000000' }), Buffer.from(v2('1733000000000'), 'utf8'));
  t.deepEqual(signedMessage({ ...FIELDS, seq: MAX }), Buffer.from(v2(MAX), 'utf8'));
  t.is(signedMessage({ ...FIELDS, seq: null }).toString('utf8'), 'modelferry-v1:kws:2026.11.24-3:c9608ddefe472e0ebd8d4a900dc0957d893381c928dd1c648a439a6e88470b18:1072');
  t.deepEqual(signedMessage(FIELDS), signedMessage({ ...FIELDS, seq: null }));
});

test('a v2 signature openssl makes over the documented text verifies through the gateway, with its sequence only', async (t) => {
  const key = await opensslKey(await tempDir(t), 'pipeline');
  const signature = await opensslSign(key, v2(MAX));
  const policy = new TrustPolicy({ keys: [{ publicKey: key.publicKey }], requireSignatures: true });
  t.deepEqual(policy.keyIds, [key.keyId]);
  t.notThrows(() => policy.check(FIELDS, { signature, keyId: key.keyId, seq: MAX }));
  // One less: what a JS number would have made of it. Or no sequence at all (v1).
  const other = refusedAs(t, 'invalid_signature', () => policy.check(FIELDS, { signature, keyId: key.keyId, seq: '18446744073709551614' }));
  t.regex(other.message, /with sequence 18446744073709551614 \(X-Signature-Seq\)/);
  const asV1 = refusedAs(t, 'invalid_signature', () => policy.check(FIELDS, { signature, keyId: key.keyId }));
  t.regex(asV1.message, /as a v1 signature \(no X-Signature-Seq\)/);
});

test('a v2 signature the gateway\'s code makes verifies with openssl over the documented text, and over nothing else', async (t) => {
  const key = await opensslKey(await tempDir(t), 'pipeline');
  const pem = await readFile(key.keyFile, 'utf8');
  const signed = signModel(pem, { ...FIELDS, seq: '9007199254740993' });
  t.is(signed.keyId, key.keyId);
  t.is(signed.seq, '9007199254740993');
  t.true(await opensslVerifies(key, v2('9007199254740993'), signed.signature));
  t.false(await opensslVerifies(key, v2('9007199254740992'), signed.signature), '2^53 + 1 is not rounded to 2^53');
  t.true(verifyModel(parsePublicKey(key.publicKey).key, { ...FIELDS, seq: '9007199254740993' }, Buffer.from(signed.signature, 'base64')));
});

test('a v1 signature still verifies, as sequence 0, and not with a sequence added', async (t) => {
  const key = await opensslKey(await tempDir(t), 'pipeline');
  const signature = await opensslSign(key, signedMessage(FIELDS).toString('utf8'));
  const policy = new TrustPolicy({ keys: [{ publicKey: key.publicKey }], requireSignatures: true });
  t.notThrows(() => policy.check(FIELDS, { signature, keyId: key.keyId, seq: null }));
  refusedAs(t, 'invalid_signature', () => policy.check(FIELDS, { signature, keyId: key.keyId, seq: '0' }));
  t.is(compareSignatureSeq(null, '0'), 0);
});

test('a sequence is a canonical decimal from 0 to 2^64-1: no sign, no leading zero, no exponent, no space', (t) => {
  for (const good of ['0', '1', '1733000000000', '9007199254740993', MAX]) {
    t.true(isSignatureSeq(good), good);
    t.true(signatureSeqSchema.safeParse(good).success, good);
  }
  for (const bad of ['', '-1', '+1', '01', '007', '1e3', ' 1', '1 ', '1.0', '0x10', '18446744073709551616', '99999999999999999999', '123456789012345678901']) {
    t.false(isSignatureSeq(bad), JSON.stringify(bad));
    t.false(signatureSeqSchema.safeParse(bad).success, JSON.stringify(bad));
  }
});

test('sequences order as numbers, past 2^53 too; none counts as 0', (t) => {
  t.is(compareSignatureSeq('9007199254740993', '9007199254740992'), 1);
  t.is(compareSignatureSeq(MAX, '18446744073709551614'), 1);
  t.is(compareSignatureSeq('10', '9'), 1, 'not as text');
  t.is(compareSignatureSeq(undefined, '1'), -1);
  t.is(compareSignatureSeq(null, null), 0);
});

test('a sequence without a signature, or one that is not canonical, is invalid_signature before any byte is read', async (t) => {
  const key = await opensslKey(await tempDir(t), 'pipeline');
  const policy = new TrustPolicy({ keys: [{ publicKey: key.publicKey }], requireSignatures: false });
  const alone = refusedAs(t, 'invalid_signature', () => policy.precheck({ signature: null, keyId: null, seq: '5' }));
  t.is(alone.message, 'X-Signature-Seq was sent without X-Signature: a sequence is part of a signature (modelferry-v2)');
  const signature = await opensslSign(key, v2('5'));
  for (const bad of ['05', '-5', '5.0', '18446744073709551616']) {
    const malformed = refusedAs(t, 'invalid_signature', () => policy.precheck({ signature, keyId: key.keyId, seq: bad }));
    t.is(malformed.message, `X-Signature-Seq ${JSON.stringify(bad)} is not a sequence: a decimal number from 0 to 18446744073709551615, without sign or leading zeros`);
  }
});
