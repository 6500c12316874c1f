import { createHash, createPrivateKey, createPublicKey, generateKeyPairSync, sign, verify, type KeyObject } from 'node:crypto';

// End-to-end model signatures (docs/design.md "Signatures"). The pipeline signs, the gateway
// and the devices verify; the gateway never holds a private key.

export interface SignedFields {
  name: string;
  version: string;
  sha256: string;
  size: number;
  /**
   * The signing order (a canonical decimal, see signatureSeqSchema): a v2 signature covers
   * it, and devices refuse a model whose sequence is below one they accepted. null or absent:
   * a v1 signature, which counts as sequence 0.
   */
  seq?: string | null;
}

/** `modelferry-v2:<name>:<version>:<sha256>:<size>:<seq>`, or v1 without the sequence, in UTF-8. */
export function signedMessage({ name, version, sha256, size, seq }: SignedFields): Buffer {
  const text = seq === null || seq === undefined
    ? `modelferry-v1:${name}:${version}:${sha256}:${size}`
    : `modelferry-v2:${name}:${version}:${sha256}:${size}:${seq}`;
  return Buffer.from(text, 'utf8');
}

/** First 16 hex characters of the sha256 of the raw 32-byte public key. */
export function keyIdOf(rawPublicKey: Buffer): string {
  return createHash('sha256').update(rawPublicKey).digest('hex').slice(0, 16);
}

export interface PublicKey {
  key: KeyObject;
  raw: Buffer;
  keyId: string;
}

/** Accepts base64 of the raw 32 bytes (what devices embed) or a PEM SPKI key. */
export function parsePublicKey(text: string): PublicKey {
  const trimmed = text.trim();
  let key: KeyObject;
  if (trimmed.startsWith('-----BEGIN')) {
    key = createPublicKey(trimmed);
  } else {
    const raw = Buffer.from(trimmed, 'base64');
    if (raw.length !== 32 || raw.toString('base64') !== trimmed) {
      throw new Error('expected base64 of a raw 32-byte ed25519 public key, or a PEM public key');
    }
    key = createPublicKey({ key: { kty: 'OKP', crv: 'Ed25519', x: raw.toString('base64url') }, format: 'jwk' });
  }
  if (key.asymmetricKeyType !== 'ed25519') throw new Error(`expected an ed25519 key, got ${key.asymmetricKeyType}`);
  const raw = rawOf(key);
  return { key, raw, keyId: keyIdOf(raw) };
}

function rawOf(key: KeyObject): Buffer {
  return Buffer.from(key.export({ format: 'jwk' }).x!, 'base64url');
}

export interface KeyPair {
  /** PKCS#8 PEM: stays with the pipeline. */
  privateKeyPem: string;
  /** base64 of the raw 32 bytes: goes into trust.keys and the firmware. */
  publicKey: string;
  keyId: string;
}

export function generateKeyPair(): KeyPair {
  const { privateKey, publicKey } = generateKeyPairSync('ed25519');
  const raw = rawOf(publicKey);
  return {
    privateKeyPem: privateKey.export({ format: 'pem', type: 'pkcs8' }).toString(),
    publicKey: raw.toString('base64'),
    keyId: keyIdOf(raw),
  };
}

export interface Signature {
  signature: string;
  keyId: string;
  /** The sequence the signature covers (v2); null for a v1 signature. */
  seq: string | null;
}

export function signModel(privateKeyPem: string, fields: SignedFields): Signature {
  const privateKey = createPrivateKey(privateKeyPem);
  if (privateKey.asymmetricKeyType !== 'ed25519') throw new Error('the signing key is not an ed25519 private key');
  const publicKey = createPublicKey(privateKey);
  return {
    signature: sign(null, signedMessage(fields), privateKey).toString('base64'),
    keyId: keyIdOf(rawOf(publicKey)),
    seq: fields.seq ?? null,
  };
}

/** The public key of a private one (PEM), as `parsePublicKey` gives it. */
export function publicKeyOf(privateKeyPem: string): PublicKey {
  const raw = rawOf(createPublicKey(createPrivateKey(privateKeyPem)));
  return parsePublicKey(raw.toString('base64'));
}

export function verifyModel(key: KeyObject, fields: SignedFields, signature: Buffer): boolean {
  return verify(null, signedMessage(fields), key, signature);
}
