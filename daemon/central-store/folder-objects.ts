import { createHash, randomUUID } from 'node:crypto';
import { createReadStream } from 'node:fs';
import { mkdir, open, opendir, readdir, readFile, rename, rm, stat } from 'node:fs/promises';
import path from 'node:path';
import { setTimeout as sleep } from 'node:timers/promises';
import { fail } from '../errors.ts';
import { syncDir, writeFully } from '../store/blob-store.ts';
import type { PrefixListing, StoredObject, StoreObjects, WriteOptions } from './store-objects.ts';

const LOCK = '.modelferry-publish.lock';
/** A lock older than this was left by a writer that died; it is taken over. */
const STALE_LOCK_MS = 10 * 60_000;

/**
 * A store that is a folder. Each object is written to a temporary dot-file in its own
 * folder, fsynced and renamed into place, so a reader (nginx, or an upload of the folder
 * that skips dot-files) sees it whole or not at all.
 */
export class FolderObjects implements StoreObjects {
  readonly where: string;

  constructor(dir: string) {
    this.where = path.resolve(dir);
  }

  nameOf(key: string): string {
    return path.join(this.where, key);
  }

  async read(key: string): Promise<StoredObject | null> {
    try {
      return { bytes: await readFile(this.nameOf(key)), etag: null };
    } catch (error) {
      if ((error as NodeJS.ErrnoException).code === 'ENOENT') return null;
      throw error;
    }
  }

  async has(key: string, size: number): Promise<boolean> {
    return (await stat(this.nameOf(key)).catch(() => undefined))?.size === size;
  }

  async writeFile(key: string, source: string, sha256: string): Promise<void> {
    await this.#atomically(key, async (out) => {
      const hash = createHash('sha256');
      for await (const chunk of createReadStream(source, { highWaterMark: 1 << 20 }) as AsyncIterable<Buffer>) {
        hash.update(chunk);
        await writeFully(out, chunk);
      }
      if (hash.digest('hex') !== sha256) fail('digest_mismatch', `${source} changed while it was being published; nothing was published`);
    });
  }

  async writeBytes(key: string, bytes: Buffer, _options?: WriteOptions): Promise<void> {
    await this.#atomically(key, (out) => writeFully(out, bytes));
  }

  async list(prefix: string): Promise<string[]> {
    const names = await readdir(this.nameOf(prefix)).catch((error: NodeJS.ErrnoException) => {
      if (error.code === 'ENOENT') return [] as string[];
      throw error;
    });
    return names.filter((name) => !name.startsWith('.')).map((name) => path.posix.join(prefix, name));
  }

  async listPrefixes(limit: number): Promise<PrefixListing> {
    const names: string[] = [];
    let more = false;
    // Streamed, and given up at the limit: the top folder may hold many entries.
    const dir = await opendir(this.where).catch((error: NodeJS.ErrnoException) => {
      if (error.code === 'ENOENT') return null;
      throw error;
    });
    if (dir === null) return { names, more };
    for await (const entry of dir) {
      if (!entry.isDirectory() || entry.name.startsWith('.')) continue;
      if (names.length === limit) {
        more = true;
        break;
      }
      names.push(entry.name);
    }
    return { names: names.sort(), more };
  }

  /** One writer per store folder at a time, so two pipelines cannot lose each other's models. */
  async lock(timeoutMs: number): Promise<() => Promise<void>> {
    await mkdir(this.where, { recursive: true, mode: 0o755 });
    const file = path.join(this.where, LOCK);
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

  close(): void {}

  async #atomically(key: string, write: (out: Awaited<ReturnType<typeof open>>) => Promise<void>): Promise<void> {
    const target = this.nameOf(key);
    const dir = path.dirname(target);
    await mkdir(dir, { recursive: true, mode: 0o755 });
    // A dot name in the same folder: same file system for the rename, and skipped by
    // `aws s3 sync --exclude '.*'`; removed on any failure.
    const temp = path.join(dir, `.${path.basename(target)}.${randomUUID()}.tmp`);
    try {
      const out = await open(temp, 'wx', 0o644);
      try {
        await write(out);
        await out.sync();
      } finally {
        await out.close();
      }
      await rename(temp, target);
      await syncDir(dir);
    } finally {
      await rm(temp, { force: true });
    }
  }
}
