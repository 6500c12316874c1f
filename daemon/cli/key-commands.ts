import { readFile, rm, writeFile } from 'node:fs/promises';
import { generateKeyPair, signModel } from '../signing/signature.ts';
import { digestFile } from '../store/file-digest.ts';
import { option, positional, required, type Args } from './args.ts';

export const keygenHelp = `modelferry keygen [--out PREFIX]
Makes an ed25519 signing key pair: PREFIX.key (private, PEM, mode 0600; keep it in the
pipeline's secret store) and PREFIX.pub (base64 raw public key: put it in trust.keys and in
the firmware). PREFIX defaults to ./modelferry-signing. Refuses to overwrite.`;

export async function keygen(args: Args): Promise<number> {
  const prefix = option(args, 'out') ?? 'modelferry-signing';
  const pair = generateKeyPair();
  await writeFile(`${prefix}.key`, pair.privateKeyPem, { mode: 0o600, flag: 'wx' });
  try {
    await writeFile(`${prefix}.pub`, `${pair.publicKey}\n`, { flag: 'wx' });
  } catch (error) {
    // A private key whose public half could not be written is useless: take it back.
    await rm(`${prefix}.key`, { force: true });
    throw error;
  }
  console.log(JSON.stringify({ privateKey: `${prefix}.key`, publicKey: pair.publicKey, keyId: pair.keyId }, null, 2));
  return 0;
}

export const signHelp = `modelferry sign FILE --name NAME --version VERSION --key PRIVATE_KEY_FILE
Prints {"signature", "keyId", "sha256", "size"} for the model as it will be pushed: the
values for X-Signature / X-Signature-Key-Id, or for an inbox .json sidecar.`;

export async function sign(args: Args): Promise<number> {
  const file = positional(args, 0, 'FILE');
  const name = required(args, 'name');
  const version = required(args, 'version');
  const key = await readFile(required(args, 'key'), 'utf8');
  const { sha256, size } = await digestFile(file);
  const { signature, keyId } = signModel(key, { name, version, sha256, size });
  console.log(JSON.stringify({ name, version, sha256, size, signature, keyId }, null, 2));
  return 0;
}
