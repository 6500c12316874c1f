import { createHash, randomUUID } from 'node:crypto';
import { mkdir, open, readdir, rename, rm, stat } from 'node:fs/promises';
import path from 'node:path';
import type { Readable } from 'node:stream';
import { fail } from '../errors.ts';
import { isDigest } from '../contract/identifiers.ts';
import type { Logger } from '../log.ts';
import { PROGRAM_HEAD_BYTES as HEAD_BYTES } from './executorch.ts';
import { digestFile } from './file-digest.ts';

const TEMP_DIR = 'tmp';

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

/**
 * Content-addressed files, named by their sha256, under the cache directory. A blob is
 * written to tmp/, fsynced, renamed into place and the directory fsynced, so after a
 * crash a blob file is either complete or absent. Only complete blobs are in the index,
 * and only indexed blobs are served.
 */
export class BlobStore {
  readonly #dir: string;
  readonly #log: Logger;
  readonly #index = new Map<string, number>();
  readonly #listeners = new Set<() => void>();

  constructor(dir: string, log: Logger) {
    this.#dir = dir;
    this.#log = log;
  }

  async start(): Promise<void> {
    const tempDir = path.join(this.#dir, TEMP_DIR);
    await mkdir(tempDir, { recursive: true });
    const leftovers = await readdir(tempDir);
    await Promise.all(leftovers.map((name) => rm(path.join(tempDir, name), { force: true, recursive: true })));
    if (leftovers.length > 0) this.#log.warn({ count: leftovers.length }, 'removed unfinished uploads left by an earlier run');
    this.#index.clear();
    for (const entry of await readdir(this.#dir, { withFileTypes: true })) {
      if (!entry.isFile() || !isDigest(entry.name)) continue;
      const { size } = await stat(path.join(this.#dir, entry.name));
      this.#index.set(entry.name, size);
    }
  }

  async stop(): Promise<void> {
    this.#listeners.clear();
  }

  /** Called whenever a blob appears or disappears (a push, a restore, a corrupt one removed). */
  onChange(listener: () => void): () => void {
    this.#listeners.add(listener);
    return () => this.#listeners.delete(listener);
  }

  /** Size of a complete blob, or undefined when the cache does not hold it. */
  size(sha256: string): number | undefined {
    return this.#index.get(sha256);
  }

  /** True when the cache holds this blob complete, at the size its catalog entry records. */
  holds(blob: { sha256: string; size: number }): boolean {
    return this.#index.get(blob.sha256) === blob.size;
  }

  pathOf(sha256: string): string {
    return path.join(this.#dir, sha256);
  }

  get count(): number {
    return this.#index.size;
  }

  get totalBytes(): number {
    let total = 0;
    for (const size of this.#index.values()) total += size;
    return total;
  }

  /**
   * Streams `source` into a temporary file while hashing it. More than `maxBytes` stops the
   * transfer with `body_too_large` and leaves nothing behind. The source is never destroyed
   * here, so an HTTP layer can still answer on the same connection.
   */
  async receive(source: Readable, maxBytes: number): Promise<PendingBlob> {
    const tempPath = path.join(this.#dir, TEMP_DIR, `${randomUUID()}.part`);
    const file = await open(tempPath, 'wx', 0o644);
    const hash = createHash('sha256');
    const headChunks: Buffer[] = [];
    let headLength = 0;
    let size = 0;
    try {
      for await (const chunk of source.iterator({ destroyOnReturn: false }) as AsyncIterable<Buffer>) {
        size += chunk.length;
        if (size > maxBytes) fail('body_too_large', `the artifact is larger than artifacts.maxBytes (${maxBytes} bytes)`);
        hash.update(chunk);
        if (headLength < HEAD_BYTES) {
          headChunks.push(chunk.subarray(0, HEAD_BYTES - headLength));
          headLength += headChunks.at(-1)!.length;
        }
        await writeFully(file, chunk);
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
        await rename(tempPath, this.pathOf(sha256));
        await this.#syncDir();
        this.#index.set(sha256, size);
        this.#changed();
      },
      discard: async () => {
        if (settled) return;
        settled = true;
        await rm(tempPath, { force: true });
      },
    };
  }

  /** Re-reads a blob and compares it with its name: the full check behind `modelferry check`. */
  async check(sha256: string): Promise<BlobCheck> {
    let actualSha256: string;
    let size: number;
    try {
      ({ sha256: actualSha256, size } = await digestFile(this.pathOf(sha256)));
    } catch (error) {
      if ((error as NodeJS.ErrnoException).code !== 'ENOENT') throw error;
      if (this.#index.delete(sha256)) this.#changed();
      return { sha256, ok: false, size: 0, actualSha256: null };
    }
    const ok = actualSha256 === sha256;
    // A blob that no longer matches its name must never be served again.
    if (!ok) {
      this.#index.delete(sha256);
      await rm(this.pathOf(sha256), { force: true });
      this.#changed();
      this.#log.error({ sha256, actualSha256 }, 'blob is corrupt and was removed');
    }
    return { sha256, ok, size, actualSha256 };
  }

  #changed(): void {
    for (const listener of this.#listeners) listener();
  }

  async #syncDir(): Promise<void> {
    const dir = await open(this.#dir, 'r');
    try {
      await dir.sync();
    } finally {
      await dir.close();
    }
  }
}

async function writeFully(file: import('node:fs/promises').FileHandle, chunk: Buffer): Promise<void> {
  let offset = 0;
  while (offset < chunk.length) {
    const { bytesWritten } = await file.write(chunk, offset, chunk.length - offset);
    offset += bytesWritten;
  }
}
