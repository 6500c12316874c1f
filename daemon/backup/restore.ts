import { randomBytes } from 'node:crypto';
import { createReadStream, existsSync } from 'node:fs';
import { chmod, chown, mkdir, open, readdir, readFile, realpath, rename, rm, stat, writeFile } from 'node:fs/promises';
import path from 'node:path';
import { Level } from 'level';
import { createLogger } from '../log.ts';
import { BlobStore, blobDirsOf, type BlobDirs } from '../store/blob-store.ts';
import {
  BACKUP_FORMAT, BLOB_PREFIX, CONFIG_MEMBER, DATABASE_MEMBER, MANIFEST_MEMBER, type BackupManifest, type DatabaseLine,
} from './backup.ts';
import { listTar, readMember, type TarMember } from './tar.ts';

// Restoring runs offline, before the gateway starts on a replacement machine: the database
// is rebuilt beside the state directory and renamed into place only once it and every blob
// are complete, so a failed restore leaves nothing half-done where the gateway looks.

export class RestoreError extends Error {
  constructor(message: string) {
    super(message);
    this.name = 'RestoreError';
  }
}

export interface RestoreOptions {
  file: string;
  statePath: string;
  cachePath: string;
  /** Where the backup's config file goes; null leaves the configuration alone. */
  configTarget: string | null;
  /** Move an existing database or a different config file aside instead of refusing. */
  force: boolean;
  now?: Date;
}

export interface RestoreResult {
  manifest: BackupManifest;
  /** Where an existing state directory was moved (with --force). */
  stateMovedTo: string | null;
  blobsWritten: number;
  config: { action: 'written' | 'unchanged' | 'not in backup' | 'left alone'; path: string | null; movedTo: string | null };
}

const BATCH = 1000;

export async function restoreBackup(options: RestoreOptions): Promise<RestoreResult> {
  const stamp = (options.now ?? new Date()).toISOString().replace(/[:.]/g, '-');
  const archive = await open(options.file, 'r').catch((error: NodeJS.ErrnoException) => {
    throw new RestoreError(`cannot read ${options.file}: ${error.code ?? error.message}`);
  });
  try {
    let members: TarMember[];
    try {
      members = await listTar(archive);
    } catch (error) {
      throw new RestoreError(`${options.file} is not a modelferry backup: ${(error as Error).message}`);
    }
    const byName = new Map(members.map((m) => [m.name, m]));
    const manifest = await readManifest(archive, byName.get(MANIFEST_MEMBER), options.file);
    const database = byName.get(DATABASE_MEMBER);
    if (!database) throw new RestoreError(`${options.file} has no ${DATABASE_MEMBER}`);
    for (const blob of manifest.blobs) {
      const entry = byName.get(`${BLOB_PREFIX}${blob.sha256}`);
      if (!entry || entry.size !== blob.size) throw new RestoreError(`${options.file} lacks blob ${blob.sha256} (${blob.size} bytes) that its manifest lists`);
    }
    const configMember = byName.get(CONFIG_MEMBER);
    const config = configMember ? await readMember(archive, configMember) : null;

    // Every refusal comes before the first write.
    const state = await checkState(options.statePath, options.force);
    const configPlan = await planConfig(options.configTarget, config, options.force);

    const target = state.real;
    await mkdir(path.dirname(target), { recursive: true });
    const building = `${target}.restoring-${randomBytes(4).toString('hex')}`;
    try {
      await writeDatabase(building, (await readMember(archive, database)).toString('utf8'));
      const blobsWritten = await writeBlobs(options.file, blobDirsOf({ state: building, cache: options.cachePath }), manifest, byName);
      let stateMovedTo: string | null = null;
      if (state.exists) {
        stateMovedTo = `${target}.before-restore-${stamp}`;
        await rename(target, stateMovedTo);
      }
      await rename(building, target);
      const movedConfig = await applyConfig(configPlan, config, stamp);
      return { manifest, stateMovedTo, blobsWritten, config: movedConfig };
    } finally {
      await rm(building, { recursive: true, force: true });
    }
  } finally {
    await archive.close();
  }
}

async function readManifest(archive: import('node:fs/promises').FileHandle, member: TarMember | undefined, file: string): Promise<BackupManifest> {
  if (!member) throw new RestoreError(`${file} is not a modelferry backup (no ${MANIFEST_MEMBER})`);
  let manifest: BackupManifest;
  try {
    manifest = JSON.parse((await readMember(archive, member)).toString('utf8')) as BackupManifest;
  } catch {
    throw new RestoreError(`${file}: ${MANIFEST_MEMBER} is not JSON`);
  }
  if (manifest.format !== BACKUP_FORMAT) throw new RestoreError(`${file} is in format ${String(manifest.format)}; this modelferry restores ${BACKUP_FORMAT}`);
  return manifest;
}

