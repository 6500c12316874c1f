import { createHash } from 'node:crypto';
import { createReadStream } from 'node:fs';
import { readFile } from 'node:fs/promises';
import { Readable } from 'node:stream';
import type { ModelRecord } from '../catalog/types.ts';
import { compareSignatureSeq, LATEST, parseVersion } from '../contract/identifiers.ts';
import { isModelferryError } from '../errors.ts';
import { describeFsError } from '../fs-errors.ts';
import { parsePublicKey, publicKeyOf, verifyModel, type PublicKey } from '../signing/signature.ts';
import { option, positional, required, UsageError } from './args.ts';
import { printAssignmentWarnings, pushModel, type AssignmentAnswer } from './catalog-commands.ts';
import { CliError } from './cli-error.ts';
import { defineCommand } from './command.ts';
import { ClientError, GatewayClient } from './gateway-client.ts';
import { describeModelFile, readSigningKey, SEQ_FLAG, seqOption, signWith } from './key-commands.ts';

const segment = encodeURIComponent;

/** What the CLI reads of a model record (GET /v1/models/{name}). */
type StoredModel = Pick<ModelRecord, 'name' | 'version' | 'sha256' | 'size' | 'signature' | 'keyId' | 'signatureSeq'>;

interface AssignmentView {
  selector: string;
  model: string;
  version: string;
}

export const rollback = defineCommand({
  name: 'rollback',
  summary: 'put devices back on an older version: its bytes again under a new version and a higher signature sequence',
  description: `Devices refuse a model signed with a lower sequence than one they accepted, so assigning an
older version does not bring them back to it. This publishes the bytes of NAME@VERSION
again as a new version (--version, default <VERSION>-rollback-<seq>), signed with --sign-key
over a new sequence (--seq, default the time in milliseconds; it must be above every
sequence of NAME on the gateway), and assigns it wherever NAME is assigned now (or to
--assign SELECTOR only). The old version's signature is checked first, with the public half
of --sign-key or a --verify-key: bytes are signed again only when they are the pipeline's.
They come from the gateway (GET /v1/artifacts, which needs a token with the sync scope
when devices must authenticate), or from --file, checked against the old version's sha256.`,
  operands: [{ name: 'NAME' }],
  client: true,
  flags: {
    to: { placeholder: 'VERSION', required: true, help: 'the version whose bytes the fleet should run again' },
    'sign-key': { placeholder: 'PRIVATE_KEY_FILE', required: true, help: 'the private key to sign the new version with (from keygen)' },
    version: { placeholder: 'NEW_VERSION', help: 'the version to publish the bytes as (default <VERSION>-rollback-<seq>)' },
    seq: SEQ_FLAG,
    assign: { placeholder: 'SELECTOR', help: 'assign the new version to this MAC, group:<name> or default only (default: wherever NAME is assigned)' },
    file: { placeholder: 'FILE', help: 'the old version\'s .pte, instead of fetching it from the gateway' },
    'verify-key': { kind: 'list', placeholder: 'PUBLIC_KEY_FILE', help: 'a public key that may have signed VERSION, other than --sign-key\'s' },
  },
  async run(args) {
    const name = positional(args, 0, 'NAME');
    const to = required(args, 'to');
    const key = await readSigningKey(required(args, 'sign-key'), '--sign-key');
    const seq = seqOption(args) ?? String(Date.now());
    const version = option(args, 'version') ?? `${to}-rollback-${seq}`;
    try {
      parseVersion(version);
    } catch (error) {
      if (!isModelferryError(error)) throw error;
      throw new UsageError(`the new version "${version}" is not a valid version: give one with --version (${error.message})`);
    }
    const trusted = await trustedKeys(key.pem, args.lists.get('verify-key') ?? []);
    const client = GatewayClient.fromArgs(args);

    const { versions } = (await client.request<{ versions: StoredModel[] }>('GET', `/v1/models/${segment(name)}`)).body;
    const old = versions.find((model) => model.version === to);
    if (!old) throw new CliError(`no version ${to} of ${name} on this gateway (it has ${versions.map((m) => m.version).join(', ')})`);
    const highest = versions.reduce((a, b) => (compareSignatureSeq(a.signatureSeq, b.signatureSeq) >= 0 ? a : b));
    if (compareSignatureSeq(seq, highest.signatureSeq) <= 0) {
      throw new CliError(`--seq ${seq} is not above the highest signature sequence of ${name} here (${highest.signatureSeq ?? 0}, ${name}@${highest.version}): devices that accepted it would refuse this too; leave --seq out (the time in milliseconds) or give a larger one`);
    }
    const signer = verifyOld(old, trusted);
    console.log(`verified ${name}@${to} (sha256 ${old.sha256}, ${old.size} bytes, signed by key ${signer}${old.signatureSeq ? ` with sequence ${old.signatureSeq}` : ''})`);

    const body = await bytesOf(client, old, option(args, 'file'));
    const claim = signWith(key, { name, version, sha256: old.sha256, size: old.size, seq });
    const status = await pushModel(client, { name, version, sha256: old.sha256, size: old.size, claim }, body);
    console.log(`${status === 201 ? 'stored' : 'already stored'} ${name}@${version} (sha256 ${old.sha256}, ${old.size} bytes, signature sequence ${seq})`);

    const { selectors, following } = await selectorsOf(client, name, option(args, 'assign'));
    for (const selector of following) console.log(`${selector} follows ${name}@latest, which is ${name}@${version} now`);
    if (selectors.length === 0 && following.length === 0) {
      console.log(`no assignment names ${name}: assign ${name}@${version} where it should run (modelferry assign SELECTOR ${name} ${version})`);
    }
    for (const selector of selectors) {
      const answer = await client.request<AssignmentAnswer>('PUT', `/v1/assignments/${segment(selector)}`, { json: { model: name, version } });
      printAssignmentWarnings(answer.body);
      console.log(`assigned ${name}@${version} to ${selector}`);
    }
    return 0;
  },
});

