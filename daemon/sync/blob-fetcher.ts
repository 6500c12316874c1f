import { mkdir, open, rm, stat } from 'node:fs/promises';
import path from 'node:path';
import { fail, ModelferryError } from '../errors.ts';
import { isDiskFull } from '../fs-errors.ts';
import { diskFullError } from '../store/disk-space.ts';
import { digestFile } from '../store/file-digest.ts';
import { bodyError, type UpstreamHttp } from './upstream-http.ts';

export interface BlobToFetch {
  sha256: string;
  size: number;
  url: URL;
}

/**
 * Downloads one artifact into the sync's own folder (`<cache>/partial`, kept across
 * restarts, unlike the push folder which is emptied at start), resuming a partial file
 * with Range. Returns the path of the complete file once its size and sha256 match and it
 * is fsynced; anything else throws and keeps only a prefix that can still be right.
 */
export class BlobFetcher {
  readonly #dir: string;
  readonly #http: UpstreamHttp;

  constructor(dir: string, http: UpstreamHttp) {
    this.#dir = dir;
    this.#http = http;
  }

  static partialDirOf(cacheDir: string): string {
    return path.join(cacheDir, 'partial');
  }

  /** Bytes a partial download of `blob` already holds. */
  async partialSize(blob: { sha256: string }): Promise<number> {
    return stat(path.join(this.#dir, `${blob.sha256}.part`)).then((s) => s.size, () => 0);
  }

  async fetch(blob: BlobToFetch, headers: Record<string, string>, signal: AbortSignal, onBytes: (n: number) => void): Promise<string> {
    await mkdir(this.#dir, { recursive: true });
    const file = path.join(this.#dir, `${blob.sha256}.part`);
    let have = await this.partialSize(blob);
    if (have > blob.size) {
      await rm(file, { force: true });
      have = 0;
    }
    try {
      if (have < blob.size) await this.#download(blob, file, have, headers, signal, onBytes);
    } catch (error) {
      if (!isDiskFull(error)) throw error;
      // The space a partial file holds is what the disk is short of: give it back.
      await rm(file, { force: true });
      throw diskFullError(error, `the artifact ${blob.sha256} was downloading`);
    }
    const { sha256: actual } = await digestFile(file);
    if (actual !== blob.sha256) {
      await rm(file, { force: true });
      fail('artifact_invalid', `the artifact at ${blob.url.href} has sha256 ${actual}, not the ${blob.sha256} the manifest names; it was discarded`);
    }
    return file;
  }

  async #download(blob: BlobToFetch, file: string, have: number, headers: Record<string, string>, signal: AbortSignal, onBytes: (n: number) => void): Promise<void> {
    const where = blob.url.href;
    const res = await this.#http.get(blob.url, have > 0 ? { ...headers, Range: `bytes=${have}-` } : headers, signal);
    let offset: number;
    if (res.statusCode === 206 && have > 0 && contentRangeStart(res.headers['content-range']) === have) {
      offset = have;
    } else if (res.statusCode === 200) {
      offset = 0;
    } else {
      res.resume();
      if (res.statusCode === 206 || res.statusCode === 416) {
        // A range answer we did not ask for: start over on the next sync.
        await rm(file, { force: true });
        fail('artifact_invalid', `${where} answered the resume from byte ${have} with ${res.statusCode} ${res.headers['content-range'] ?? ''}; the partial download was discarded`);
      }
      fail('upstream_error', `${where} answered ${res.statusCode} for an artifact the manifest names`);
    }
    const handle = await open(file, offset === 0 ? 'w' : 'r+');
    let size = offset;
    try {
      try {
        for await (const chunk of res as AsyncIterable<Buffer>) {
          if (size + chunk.length > blob.size) {
            res.destroy();
            await handle.truncate(0);
            throw new ModelferryError('artifact_invalid', `${where} sent more than the ${blob.size} bytes the manifest names; it was discarded`);
          }
          for (let written = 0; written < chunk.length;) {
            written += (await handle.write(chunk, written, chunk.length - written, size + written)).bytesWritten;
          }
          size += chunk.length;
          onBytes(chunk.length);
        }
      } catch (error) {
        throw isDiskFull(error) ? error : bodyError(error, where);
      }
      await handle.sync();
    } finally {
      await handle.close();
    }
    if (size < blob.size) {
      fail('artifact_invalid', `${where} ended after ${size} of the ${blob.size} bytes the manifest names; the next sync resumes from there`);
    }
  }
}

function contentRangeStart(header: string | undefined): number | undefined {
  const match = /^bytes (\d+)-\d+\/(\d+|\*)$/.exec(header ?? '');
  return match ? Number(match[1]) : undefined;
}