/** The state directory may be absent or empty; one holding a database needs --force and must not be in use. */
async function checkState(statePath: string, force: boolean): Promise<{ real: string; exists: boolean }> {
  if (!existsSync(statePath)) return { real: path.resolve(statePath), exists: false };
  const real = await realpath(statePath);
  const entries = await readdir(real);
  if (entries.length === 0) return { real, exists: false };
  if (existsSync(path.join(real, 'CURRENT'))) {
    const db = new Level(real);
    try {
      await db.open();
    } catch (error) {
      const cause = (error as { cause?: { code?: string } }).cause;
      if (cause?.code === 'LEVEL_LOCKED') {
        throw new RestoreError(`the database in ${statePath} is in use: stop the gateway first (sudo systemctl stop modelferry)`);
      }
      // Unreadable: nothing worth keeping in place, but still only moved aside with --force.
    } finally {
      await db.close();
    }
  }
  if (!force) {
    throw new RestoreError(`${statePath} already holds a gateway's state; restore into an empty state directory, or pass --force to move it aside (to ${real}.before-restore-<time>)`);
  }
  return { real, exists: true };
}

interface ConfigPlan {
  target: string | null;
  action: RestoreResult['config']['action'];
  moveExisting: boolean;
}

async function planConfig(target: string | null, config: Buffer | null, force: boolean): Promise<ConfigPlan> {
  if (target === null) return { target, action: 'left alone', moveExisting: false };
  if (config === null) return { target, action: 'not in backup', moveExisting: false };
  if (!existsSync(target)) return { target, action: 'written', moveExisting: false };
  if ((await readFile(target)).equals(config)) return { target, action: 'unchanged', moveExisting: false };
  if (!force) {
    throw new RestoreError(`${target} exists and differs from the backup's config; pass --force to replace it (the current one is kept as ${target}.before-restore-<time>)`);
  }
  return { target, action: 'written', moveExisting: true };
}

async function applyConfig(plan: ConfigPlan, config: Buffer | null, stamp: string): Promise<RestoreResult['config']> {
  if (plan.action !== 'written' || plan.target === null || config === null) return { action: plan.action, path: plan.target, movedTo: null };
  await mkdir(path.dirname(plan.target), { recursive: true });
  const temp = `${plan.target}.restoring-${randomBytes(4).toString('hex')}`;
  // It holds the tokens. A config it replaces keeps its owner, group and mode: under the
  // systemd unit that is root:modelferry 0640, which the service needs to read it. A new one
  // is its owner's alone, unless the folder is set-group-id (install.sh's /etc/modelferry,
  // whose group is the service's): then that group may read it too.
  const folder = await stat(path.dirname(plan.target));
  const replaced = plan.moveExisting ? await stat(plan.target) : null;
  const mode = replaced ? replaced.mode & 0o777 : (folder.mode & 0o2000) !== 0 ? 0o640 : 0o600;
  await writeFile(temp, config, { mode: 0o600, flush: true });
  if (replaced && process.getuid?.() === 0) await chown(temp, replaced.uid, replaced.gid);
  await chmod(temp, mode);
  let movedTo: string | null = null;
  if (plan.moveExisting) {
    movedTo = `${plan.target}.before-restore-${stamp}`;
    await rename(plan.target, movedTo);
  }
  await rename(temp, plan.target);
  return { action: 'written', path: plan.target, movedTo };
}

async function writeDatabase(dir: string, text: string): Promise<void> {
  const db = new Level<Buffer, Buffer>(dir, { keyEncoding: 'buffer', valueEncoding: 'buffer' });
  await db.open();
  try {
    let batch: Array<{ type: 'put'; key: Buffer; value: Buffer }> = [];
    for (const line of text.split('\n')) {
      if (line === '') continue;
      const entry = JSON.parse(line) as DatabaseLine;
      batch.push('k' in entry
        ? { type: 'put', key: Buffer.from(entry.k, 'utf8'), value: Buffer.from(entry.v, 'utf8') }
        : { type: 'put', key: Buffer.from(entry.k64, 'base64'), value: Buffer.from(entry.v64, 'base64') });
      if (batch.length >= BATCH) {
        await db.batch(batch, { sync: true });
        batch = [];
      }
    }
    if (batch.length > 0) await db.batch(batch, { sync: true });
  } finally {
    await db.close();
  }
}

/**
 * Each blob goes through the blob store, which hashes it: a damaged archive cannot plant a
 * wrong blob. They land in the state directory being built (a backup may hold the only
 * copy), so they move into place with it.
 */
async function writeBlobs(file: string, dirs: BlobDirs, manifest: BackupManifest, members: Map<string, TarMember>): Promise<number> {
  const store = new BlobStore(dirs, createLogger('silent'));
  await store.start();
  let written = 0;
  try {
    for (const { sha256, size } of manifest.blobs) {
      if (store.size(sha256) === size) continue;
      const member = members.get(`${BLOB_PREFIX}${sha256}`)!;
      const source = size === 0
        ? (await import('node:stream')).Readable.from([])
        : createReadStream(file, { start: member.offset, end: member.offset + size - 1 });
      const pending = await store.receive(source, Number.MAX_SAFE_INTEGER);
      if (pending.sha256 !== sha256) {
        await pending.discard();
        throw new RestoreError(`blob ${sha256} in ${file} is damaged (its bytes hash to ${pending.sha256})`);
      }
      await pending.commit();
      written++;
    }
  } finally {
    await store.stop();
  }
  return written;
}
