import { generateKeyPairSync } from 'node:crypto';
import test, { type ExecutionContext } from 'ava';
import { ConfigError } from '../../daemon/errors.ts';
import { ModelferryError, type ErrorCode } from '../../daemon/errors.ts';
import { generateKeyPair, signModel, type SignedFields } from '../../daemon/signing/signature.ts';
import { TrustPolicy, type SignatureClaim } from '../../daemon/signing/trust.ts';

// docs/design.md "Signatures": the gateway verifies with trust.keys, refuses unsigned models with
// trust.requireSignatures, and passes signatures through either way.

const FIELDS: SignedFields = {
  name: 'kws',
  version: '1.0.0',
  sha256: 'c9608ddefe472e0ebd8d4a900dc0957d893381c928dd1c648a439a6e88470b18',
  size: 1072,
};

const trusted = generateKeyPair();
const other = generateKeyPair();
const UNSIGNED: SignatureClaim = { signature: null, keyId: null };

function claimFor(privateKeyPem: string, fields: SignedFields = FIELDS): SignatureClaim {
  return signModel(privateKeyPem, fields);
}

function refusedAs(t: ExecutionContext, code: ErrorCode, run: () => void, label?: string): ModelferryError | undefined {
  const error = t.throws(run, { instanceOf: ModelferryError }, label);
  t.is(error?.code, code, label);
  t.is(error?.status, 400, label);
  return error;
}

test('trust keys are accepted as base64 raw or PEM, with or without a matching id', (t) => {
  const pem = generateKeyPairSync('ed25519').publicKey.export({ format: 'pem', type: 'spki' }).toString();
  const policy = new TrustPolicy({ keys: [{ publicKey: trusted.publicKey, id: trusted.keyId }, { publicKey: pem }], requireSignatures: true });
  t.is(policy.keyIds.length, 2);
  t.is(policy.keyIds[0], trusted.keyId);
  t.regex(policy.keyIds[1]!, /^[0-9a-f]{16}$/);
});

test('a bad public key in config is a ConfigError naming trust.keys.N.publicKey', (t) => {
  const error = t.throws(() => new TrustPolicy({ keys: [{ publicKey: trusted.publicKey }, { publicKey: 'AAAA' }], requireSignatures: false }), { instanceOf: ConfigError });
  t.is(error?.message, 'config: trust.keys.1.publicKey: expected base64 of a raw 32-byte ed25519 public key, or a PEM public key');
});

test('a PEM key of another algorithm in config is a ConfigError naming its entry', (t) => {
  const pem = generateKeyPairSync('ec', { namedCurve: 'P-256' }).publicKey.export({ format: 'pem', type: 'spki' }).toString();
  const error = t.throws(() => new TrustPolicy({ keys: [{ publicKey: pem }], requireSignatures: false }), { instanceOf: ConfigError });
  t.is(error?.message, 'config: trust.keys.0.publicKey: expected an ed25519 key, got ec');
});

test('a key id that does not match its public key is a ConfigError naming both ids', (t) => {
  const error = t.throws(() => new TrustPolicy({ keys: [{ publicKey: trusted.publicKey, id: other.keyId }], requireSignatures: false }), { instanceOf: ConfigError });
  t.is(error?.message, `config: trust.keys.0.id = "${other.keyId}" does not match its public key, whose key id is ${trusted.keyId}`);
});

test('requireSignatures without any trust key is a ConfigError', (t) => {
  const error = t.throws(() => new TrustPolicy({ keys: [], requireSignatures: true }), { instanceOf: ConfigError });
  t.is(error?.message, 'config: trust.requireSignatures = true needs at least one key in trust.keys');
});

test('with requireSignatures an unsigned model is refused as signature_required', (t) => {
  const policy = new TrustPolicy({ keys: [{ publicKey: trusted.publicKey }], requireSignatures: true });
  refusedAs(t, 'signature_required', () => policy.precheck(UNSIGNED));
  refusedAs(t, 'signature_required', () => policy.check(FIELDS, UNSIGNED));
});

test('without requireSignatures an unsigned model passes, even with trust keys', (t) => {
  const policy = new TrustPolicy({ keys: [{ publicKey: trusted.publicKey }], requireSignatures: false });
  t.notThrows(() => policy.precheck(UNSIGNED));
  t.notThrows(() => policy.check(FIELDS, UNSIGNED));
});

test('a model signed by a trusted key passes precheck and check', (t) => {
  const policy = new TrustPolicy({ keys: [{ publicKey: other.publicKey }, { publicKey: trusted.publicKey }], requireSignatures: true });
  const claim = claimFor(trusted.privateKeyPem);
  t.notThrows(() => policy.precheck(claim));
  t.notThrows(() => policy.check(FIELDS, claim));
});

