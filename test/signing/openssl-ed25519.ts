import { writeFile } from 'node:fs/promises';
import path from 'node:path';
import { sh } from '../tls/tls-helpers.ts';

// Ed25519 keys, signatures and verification by openssl: the signed message format is pinned
// by something other than the gateway's own code.

export interface OpensslKey {
  /** PKCS#8 PEM private key (what modelferry keygen writes too). */
  keyFile: string;
  /** The public key as PEM, for verification. */
  publicKeyFile: string;
  /** Base64 of the raw 32 bytes: what trust.keys and the firmware take. */
  publicKey: string;
  /** The first 16 hex of the sha256 of the raw public key. */
  keyId: string;
}

export async function opensslKey(dir: string, name: string): Promise<OpensslKey> {
  const keyFile = path.join(dir, `${name}.key`);
  const publicKeyFile = path.join(dir, `${name}.pub.pem`);
  await sh('openssl genpkey -algorithm ed25519 -out "$1" && openssl pkey -in "$1" -pubout -out "$2"', [keyFile, publicKeyFile]);
  const publicKey = (await sh('openssl pkey -pubin -in "$1" -outform DER | tail -c 32 | base64', [publicKeyFile])).trim();
  const keyId = (await sh('openssl pkey -pubin -in "$1" -outform DER | tail -c 32 | sha256sum', [publicKeyFile])).slice(0, 16);
  return { keyFile, publicKeyFile, publicKey, keyId };
}

/** base64 of openssl's Ed25519 signature over `message` exactly (UTF-8, no newline). */
export async function opensslSign(key: OpensslKey, message: string): Promise<string> {
  const file = path.join(path.dirname(key.keyFile), `message-${process.hrtime.bigint()}.txt`);
  await writeFile(file, message, 'utf8');
  return (await sh('openssl pkeyutl -sign -inkey "$1" -rawin -in "$2" | base64 -w0', [key.keyFile, file])).trim();
}

/** Whether openssl verifies `signature` (base64) over `message` with the key. */
export async function opensslVerifies(key: OpensslKey, message: string, signature: string): Promise<boolean> {
  const stamp = process.hrtime.bigint();
  const dir = path.dirname(key.keyFile);
  const messageFile = path.join(dir, `message-${stamp}.txt`);
  const signatureFile = path.join(dir, `signature-${stamp}.bin`);
  await writeFile(messageFile, message, 'utf8');
  await writeFile(signatureFile, Buffer.from(signature, 'base64'));
  const out = await sh('openssl pkeyutl -verify -pubin -inkey "$1" -rawin -in "$2" -sigfile "$3" 2>&1 || true', [key.publicKeyFile, messageFile, signatureFile]);
  return /Signature Verified Successfully/.test(out);
}
