import { createPrivateKey } from 'node:crypto';
import { readFile, rm, stat, writeFile } from 'node:fs/promises';
import { describeFsError, errnoOf } from '../fs-errors.ts';
import { generateKeyPair, parsePublicKey, signModel, type SignedFields, type Signature } from '../signing/signature.ts';
import { digestFile } from '../store/file-digest.ts';
import { isSignatureSeq } from '../contract/identifiers.ts';
import type { SignatureClaim } from '../signing/trust.ts';
import { option, positional, required, UsageError, type Args } from './args.ts';
import { CliError } from './cli-error.ts';
import { defineCommand } from './command.ts';

export const keygen = defineCommand({
  name: 'keygen',
  summary: 'make an ed25519 signing key pair for the pipeline',
  description: `Makes an ed25519 signing key pair: PREFIX.key (private, PEM, mode 0600; keep it in the
pipeline's secret store) and PREFIX.pub (base64 raw public key: put it in trust.keys and in
the firmware). Refuses to overwrite either file.`,
  flags: { out: { placeholder: 'PREFIX', help: 'where to write PREFIX.key and PREFIX.pub (default ./modelferry-signing)' } },
  async run(args) {
    const prefix = option(args, 'out') ?? 'modelferry-signing';
    const pair = generateKeyPair();
    const written = async (file: string, content: string, mode: number) => {
      try {
        await writeFile(file, content, { mode, flag: 'wx' });
      } catch (error) {
        const fix = errnoOf(error) === 'EEXIST'
          ? 'it is not overwritten (a lost private key cannot be recovered): choose another --out PREFIX or move the old pair away'
          : undefined;
        throw new CliError(describeFsError(error, `--out ${prefix}: ${file}`, fix));
      }
    };
    await written(`${prefix}.key`, pair.privateKeyPem, 0o600);
    try {
      await written(`${prefix}.pub`, `${pair.publicKey}\n`, 0o644);
    } catch (error) {
      // A private key whose public half could not be written is useless: take it back.
      await rm(`${prefix}.key`, { force: true });
      throw error;
    }
    console.log(JSON.stringify({ privateKey: `${prefix}.key`, publicKey: pair.publicKey, keyId: pair.keyId }, null, 2));
    return 0;
  },
});

export const SEQ_FLAG = {
  placeholder: 'N',
  help: 'the sequence the signature covers (0 to 2^64-1; default: the time in milliseconds): devices refuse a model whose sequence is below one they accepted',
} as const;

/** The flags of a command that signs on the way (push, publish). */
export const SIGNING_FLAGS = {
  'sign-key': { placeholder: 'PRIVATE_KEY_FILE', help: 'sign with this private key (from keygen): a v2 signature over --seq' },
  seq: SEQ_FLAG,
  signature: { placeholder: 'BASE64', help: 'a signature made elsewhere (with --key-id, and --seq when it is v2)' },
  'key-id': { placeholder: 'HEX', help: 'the key id of --signature' },
} as const;

/** How a push or publish is signed: here with a key, with a signature made elsewhere, or not. */
export type SigningChoice =
  | { kind: 'key'; keyFile: string; seq: string }
  | { kind: 'given'; claim: SignatureClaim }
  | { kind: 'unsigned' };

/**
 * --sign-key signs v2 with --seq, or the time in milliseconds (later signings sort after
 * earlier ones without any state kept); --signature and --key-id pass on a signature made
 * elsewhere, v2 when --seq says its sequence.
 */
export function signingChoice(args: Args, now: () => number = Date.now): SigningChoice {
  const keyFile = option(args, 'sign-key');
  const signature = option(args, 'signature');
  const keyId = option(args, 'key-id');
  const seq = seqOption(args);
  if (keyFile !== undefined && signature !== undefined) throw new UsageError('give either --sign-key or --signature with --key-id, not both');
  if ((signature === undefined) !== (keyId === undefined)) throw new UsageError('--signature and --key-id go together');
  if (keyFile !== undefined) return { kind: 'key', keyFile, seq: seq ?? String(now()) };
  if (signature !== undefined) return { kind: 'given', claim: { signature, keyId: keyId!, seq: seq ?? null } };
  if (seq !== undefined) throw new UsageError('--seq is the sequence of a signature: give it with --sign-key, or with --signature and --key-id');
  return { kind: 'unsigned' };
}

