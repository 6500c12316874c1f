import { createHash, randomUUID } from 'node:crypto';
import { copyFile, open, readdir, rename, rm, stat, type FileHandle } from 'node:fs/promises';
import path from 'node:path';
import type { Readable } from 'node:stream';
import { fail } from '../errors.ts';
import { isDigest } from '../contract/identifiers.ts';
import type { Logger } from '../log.ts';
import { PROGRAM_HEAD_BYTES as HEAD_BYTES } from './executorch.ts';
import type { DiskClaim } from './disk-space.ts';
import { digestFile } from './file-digest.ts';
import { makeDirectory } from '../make-directory.ts';

const TEMP_DIR = 'tmp';

/**
 * Where a blob file lives. `local`: under the state directory, for blobs that may be the
 * only copy (pushed here); systemd never cleans it. `cache`: under the cache directory, for
 * blobs an upstream sync can fetch again; `systemctl clean --what=cache` may remove them.
 */
export type BlobTier = 'local' | 'cache';

export interface BlobDirs {
  /** `<paths.state>/blobs` */
  local: string;
  /** `<paths.cache>` */
  cache: string;
}

/** The blob folders of a configuration's paths. */
export function blobDirsOf(paths: { state: string; cache: string }): BlobDirs {
  return { local: path.join(paths.state, 'blobs'), cache: paths.cache };
}

/** A body received into a temporary file: nothing is visible until `commit`. */
export interface PendingBlob {
  readonly sha256: string;
  readonly size: number;
  /** The first bytes, for format checks without reading the file again. */
  readonly head: Buffer;
  /** The temporary file, for checks that read more than the head (until commit or discard). */
  readonly path: string;
  commit(): Promise<void>;
  discard(): Promise<void>;
}

export interface BlobCheck {
  sha256: string;
  ok: boolean;
  size: number;
  actualSha256: string | null;
}

/** An open blob for one response; `release` when the response is over (GC waits for it). */
export interface BlobReader {
  file: FileHandle;
  release(): void;
}

interface BlobFile {
  size: number;
  tier: BlobTier;
}

/**
 * Content-addressed files named by their sha256, in two folders (see BlobTier). A blob is
 * written to a temporary name, fsynced, renamed into place and the folder fsynced, so after
 * a crash a blob file is either complete or absent. Only complete blobs are indexed.
 *
 * `size()` answers only for blobs that may be served: complete, and accepted by the
 * predicate set with `serveOnly` (the blob collector admits blobs the catalog references),
 * so an artifact whose model was deleted stops being served at once, while its file waits
 * out the garbage-collection grace period.
 */
export class BlobStore {
  readonly #dirs: BlobDirs;
  readonly #log: Logger;
  readonly #files = new Map<string, BlobFile>();
  readonly #listeners = new Set<() => void>();
  /** Open readers and sync holds per digest: such a blob is never deleted. */
  readonly #holds = new Map<string, number>();
  #servable: (sha256: string) => boolean = () => true;

  constructor(dirs: BlobDirs, log: Logger) {
    this.#dirs = dirs;
    this.#log = log;
  }

