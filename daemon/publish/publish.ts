import { createHash, randomUUID } from 'node:crypto';
import { createReadStream } from 'node:fs';
import { mkdir, open, readFile, rename, rm, stat } from 'node:fs/promises';
import path from 'node:path';
import { setTimeout as sleep } from 'node:timers/promises';
import { fail } from '../errors.ts';
import { parseModelName, parseSelector, parseVersion, selectorKey } from '../contract/identifiers.ts';
import { signModel } from '../signing/signature.ts';
import { TrustPolicy, type SignatureClaim } from '../signing/trust.ts';
import { syncDir, writeFully } from '../store/blob-store.ts';
import { acceptFormat, inspectProgramFile } from '../store/executorch.ts';
import { digestFile } from '../store/file-digest.ts';
import { MANIFEST_FORMAT, parseManifest, revisionOf, type Manifest } from '../sync/manifest.ts';

export interface PublishRequest {
  storeDir: string;
  file: string;
  name: string;
  version: string;
  /** A selector to assign the model to (replacing that selector's assignment). */
  assign?: string | undefined;
  /** A signature made elsewhere, or a private key (PEM) to sign with here. */
  signature?: SignatureClaim | undefined;
  signKeyPem?: string | undefined;
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

const LOCK = '.modelferry-publish.lock';
/** A lock older than this was left by a publish that died; it is taken over. */
const STALE_LOCK_MS = 10 * 60_000;

/**
 * Adds a model to a static store folder (docs/central-store.md "Publishing a store"):
 * `artifacts/<sha256>` first, written under a temporary name, fsynced and renamed, then
 * `manifest.json` the same way, so a reader (or an upload of the folder, artifacts before
 * manifest) never sees a manifest that names a missing artifact. The checks are a push's:
 * identifiers, the ExecuTorch format, the signature's form, and immutable versions.
 */
export async function publish(request: PublishRequest): Promise<PublishResult> {
  const name = parseModelName(request.name);
  const version = parseVersion(request.version);
  const assign = request.assign === undefined ? null : selectorKey(parseSelector(request.assign));
  const { sha256, size } = await digestFile(request.file);
  // Only programs: a store is for devices, and a gateway refuses other bytes by default.
  acceptFormat(await inspectProgramFile(request.file, size), ['executorch']);
  let claim: SignatureClaim = request.signature ?? { signature: null, keyId: null };
  if (request.signKeyPem !== undefined) claim = signModel(request.signKeyPem, { name, version, sha256, size });
  // Without trust keys this checks the signature's form only; devices verify it.
  new TrustPolicy({ keys: [], requireSignatures: false }).check({ name, version, sha256, size }, claim);

  const storeDir = path.resolve(request.storeDir);
  const artifacts = path.join(storeDir, 'artifacts');
  await mkdir(artifacts, { recursive: true, mode: 0o755 });
  const unlock = await lock(storeDir, request.lockTimeoutMs ?? 30_000);
  try {
    const manifestFile = path.join(storeDir, 'manifest.json');
    const current = await readManifest(manifestFile);
    const existing = current.models.find((m) => m.name === name && m.version === version);
    if (existing && existing.sha256 !== sha256) {
      fail('version_conflict', `${name}@${version} is already published with other bytes (sha256 ${existing.sha256}); versions are immutable, publish a new version`);
    }
    await placeArtifact(request.file, artifacts, sha256, size);

    const models = existing ? current.models : [...current.models, {
      name, version, sha256, size,
      url: `artifacts/${sha256}`,
      signature: claim.signature,
      keyId: claim.keyId,
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
      await writeAtomically(manifestFile, `${JSON.stringify(manifest, null, 2)}\n`);
    }
    return { created: !existing, manifestChanged, name, version, sha256, size, revision: manifestChanged ? revision : current.revision, assigned: assign };
  } finally {
    await unlock();
  }
}


async function readManifest(file: string): Promise<Manifest> {
  let text: string;
  try {
    text = await readFile(file, 'utf8');
  } catch (error) {
    if ((error as NodeJS.ErrnoException).code !== 'ENOENT') throw error;
    return { format: MANIFEST_FORMAT, revision: '', generatedAt: new Date(0).toISOString(), models: [], assignments: [], groups: {} };
  }
  try {
    return parseManifest(JSON.parse(text));
  } catch (error) {
    fail('manifest_invalid', `${file} is not a valid store manifest (${(error as Error).message}); fix or remove it first`);
  }
}

/** Copies the file into the store under its digest, checking the copy's digest (the source may change meanwhile). */
async function placeArtifact(source: string, dir: string, sha256: string, size: number): Promise<void> {
  const target = path.join(dir, sha256);
  if ((await stat(target).catch(() => undefined))?.size === size) return;
  // A dot name in the same folder: same file system for the rename, and skipped by
  // `aws s3 sync --exclude '.*'`; removed on any failure.
  const temp = path.join(dir, `.${sha256}.${randomUUID()}.tmp`);
  try {
    const out = await open(temp, 'wx', 0o644);
    const hash = createHash('sha256');
    try {
      for await (const chunk of createReadStream(source, { highWaterMark: 1 << 20 }) as AsyncIterable<Buffer>) {
        hash.update(chunk);
        await writeFully(out, chunk);
      }
      await out.sync();
    } finally {
      await out.close();
    }
    if (hash.digest('hex') !== sha256) fail('digest_mismatch', `${source} changed while it was being published; nothing was published`);
    await rename(temp, target);
    await syncDir(dir);
  } finally {
    await rm(temp, { force: true });
  }
}

async function writeAtomically(file: string, text: string): Promise<void> {
  const temp = path.join(path.dirname(file), `.${path.basename(file)}.${randomUUID()}.tmp`);
  try {
    const out = await open(temp, 'wx', 0o644);
    try {
      await out.writeFile(text);
      await out.sync();
    } finally {
      await out.close();
    }
    await rename(temp, file);
    await syncDir(path.dirname(file));
  } finally {
    await rm(temp, { force: true });
  }
}

/** One publish per store at a time, so two pipelines cannot lose each other's models. */
async function lock(storeDir: string, timeoutMs: number): Promise<() => Promise<void>> {
  const file = path.join(storeDir, LOCK);
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    try {
      const handle = await open(file, 'wx', 0o644);
      await handle.writeFile(`${process.pid}\n`);
      await handle.close();
      return () => rm(file, { force: true });
    } catch (error) {
      if ((error as NodeJS.ErrnoException).code !== 'EEXIST') throw error;
    }
    const age = await stat(file).then((s) => Date.now() - s.mtimeMs, () => 0);
    if (age > STALE_LOCK_MS) {
      await rm(file, { force: true });
      continue;
    }
    if (Date.now() > deadline) throw new Error(`another publish holds ${file}; if none is running, remove that file`);
    await sleep(100);
  }
}
