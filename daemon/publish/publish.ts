import { openStore, type StoreAccess, type StoreObjects } from '../central-store/store-objects.ts';
import { fail } from '../errors.ts';
import { parseModelName, parseSelector, parseVersion, selectorKey } from '../contract/identifiers.ts';
import { signModel } from '../signing/signature.ts';
import { TrustPolicy, type SignatureClaim } from '../signing/trust.ts';
import { acceptFormat, inspectProgramFile } from '../store/executorch.ts';
import { digestFile } from '../store/file-digest.ts';
import { MANIFEST_FORMAT, parseManifest, revisionOf, type Manifest } from '../sync/manifest.ts';

export interface PublishRequest {
  /** A store folder, or `s3://BUCKET/PREFIX`. */
  store: string;
  /** How to reach a bucket (upstream.s3 and the AWS_* variables). */
  access?: StoreAccess;
  file: string;
  name: string;
  version: string;
  /** A selector to assign the model to (replacing that selector's assignment). */
  assign?: string | undefined;
  /** A signature made elsewhere (with its sequence, when v2), or a private key (PEM) to sign with here. */
  signature?: SignatureClaim | undefined;
  signKeyPem?: string | undefined;
  /** The sequence to sign with `signKeyPem` (a v2 signature); absent: v1. */
  seq?: string | undefined;
  /** How long to wait for another publish to the same store to finish. */
  lockTimeoutMs?: number;
}

export interface PublishResult {
  created: boolean;
  /** False when the store already said exactly this: manifest.json was left untouched. */
  manifestChanged: boolean;
  name: string;
  version: string;
  sha256: string;
  size: number;
  revision: string;
  assigned: string | null;
}

/**
 * Adds a model to a store (docs/central-store.md "Publishing a store"), a folder or a prefix
 * of a bucket: `artifacts/<sha256>` first, each object complete before anything names it,
 * then `manifest.json`, so a reader never sees a manifest that names a missing artifact. The
 * checks are a push's: identifiers, the ExecuTorch format, the signature's form, and
 * immutable versions. Concurrent publishes wait for each other on a folder's lock file; on
 * a bucket the manifest is written only if it is still the one read (If-Match).
 */
export async function publish(request: PublishRequest): Promise<PublishResult> {
  const name = parseModelName(request.name);
  const version = parseVersion(request.version);
  const assign = request.assign === undefined ? null : selectorKey(parseSelector(request.assign));
  const { sha256, size } = await digestFile(request.file);
  // Only programs: a store is for devices, and a gateway refuses other bytes by default.
  acceptFormat(await inspectProgramFile(request.file, size), ['executorch']);
  let claim: SignatureClaim = request.signature ?? { signature: null, keyId: null };
  if (request.signKeyPem !== undefined) claim = signModel(request.signKeyPem, { name, version, sha256, size, seq: request.seq ?? null });
  // Without trust keys this checks the signature's form only; devices verify it.
  new TrustPolicy({ keys: [], requireSignatures: false }).check({ name, version, sha256, size }, claim);

  const store = await openStore(request.store, request.access);
  try {
    return await publishTo(store, { name, version, assign, sha256, size, claim, file: request.file }, request.lockTimeoutMs ?? 30_000);
  } finally {
    store.close();
  }
}

interface Publication {
  name: string;
  version: string;
  assign: string | null;
  sha256: string;
  size: number;
  claim: SignatureClaim;
  file: string;
}

async function publishTo(store: StoreObjects, publication: Publication, lockTimeoutMs: number): Promise<PublishResult> {
  const { name, version, assign, sha256, size, claim, file } = publication;
  const unlock = await store.lock(lockTimeoutMs);
  try {
    const { manifest: current, etag } = await readManifest(store);
    const existing = current.models.find((m) => m.name === name && m.version === version);
    if (existing && existing.sha256 !== sha256) {
      fail('version_conflict', `${name}@${version} is already published with other bytes (sha256 ${existing.sha256}); versions are immutable, publish a new version`);
    }
    const artifact = `artifacts/${sha256}`;
    if (!await store.has(artifact, size)) {
      await store.writeFile(artifact, file, sha256, { contentType: 'application/octet-stream', cacheControl: 'public, max-age=31536000, immutable' });
    }

    const models = existing ? current.models : [...current.models, {
      name, version, sha256, size,
      url: artifact,
      signature: claim.signature,
      keyId: claim.keyId,
      signatureSeq: claim.seq ?? null,
      createdAt: new Date().toISOString(),
    }];
    let assignments = current.assignments;
    const previous = assign === null ? undefined : assignments.find((a) => a.selector === assign);
    const assignmentChanges = assign !== null && (previous?.model !== name || previous.version !== version || previous.rollout !== undefined);
    if (assignmentChanges) {
      assignments = [...assignments.filter((a) => a.selector !== assign), { selector: assign!, model: name, version }];
    }
    const content = { models, assignments, groups: current.groups };
    const revision = revisionOf(content);
    const manifestChanged = !existing || assignmentChanges;
    if (manifestChanged) {
      const manifest: Manifest = { format: MANIFEST_FORMAT, revision, generatedAt: new Date().toISOString(), ...content };
      await store.writeBytes('manifest.json', Buffer.from(`${JSON.stringify(manifest, null, 2)}\n`), { contentType: 'application/json', cacheControl: 'no-cache', replacing: etag });
    }
    return { created: !existing, manifestChanged, name, version, sha256, size, revision: manifestChanged ? revision : current.revision, assigned: assign };
  } finally {
    await unlock();
  }
}


async function readManifest(store: StoreObjects): Promise<{ manifest: Manifest; etag: string | null }> {
  const found = await store.read('manifest.json');
  if (found === null) {
    return { manifest: { format: MANIFEST_FORMAT, revision: '', generatedAt: new Date(0).toISOString(), models: [], assignments: [], groups: {} }, etag: null };
  }
  try {
    return { manifest: parseManifest(JSON.parse(found.bytes.toString('utf8'))), etag: found.etag };
  } catch (error) {
    fail('manifest_invalid', `${store.nameOf('manifest.json')} is not a valid store manifest (${(error as Error).message}); fix or remove it first`);
  }
}