  async start(): Promise<void> {
    const tempDir = path.join(this.#dirs.local, TEMP_DIR);
    await makeDirectory(tempDir);
    await makeDirectory(this.#dirs.cache);
    // Unfinished pushes: in the local tmp now, in <cache>/tmp before blobs moved to state.
    let leftovers = 0;
    for (const dir of [tempDir, path.join(this.#dirs.cache, TEMP_DIR)]) {
      const names = await readdir(dir).catch(() => [] as string[]);
      await Promise.all(names.map((name) => rm(path.join(dir, name), { force: true, recursive: true })));
      leftovers += names.length;
    }
    await rm(path.join(this.#dirs.cache, TEMP_DIR), { force: true, recursive: true });
    if (leftovers > 0) this.#log.warn({ count: leftovers }, 'removed unfinished uploads left by an earlier run');
    this.#files.clear();
    for (const tier of ['local', 'cache'] as const) {
      for (const entry of await readdir(this.#dirs[tier], { withFileTypes: true })) {
        if (!entry.isFile() || !isDigest(entry.name)) continue;
        const file = path.join(this.#dirs[tier], entry.name);
        if (tier === 'cache' && this.#files.has(entry.name)) {
          // Kept in both places (a crash between a move's rename and its unlink): the local
          // copy is the one that counts.
          await rm(file, { force: true });
          continue;
        }
        const { size } = await stat(file);
        this.#files.set(entry.name, { size, tier });
      }
    }
  }

  async stop(): Promise<void> {
    this.#listeners.clear();
  }

  /** Called whenever a blob appears or disappears (a push, a sync, a corrupt or collected one removed). */
  onChange(listener: () => void): () => void {
    this.#listeners.add(listener);
    return () => this.#listeners.delete(listener);
  }

  /** Only blobs accepted by `servable` are answered by `size()` (and so served). */
  serveOnly(servable: (sha256: string) => boolean): void {
    this.#servable = servable;
    this.#changed();
  }

  /** Size of a complete blob that may be served, or undefined. */
  size(sha256: string): number | undefined {
    const file = this.#files.get(sha256);
    return file && this.#servable(sha256) ? file.size : undefined;
  }

  /** True when this blob may be served, complete, at the size its catalog entry records. */
  holds(blob: { sha256: string; size: number }): boolean {
    return this.size(blob.sha256) === blob.size;
  }

  /** Size of a complete blob file, served or not. */
  storedSize(sha256: string): number | undefined {
    return this.#files.get(sha256)?.size;
  }

  tierOf(sha256: string): BlobTier | undefined {
    return this.#files.get(sha256)?.tier;
  }

  /** Every complete blob file, served or not. */
  digests(): string[] {
    return [...this.#files.keys()];
  }

  /** The folder of a tier (for free-space checks on its disk). */
  dirOf(tier: BlobTier): string {
    return this.#dirs[tier];
  }

  pathOf(sha256: string): string {
    return path.join(this.#dirs[this.#files.get(sha256)?.tier ?? 'local'], sha256);
  }

  get count(): number {
    return this.#files.size;
  }

  get totalBytes(): number {
    let total = 0;
    for (const { size } of this.#files.values()) total += size;
    return total;
  }

  /** Bytes per folder, for /healthz. */
  bytesByTier(): Record<BlobTier, number> {
    const bytes = { local: 0, cache: 0 };
    for (const { size, tier } of this.#files.values()) bytes[tier] += size;
    return bytes;
  }

  /** Opens a servable blob for one response; undefined when it is not (or no longer) there. */
  async openForRead(sha256: string): Promise<BlobReader | undefined> {
    if (this.size(sha256) === undefined) return undefined;
    const release = this.hold([sha256]);
    const file = await open(this.pathOf(sha256)).catch(() => undefined);
    if (!file) {
      release();
      return undefined;
    }
    return { file, release };
  }

  /** Keeps blobs from garbage collection (a download in progress, a sync that needs them). */
  hold(digests: Iterable<string>): () => void {
    const held = [...new Set(digests)];
    for (const sha256 of held) this.#holds.set(sha256, (this.#holds.get(sha256) ?? 0) + 1);
    let released = false;
    return () => {
      if (released) return;
      released = true;
      for (const sha256 of held) {
        const count = this.#holds.get(sha256)! - 1;
        if (count > 0) this.#holds.set(sha256, count);
        else this.#holds.delete(sha256);
      }
    };
  }

  isHeld(sha256: string): boolean {
    return this.#holds.has(sha256);
  }

  /**
   * Streams `source` into a temporary file under the local folder while hashing it. More than
   * `maxBytes` stops the transfer with `body_too_large` and leaves nothing behind. The source
   * is never destroyed here, so an HTTP layer can still answer on the same connection.
   * A committed push lives in the local folder: it may be the only copy. With `room`, more
   * than its limit stops the transfer with `insufficient_storage`, also leaving nothing.
   */
  async receive(source: Readable, maxBytes: number, room?: DiskClaim): Promise<PendingBlob> {
    const tempPath = path.join(this.#dirs.local, TEMP_DIR, `${randomUUID()}.part`);
    const file = await open(tempPath, 'wx', 0o644);
    const hash = createHash('sha256');
    const headChunks: Buffer[] = [];
    let headLength = 0;
    let size = 0;
    try {
      for await (const chunk of source.iterator({ destroyOnReturn: false }) as AsyncIterable<Buffer>) {
        size += chunk.length;
        if (size > maxBytes) fail('body_too_large', `the artifact is larger than artifacts.maxBytes (${maxBytes} bytes)`);
        if (room && size > room.limit) {
          fail('insufficient_storage', `the disk had room for ${room.limit} bytes of this artifact beyond its reserve (artifacts.diskReserveBytes), and more came; nothing was stored. Free space on the gateway's disk and try again`);
        }
        hash.update(chunk);
        if (headLength < HEAD_BYTES) {
          headChunks.push(chunk.subarray(0, HEAD_BYTES - headLength));
          headLength += headChunks.at(-1)!.length;
        }
        await writeFully(file, chunk);
        room?.wrote(chunk.length);
      }
      await file.sync();
    } catch (error) {
      await file.close().catch(() => {});
      await rm(tempPath, { force: true });
      throw error;
    }
    await file.close();

    const sha256 = hash.digest('hex');
    let settled = false;
    return {
      sha256,
      size,
      head: Buffer.concat(headChunks),
      path: tempPath,
      commit: async () => {
        if (settled) return;
        settled = true;
        await this.#place(tempPath, sha256, size, 'local');
      },
      discard: async () => {
        if (settled) return;
        settled = true;
        await rm(tempPath, { force: true });
      },
    };
  }

  /**
   * Takes a complete, verified file (fsynced by the caller, on the cache folder's file
   * system) into the cache folder under its digest. A blob already held locally stays there.
   */
  async adopt(file: string, sha256: string, size: number): Promise<void> {
    if (this.#files.get(sha256)?.tier === 'local') {
      await rm(file, { force: true });
      return;
    }
    await this.#place(file, sha256, size, 'cache');
  }

  /**
   * Moves a blob from the cache folder to the local one: a locally pushed model's blob must
   * not live where the OS may clean it. Copies when the folders are on different file systems.
   */
  async keepLocally(sha256: string): Promise<void> {
    const current = this.#files.get(sha256);
    if (!current || current.tier === 'local') return;
    const from = path.join(this.#dirs.cache, sha256);
    const temp = path.join(this.#dirs.local, TEMP_DIR, `${randomUUID()}.move`);
    await copyFile(from, temp);
    const handle = await open(temp, 'r+');
    try {
      await handle.sync();
    } finally {
      await handle.close();
    }
    await this.#place(temp, sha256, current.size, 'local');
  }

  /** Deletes a blob file: unindexed first, so it is not offered while it goes. */
  async remove(sha256: string): Promise<void> {
    const file = this.#files.get(sha256);
    if (!file) return;
    this.#files.delete(sha256);
    this.#changed();
    await rm(path.join(this.#dirs[file.tier], sha256), { force: true });
  }

  /** Re-reads a blob and compares it with its name: the full check behind `modelferry check`. */
  async check(sha256: string): Promise<BlobCheck> {
    let actualSha256: string;
    let size: number;
    const file = this.pathOf(sha256);
    try {
      ({ sha256: actualSha256, size } = await digestFile(file));
    } catch (error) {
      if ((error as NodeJS.ErrnoException).code !== 'ENOENT') throw error;
      if (this.#files.delete(sha256)) this.#changed();
      return { sha256, ok: false, size: 0, actualSha256: null };
    }
    const ok = actualSha256 === sha256;
    // A blob that no longer matches its name must never be served again.
    if (!ok) {
      this.#files.delete(sha256);
      await rm(file, { force: true });
      this.#changed();
      this.#log.error({ sha256, actualSha256 }, 'blob is corrupt and was removed');
    }
    return { sha256, ok, size, actualSha256 };
  }

  /** rename into `tier`, fsync the folder, index; then drop a copy left in the other folder. */
  async #place(from: string, sha256: string, size: number, tier: BlobTier): Promise<void> {
    const previous = this.#files.get(sha256);
    await rename(from, path.join(this.#dirs[tier], sha256));
    await syncDir(this.#dirs[tier]);
    this.#files.set(sha256, { size, tier });
    if (previous && previous.tier !== tier) await rm(path.join(this.#dirs[previous.tier], sha256), { force: true });
    this.#changed();
  }

  #changed(): void {
    for (const listener of this.#listeners) listener();
  }
}

export async function syncDir(dir: string): Promise<void> {
  const handle = await open(dir, 'r');
  try {
    await handle.sync();
  } finally {
    await handle.close();
  }
}

export async function writeFully(file: FileHandle, chunk: Buffer): Promise<void> {
  let offset = 0;
  while (offset < chunk.length) {
    const { bytesWritten } = await file.write(chunk, offset, chunk.length - offset);
    offset += bytesWritten;
  }
}