/** The public half of the signing key, and any --verify-key. */
async function trustedKeys(signingKeyPem: string, files: string[]): Promise<PublicKey[]> {
  const keys: PublicKey[] = [];
  try {
    keys.push(publicKeyOf(signingKeyPem));
  } catch (error) {
    throw new CliError(`--sign-key: ${(error as Error).message}`);
  }
  for (const file of files) {
    let text: string;
    try {
      text = await readFile(file, 'utf8');
    } catch (error) {
      throw new CliError(describeFsError(error, `--verify-key ${file}`));
    }
    try {
      keys.push(parsePublicKey(text));
    } catch (error) {
      throw new CliError(`--verify-key ${file}: ${(error as Error).message}`);
    }
  }
  return keys;
}

/**
 * The old version's signature, checked before its bytes are signed again: whoever answers
 * as the gateway must not get the pipeline's key to sign bytes of their choosing.
 */
function verifyOld(old: StoredModel, trusted: PublicKey[]): string {
  const what = `${old.name}@${old.version}`;
  if (old.signature === null || old.keyId === null) {
    throw new CliError(`${what} is not signed, so nothing shows its bytes are the pipeline's: push the .pte from your build again with modelferry push --sign-key`);
  }
  const key = trusted.find((candidate) => candidate.keyId === old.keyId);
  if (!key) {
    throw new CliError(`${what} is signed by key ${old.keyId}, which is neither --sign-key's (${trusted[0]!.keyId}) nor a --verify-key: give its public key with --verify-key FILE`);
  }
  const fields = { name: old.name, version: old.version, sha256: old.sha256, size: old.size, seq: old.signatureSeq ?? null };
  if (!verifyModel(key.key, fields, Buffer.from(old.signature, 'base64'))) {
    throw new CliError(`the signature the gateway gives for ${what} does not verify with key ${key.keyId}: its bytes are not signed again`);
  }
  return key.keyId;
}

/** The old bytes, from --file or the gateway, held to the old version's sha256 and size. */
async function bytesOf(client: GatewayClient, old: StoredModel, file: string | undefined): Promise<() => ReadableStream | Buffer> {
  if (file !== undefined) {
    const { sha256, size } = await describeModelFile(file, '--file');
    if (sha256 !== old.sha256 || size !== old.size) {
      throw new CliError(`--file ${file} is not ${old.name}@${old.version}: its sha256 is ${sha256} (${size} bytes), the version's is ${old.sha256} (${old.size} bytes)`);
    }
    return () => Readable.toWeb(createReadStream(file)) as ReadableStream;
  }
  let bytes: Buffer;
  try {
    bytes = (await client.request<Buffer>('GET', `/v1/artifacts/${old.sha256}`, { bytes: true })).body;
  } catch (error) {
    if (error instanceof ClientError && (error.status === 401 || error.status === 403)) {
      throw new CliError(`the gateway does not give model bytes to this token (${error.message}): use a token with the sync scope, or give the old .pte with --file`);
    }
    throw error;
  }
  const sha256 = createHash('sha256').update(bytes).digest('hex');
  if (sha256 !== old.sha256) throw new CliError(`the gateway sent other bytes for ${old.name}@${old.version} (sha256 ${sha256}, not ${old.sha256}): nothing was signed`);
  return () => bytes;
}

/**
 * Where to assign the new version: --assign, else every assignment that names a version of
 * NAME now (a staged rollout becomes a plain assignment: everyone goes back). Those that
 * follow NAME@latest already resolve to the new version, the one stored last.
 */
async function selectorsOf(client: GatewayClient, name: string, assign: string | undefined): Promise<{ selectors: string[]; following: string[] }> {
  if (assign !== undefined) return { selectors: [assign], following: [] };
  const { assignments } = (await client.request<{ assignments: AssignmentView[] }>('GET', '/v1/assignments')).body;
  const naming = assignments.filter((assignment) => assignment.model === name);
  return {
    selectors: naming.filter((assignment) => assignment.version !== LATEST).map((assignment) => assignment.selector),
    following: naming.filter((assignment) => assignment.version === LATEST).map((assignment) => assignment.selector),
  };
}