/** --seq N, refused in words unless it is a sequence. */
export function seqOption(args: Args): string | undefined {
  const seq = option(args, 'seq');
  if (seq !== undefined && !isSignatureSeq(seq)) {
    throw new UsageError(`--seq takes a whole number from 0 to 18446744073709551615 without leading zeros, not "${seq}"`);
  }
  return seq;
}

export const sign = defineCommand({
  name: 'sign',
  summary: 'print the signature of a model for X-Signature / X-Signature-Key-Id / X-Signature-Seq',
  description: `Prints {"name", "version", "sha256", "size", "signature", "keyId", "signatureSeq"} for the
model as it will be pushed: the values for the X-Signature, X-Signature-Key-Id and
X-Signature-Seq headers, or for the "signature", "keyId" and "signatureSeq" of an inbox
sidecar. The signature is v2: ed25519 over
modelferry-v2:<name>:<version>:<sha256>:<size>:<signatureSeq>.`,
  operands: [{ name: 'FILE' }],
  flags: {
    name: { placeholder: 'NAME', required: true, help: 'model name' },
    version: { placeholder: 'VERSION', required: true, help: 'version' },
    key: { placeholder: 'PRIVATE_KEY_FILE', required: true, help: 'the private key keygen wrote (PREFIX.key)' },
    seq: SEQ_FLAG,
  },
  async run(args) {
    const file = positional(args, 0, 'FILE');
    const name = required(args, 'name');
    const version = required(args, 'version');
    const keyFile = required(args, 'key');
    const seq = seqOption(args) ?? String(Date.now());
    const { sha256, size } = await describeModelFile(file, 'FILE');
    const { signature, keyId } = await signWithKeyFile(keyFile, '--key', { name, version, sha256, size, seq });
    console.log(JSON.stringify({ name, version, sha256, size, signature, keyId, signatureSeq: seq }, null, 2));
    return 0;
  },
});

/** Size and sha256 of a model file given on the command line, with errors in words. */
export async function describeModelFile(file: string, what: string): Promise<{ sha256: string; size: number }> {
  try {
    const info = await stat(file);
    if (!info.isFile()) throw new CliError(`${what} ${file} is not a regular file: name the .pte file`);
    return await digestFile(file);
  } catch (error) {
    if (error instanceof CliError) throw error;
    throw new CliError(describeFsError(error, `${what} ${file}`));
  }
}

/** Signs with the private key in `keyFile` (see readSigningKey). */
export async function signWithKeyFile(keyFile: string, flag: string, fields: SignedFields): Promise<Signature> {
  return signWith(await readSigningKey(keyFile, flag), fields);
}

/**
 * The PEM private key in `keyFile`, checked to be one. The common mistake, the public half,
 * is named as such with the file that is probably meant.
 */
export async function readSigningKey(keyFile: string, flag: string): Promise<{ pem: string; keyFile: string; flag: string }> {
  let text: string;
  try {
    text = await readFile(keyFile, 'utf8');
  } catch (error) {
    throw new CliError(describeFsError(error, `${flag} ${keyFile}`));
  }
  try {
    createPrivateKey(text);
  } catch {
    if (isPublicKey(text)) {
      const guess = keyFile.endsWith('.pub') ? `${keyFile.slice(0, -'.pub'.length)}.key` : 'the .key file keygen wrote next to it';
      throw new CliError(`${flag} ${keyFile} is the public key; sign with the private key (${guess})`);
    }
    throw new CliError(`${flag} ${keyFile} is not a private key: expected the PEM file modelferry keygen wrote (PREFIX.key)`);
  }
  return { pem: text, keyFile, flag };
}

export function signWith(key: { pem: string; keyFile: string; flag: string }, fields: SignedFields): Signature {
  try {
    return signModel(key.pem, fields);
  } catch (error) {
    throw new CliError(`${key.flag} ${key.keyFile}: ${(error as Error).message}`);
  }
}

function isPublicKey(text: string): boolean {
  try {
    parsePublicKey(text);
    return true;
  } catch {
    return false;
  }
}
