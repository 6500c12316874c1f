import { createHash, createPrivateKey, createPublicKey, generateKeyPairSync, sign, verify } from 'node:crypto';
import test from 'ava';
import { generateKeyPair, keyIdOf, parsePublicKey, signModel, signedMessage, verifyModel, type SignedFields } from '../../daemon/signing/signature.ts';

// docs/design.md "Signatures": ed25519 over the UTF-8 text
// `modelferry-v1:<name>:<version>:<sha256>:<size>`; keyId = first 16 hex of sha256(raw 32-byte
// public key).

const FIELDS: SignedFields = {
  name: 'kws',
  version: '2026.11.24-3',
  sha256: 'c9608ddefe472e0ebd8d4a900dc0957d893381c928dd1c648a439a6e88470b18',
  size: 1072,
};
const MESSAGE = 'modelferry-v1:kws:2026.11.24-3:c9608ddefe472e0ebd8d4a900dc0957d893381c928dd1c648a439a6e88470b18:1072';

/** The public key from base64 raw bytes, built without the module under test. */
function independentKey(publicKeyBase64: string) {
  return createPublicKey({ key: { kty: 'OKP', crv: 'Ed25519', x: Buffer.from(publicKeyBase64, 'base64').toString('base64url') }, format: 'jwk' });
}

test('the signed message is exactly modelferry-v1:<name>:<version>:<sha256>:<size> in UTF-8', (t) => {
  t.is(signedMessage(FIELDS).toString('utf8'), MESSAGE);
  t.deepEqual(signedMessage(FIELDS), Buffer.from(MESSAGE, 'utf8'));
});

test('keygen makes an ed25519 pair: PKCS#8 PEM private key, base64 of the raw 32-byte public key, its key id', (t) => {
  const pair = generateKeyPair();
  const privateKey = createPrivateKey(pair.privateKeyPem);
  t.is(privateKey.asymmetricKeyType, 'ed25519');
  t.true(pair.privateKeyPem.startsWith('-----BEGIN PRIVATE KEY-----'));
  const raw = Buffer.from(pair.publicKey, 'base64');
  t.is(raw.length, 32);
  t.is(raw.toString('base64'), pair.publicKey);
  const derivedRaw = Buffer.from(createPublicKey(privateKey).export({ format: 'jwk' }).x!, 'base64url');
  t.deepEqual(raw, derivedRaw);
  t.is(pair.keyId, createHash('sha256').update(raw).digest('hex').slice(0, 16));
  t.regex(pair.keyId, /^[0-9a-f]{16}$/);
});

test('two keygens make different keys', (t) => {
  const a = generateKeyPair();
  const b = generateKeyPair();
  t.not(a.publicKey, b.publicKey);
  t.not(a.keyId, b.keyId);
});

test('keyId is the first 16 hex characters of the sha256 of the raw public key', (t) => {
  const raw = Buffer.alloc(32, 7);
  t.is(keyIdOf(raw), createHash('sha256').update(raw).digest('hex').slice(0, 16));
  t.is(keyIdOf(Buffer.alloc(32)), '66687aadf862bd77'); // sha256 of 32 zero bytes starts with 66687aadf862bd77
});

test('a signature verifies with node:crypto directly against the documented message', (t) => {
  const pair = generateKeyPair();
  const { signature, keyId } = signModel(pair.privateKeyPem, FIELDS);
  t.is(keyId, pair.keyId);
  const bytes = Buffer.from(signature, 'base64');
  t.is(bytes.length, 64);
  t.is(bytes.toString('base64'), signature);
  t.true(verify(null, Buffer.from(MESSAGE, 'utf8'), independentKey(pair.publicKey), bytes));
  t.false(verify(null, Buffer.from(`${MESSAGE}0`, 'utf8'), independentKey(pair.publicKey), bytes));
});

test('sign and verify round trip; any other field value fails verification', (t) => {
  const pair = generateKeyPair();
  const key = parsePublicKey(pair.publicKey);
  const signature = Buffer.from(signModel(pair.privateKeyPem, FIELDS).signature, 'base64');
  t.true(verifyModel(key.key, FIELDS, signature));
  t.false(verifyModel(key.key, { ...FIELDS, name: 'kws2' }, signature));
  t.false(verifyModel(key.key, { ...FIELDS, version: '2026.11.24-4' }, signature));
  t.false(verifyModel(key.key, { ...FIELDS, sha256: FIELDS.sha256.replace(/^c/, 'd') }, signature));
  t.false(verifyModel(key.key, { ...FIELDS, size: 1073 }, signature));
  t.false(verifyModel(parsePublicKey(generateKeyPair().publicKey).key, FIELDS, signature));
});

test('a signature made independently with node:crypto over the documented message verifies through the module', (t) => {
  const { privateKey, publicKey } = generateKeyPairSync('ed25519');
  const signature = sign(null, Buffer.from(MESSAGE, 'utf8'), privateKey);
  const raw = Buffer.from(publicKey.export({ format: 'jwk' }).x!, 'base64url');
  t.true(verifyModel(parsePublicKey(raw.toString('base64')).key, FIELDS, signature));
});

test('a public key is read from base64 of the raw 32 bytes and from PEM, with the same key id', (t) => {
  const { publicKey } = generateKeyPairSync('ed25519');
  const raw = Buffer.from(publicKey.export({ format: 'jwk' }).x!, 'base64url');
  const expectedId = createHash('sha256').update(raw).digest('hex').slice(0, 16);
  const fromRaw = parsePublicKey(raw.toString('base64'));
  const fromPem = parsePublicKey(publicKey.export({ format: 'pem', type: 'spki' }).toString());
  t.deepEqual(fromRaw.raw, raw);
  t.deepEqual(fromPem.raw, raw);
  t.is(fromRaw.keyId, expectedId);
  t.is(fromPem.keyId, expectedId);
  // Surrounding whitespace, as in a YAML block scalar, is tolerated.
  t.is(parsePublicKey(`  ${raw.toString('base64')}\n`).keyId, expectedId);
});

test('a public key that is not 32 raw bytes in canonical base64 is refused', (t) => {
  const raw = Buffer.alloc(32, 1);
  for (const text of [Buffer.alloc(31).toString('base64'), Buffer.alloc(33).toString('base64'), 'not base64 at all!', '', raw.toString('base64url'), `${raw.toString('base64')}==`]) {
    t.throws(() => parsePublicKey(text), { message: 'expected base64 of a raw 32-byte ed25519 public key, or a PEM public key' }, JSON.stringify(text));
  }
});

test('a PEM key of another algorithm is refused', (t) => {
  const { publicKey } = generateKeyPairSync('ec', { namedCurve: 'P-256' });
  t.throws(() => parsePublicKey(publicKey.export({ format: 'pem', type: 'spki' }).toString()), { message: 'expected an ed25519 key, got ec' });
});

test('signing with a private key of another algorithm is refused', (t) => {
  const { privateKey } = generateKeyPairSync('ec', { namedCurve: 'P-256' });
  t.throws(() => signModel(privateKey.export({ format: 'pem', type: 'pkcs8' }).toString(), FIELDS), { message: 'the signing key is not an ed25519 private key' });
});
