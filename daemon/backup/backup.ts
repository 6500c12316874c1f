import { readFile, open, type FileHandle } from 'node:fs/promises';
import type { DeviceRegistry } from '../devices/device-registry.ts';
import type { BlobStore } from '../store/blob-store.ts';
import type { Database } from '../store/database.ts';
import { VERSION } from '../version.ts';
import { TAR_END, tarHeader, tarPadding } from './tar.ts';

// A backup is a plain tar: a manifest, the config file the daemon runs on, every LevelDB
// entry (catalog layers, devices, gateway id, sync state) read from one snapshot, and the
// blobs those entries name. Restoring it (restore.ts) into an empty state directory gives a
// replacement gateway the same catalog, tokens and identity.

export const BACKUP_FORMAT = 'modelferry.backup/v1';
export const MANIFEST_MEMBER = 'modelferry-backup.json';
export const CONFIG_MEMBER = 'config.yaml';
export const DATABASE_MEMBER = 'database.jsonl';
export const BLOB_PREFIX = 'blobs/';

export interface BackupManifest {
  format: typeof BACKUP_FORMAT;
  createdAt: string;
  gatewayId: string;
  /** The modelferry version that wrote it. */
  version: string;
  entries: number;
  blobs: Array<{ sha256: string; size: number }>;
  /** Whether config.yaml is in the archive (not when the daemon ran on its embedded default). */
  config: boolean;
}

/** One LevelDB entry per line; utf8 text where it round-trips (it does for JSON values), base64 otherwise. */
export type DatabaseLine = { k: string; v: string } | { k64: string; v64: string };

export interface BackupSources {
  database: Database;
  devices: DeviceRegistry;
  blobs: BlobStore;
  gatewayId: string;
  /** The config file the daemon loaded, or null for the embedded default. */
  configFile: string | null;
}

const CHUNK = 256 * 1024;
const SHA256 = /^[0-9a-f]{64}$/;

/**
 * The archive, produced as it is sent. Everything it holds is fixed before the first byte:
 * the database entries come from one iterator (a LevelDB snapshot), and every blob they
 * name is opened at once, so a blob deleted while the backup streams is still read whole.
 */
export async function* backupArchive(sources: BackupSources, now = new Date()): AsyncGenerator<Buffer> {
  // "Last seen" lives in memory between flushes; the backup should carry it.
  await sources.devices.flush();
  const lines: string[] = [];
  const named = new Set<string>();
  for await (const [key, value] of sources.database.level.iterator<Buffer, Buffer>({ keyEncoding: 'buffer', valueEncoding: 'buffer' })) {
    const k = key.toString('utf8');
    const v = value.toString('utf8');
    const line: DatabaseLine = Buffer.from(k, 'utf8').equals(key) && Buffer.from(v, 'utf8').equals(value)
      ? { k, v } : { k64: key.toString('base64'), v64: value.toString('base64') };
    lines.push(JSON.stringify(line));
    for (const sha256 of blobsNamedBy(v)) named.add(sha256);
  }
  const opened: Array<{ sha256: string; size: number; file: FileHandle }> = [];
  try {
    for (const sha256 of [...named].sort()) {
      if (sources.blobs.size(sha256) === undefined) continue;
      const file = await open(sources.blobs.pathOf(sha256), 'r').catch(() => undefined);
      if (!file) continue;
      opened.push({ sha256, size: (await file.stat()).size, file });
    }
    const config = sources.configFile === null ? null : await readFile(sources.configFile);
    const database = Buffer.from(lines.length ? `${lines.join('\n')}\n` : '', 'utf8');
    const manifest: BackupManifest = {
      format: BACKUP_FORMAT,
      createdAt: now.toISOString(),
      gatewayId: sources.gatewayId,
      version: VERSION,
      entries: lines.length,
      blobs: opened.map(({ sha256, size }) => ({ sha256, size })),
      config: config !== null,
    };
    yield* member(MANIFEST_MEMBER, Buffer.from(`${JSON.stringify(manifest, null, 2)}\n`), now);
    if (config) yield* member(CONFIG_MEMBER, config, now);
    yield* member(DATABASE_MEMBER, database, now);
    for (const { sha256, size, file } of opened) {
      yield tarHeader(`${BLOB_PREFIX}${sha256}`, size, now, 0o644);
      let position = 0;
      while (position < size) {
        const buffer = Buffer.alloc(Math.min(CHUNK, size - position));
        const { bytesRead } = await file.read(buffer, 0, buffer.length, position);
        if (bytesRead === 0) throw new Error(`blob ${sha256} shrank while it was being backed up`);
        position += bytesRead;
        yield bytesRead === buffer.length ? buffer : buffer.subarray(0, bytesRead);
      }
      yield tarPadding(size);
    }
    yield TAR_END;
  } finally {
    await Promise.all(opened.map(({ file }) => file.close()));
  }
}

function* member(name: string, content: Buffer, now: Date): Generator<Buffer> {
  yield tarHeader(name, content.length, now);
  yield content;
  yield tarPadding(content.length);
}

/**
 * The blobs a stored value refers to: a top-level `sha256` of a JSON object (a model
 * record, whichever table or layer holds it). Device records keep theirs under `report`,
 * so what a device runs is not taken for a catalog entry.
 */
function blobsNamedBy(value: string): string[] {
  if (!value.startsWith('{') || !value.includes('"sha256"')) return [];
  try {
    const parsed = JSON.parse(value) as { sha256?: unknown };
    return typeof parsed.sha256 === 'string' && SHA256.test(parsed.sha256) ? [parsed.sha256] : [];
  } catch {
    return [];
  }
}
