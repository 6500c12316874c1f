import { readFile } from 'node:fs/promises';
import type { BlobStore } from './blob-store.ts';

/**
 * The most recently served blobs, in memory up to `artifacts.memoryCacheBytes`, so that a
 * fleet downloading the same model (and resuming it piece by piece with Range) costs no
 * open, read or close per request. Blobs are immutable, so an entry is only ever dropped:
 * when the store loses the blob, or to make room (least recently served first). A blob
 * larger than the limit is never held; it streams from disk.
 */
export class HotBlobs {
  readonly #blobs: BlobStore;
  readonly #limit: number;
  /** Map order is recency: a hit moves its entry to the end. */
  readonly #entries = new Map<string, Buffer>();
  readonly #loading = new Map<string, Promise<Buffer | undefined>>();
  #bytes = 0;
  #unsubscribe: (() => void) | undefined;

  constructor(blobs: BlobStore, limitBytes: number) {
    this.#blobs = blobs;
    this.#limit = limitBytes;
  }

  async start(): Promise<void> {
    this.#unsubscribe = this.#blobs.onChange(() => this.#prune());
  }

  async stop(): Promise<void> {
    this.#unsubscribe?.();
    this.#entries.clear();
    this.#bytes = 0;
  }

  get bytes(): number {
    return this.#bytes;
  }

  /** The bytes if they are held now, without waiting. */
  peek(sha256: string): Buffer | undefined {
    const bytes = this.#entries.get(sha256);
    if (bytes) {
      this.#entries.delete(sha256);
      this.#entries.set(sha256, bytes);
    }
    return bytes;
  }

  /**
   * The bytes of a blob of `size` bytes, read into memory on first use (concurrent first
   * uses share one read), or undefined when it does not fit or cannot be read.
   */
  async get(sha256: string, size: number): Promise<Buffer | undefined> {
    const held = this.peek(sha256);
    if (held || size > this.#limit) return held;
    let loading = this.#loading.get(sha256);
    if (!loading) {
      loading = this.#load(sha256, size).finally(() => this.#loading.delete(sha256));
      this.#loading.set(sha256, loading);
    }
    return loading;
  }

  async #load(sha256: string, size: number): Promise<Buffer | undefined> {
    const bytes = await readFile(this.#blobs.pathOf(sha256)).catch(() => undefined);
    // A blob replaced or removed while it was read is not kept.
    if (!bytes || bytes.length !== size || !this.#blobs.holds({ sha256, size })) return undefined;
    for (const [oldest, old] of this.#entries) {
      if (this.#bytes + size <= this.#limit) break;
      this.#entries.delete(oldest);
      this.#bytes -= old.length;
    }
    this.#entries.set(sha256, bytes);
    this.#bytes += size;
    return bytes;
  }

  #prune(): void {
    for (const [sha256, bytes] of this.#entries) {
      if (!this.#blobs.holds({ sha256, size: bytes.length })) {
        this.#entries.delete(sha256);
        this.#bytes -= bytes.length;
      }
    }
  }
}