test('a key id without a signature is invalid_signature', (t) => {
  const policy = new TrustPolicy({ keys: [], requireSignatures: false });
  refusedAs(t, 'invalid_signature', () => policy.precheck({ signature: null, keyId: trusted.keyId }));
});

test('a malformed signature is invalid_signature: not base64, not canonical, not 64 bytes', (t) => {
  const policy = new TrustPolicy({ keys: [{ publicKey: trusted.publicKey }], requireSignatures: false });
  const good = claimFor(trusted.privateKeyPem).signature!;
  for (const signature of ['not a signature!', '', Buffer.alloc(63).toString('base64'), Buffer.alloc(65).toString('base64'), Buffer.from(good, 'base64').toString('base64url'), ` ${good}`]) {
    const error = refusedAs(t, 'invalid_signature', () => policy.precheck({ signature, keyId: trusted.keyId }), JSON.stringify(signature));
    t.is(error?.message, 'the signature must be base64 of a 64-byte ed25519 signature');
  }
});

test('a signature without a well-formed key id is invalid_signature', (t) => {
  const policy = new TrustPolicy({ keys: [{ publicKey: trusted.publicKey }], requireSignatures: false });
  const { signature } = claimFor(trusted.privateKeyPem);
  for (const keyId of [null, '', trusted.keyId.toUpperCase(), trusted.keyId.slice(1), `${trusted.keyId}0`]) {
    refusedAs(t, 'invalid_signature', () => policy.precheck({ signature, keyId }), JSON.stringify(keyId));
  }
});

test('a signature by a key the gateway does not trust is unknown_key', (t) => {
  const policy = new TrustPolicy({ keys: [{ publicKey: trusted.publicKey }], requireSignatures: false });
  const claim = claimFor(other.privateKeyPem);
  const error = refusedAs(t, 'unknown_key', () => policy.precheck(claim));
  t.is(error?.message, `key id ${other.keyId} is not among this gateway's trusted keys (trust.keys)`);
  refusedAs(t, 'unknown_key', () => policy.check(FIELDS, claim));
});

test('a signature over other bytes (another sha256 or size) is invalid_signature at check', (t) => {
  const policy = new TrustPolicy({ keys: [{ publicKey: trusted.publicKey }], requireSignatures: true });
  const claim = claimFor(trusted.privateKeyPem);
  t.notThrows(() => policy.precheck(claim));
  const error = refusedAs(t, 'invalid_signature', () => policy.check({ ...FIELDS, sha256: 'fa143f48550cdbf7ca7a161d9a6c7f79604284a3fe004f8710dc18b728f40a6e', size: 1032 }, claim));
  t.is(error?.message, `the signature does not verify for kws@1.0.0 (sha256 fa143f48550cdbf7ca7a161d9a6c7f79604284a3fe004f8710dc18b728f40a6e, 1032 bytes) as a v1 signature (no X-Signature-Seq) with key ${trusted.keyId}`);
  refusedAs(t, 'invalid_signature', () => policy.check({ ...FIELDS, size: FIELDS.size + 1 }, claim));
});

test('a signature for another version or name of the same bytes is invalid_signature', (t) => {
  const policy = new TrustPolicy({ keys: [{ publicKey: trusted.publicKey }], requireSignatures: true });
  const claim = claimFor(trusted.privateKeyPem, { ...FIELDS, version: '0.9.0' });
  refusedAs(t, 'invalid_signature', () => policy.check(FIELDS, claim));
  refusedAs(t, 'invalid_signature', () => policy.check({ ...FIELDS, name: 'kws-other' }, claimFor(trusted.privateKeyPem)));
});

test('a signature with a trusted key id but made by another key is invalid_signature', (t) => {
  const policy = new TrustPolicy({ keys: [{ publicKey: trusted.publicKey }], requireSignatures: true });
  const forged = { signature: claimFor(other.privateKeyPem).signature, keyId: trusted.keyId };
  t.notThrows(() => policy.precheck(forged));
  refusedAs(t, 'invalid_signature', () => policy.check(FIELDS, forged));
});

test('with no trust keys a well-formed signature is passed through unverified', (t) => {
  const policy = new TrustPolicy({ keys: [], requireSignatures: false });
  t.deepEqual(policy.keyIds, []);
  const claim = claimFor(other.privateKeyPem, { ...FIELDS, version: 'something-else' });
  t.notThrows(() => policy.precheck(claim));
  t.notThrows(() => policy.check(FIELDS, claim));
  t.notThrows(() => policy.check(FIELDS, UNSIGNED));
  // Malformed claims are still refused: a device could never verify them.
  refusedAs(t, 'invalid_signature', () => policy.check(FIELDS, { signature: 'AAAA', keyId: other.keyId }));
});
