import { createPrivateKey } from 'node:crypto';
import { readFile, rm, stat, writeFile } from 'node:fs/promises';
import { describeFsError, errnoOf } from '../fs-errors.ts';
import { generateKeyPair, parsePublicKey, signModel, type SignedFields, type Signature } from '../signing/signature.ts';
import { digestFile } from '../store/file-digest.ts';
import { option, positional, required } from './args.ts';
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

export const sign = defineCommand({
  name: 'sign',
  summary: 'print the signature of a model for X-Signature / X-Signature-Key-Id',
  description: `Prints {"name", "version", "sha256", "size", "signature", "keyId"} for the model as it
will be pushed: the values for the X-Signature and X-Signature-Key-Id headers, or for the
"signature" and "keyId" of an inbox sidecar.`,
  operands: [{ name: 'FILE' }],
  flags: {
    name: { placeholder: 'NAME', required: true, help: 'model name' },
    version: { placeholder: 'VERSION', required: true, help: 'version' },
    key: { placeholder: 'PRIVATE_KEY_FILE', required: true, help: 'the private key keygen wrote (PREFIX.key)' },
  },
  async run(args) {
    const file = positional(args, 0, 'FILE');
    const name = required(args, 'name');
    const version = required(args, 'version');
    const keyFile = required(args, 'key');
    const { sha256, size } = await describeModelFile(file, 'FILE');
    const signed = await signWithKeyFile(keyFile, '--key', { name, version, sha256, size });
    console.log(JSON.stringify({ name, version, sha256, size, ...signed }, null, 2));
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

/**
 * Signs with the private key in `keyFile`. The common mistake, the public half, is named as
 * such with the file that is probably meant.
 */
export async function signWithKeyFile(keyFile: string, flag: string, fields: SignedFields): Promise<Signature> {
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
  try {
    return signModel(text, fields);
  } catch (error) {
    throw new CliError(`${flag} ${keyFile}: ${(error as Error).message}`);
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
