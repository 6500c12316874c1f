import { statfs } from 'node:fs/promises';
import { fail, ModelferryError } from '../errors.ts';
import { isDiskFull } from '../fs-errors.ts';

/** Room promised to a writer that is under way: what it may still write before `507`. */
export interface DiskClaim {
  /** Bytes this writer may write in all; one more is `insufficient_storage`. */
  readonly limit: number;
  /** Counts bytes as they reach the disk (they then show in statfs, not in the claim). */
  wrote(bytes: number): void;
  release(): void;
}

export interface DiskSpaceOptions {
  /** artifacts.diskReserveBytes, read at each claim (it reloads live). */
  reserveBytes: () => number;
}

/**
 * Checks, before a push, a drop or a sync writes anything, that the disk can hold it and
 * still keep `artifacts.diskReserveBytes` free for the database and the system. Writers
 * under way hold a claim on the bytes they announced and have not written yet, so two
 * pushes that each fit alone are not both let in when together they do not fit.
 */
export class DiskSpace {
  readonly #options: DiskSpaceOptions;
  readonly #claims = new Set<{ expected: number; written: number }>();

  constructor(options: DiskSpaceOptions) {
    this.#options = options;
  }

  /** Bytes free on the file system of `dir`, as an unprivileged writer may use them. */
  static async free(dir: string): Promise<number> {
    const stats = await statfs(dir);
    return stats.bavail * stats.bsize;
  }

  /**
   * Claims room for `bytes` (null: not known, e.g. a chunked push) on the disk of `dir`,
   * or fails with `insufficient_storage` naming `what`. An unknown size gets whatever room
   * there is as its limit, and must have some.
   */
  async claim(dir: string, bytes: number | null, what: string): Promise<DiskClaim> {
    const reserve = this.#options.reserveBytes();
    const free = await DiskSpace.free(dir);
    // Counted after statfs answers, and the claim added in the same turn: two claims made at
    // once must each see the other, or both could be let in on the same free bytes.
    let promised = 0;
    for (const claim of this.#claims) promised += Math.max(0, claim.expected - claim.written);
    const room = free - reserve - promised;
    if (bytes === null ? room <= 0 : room < bytes) {
      fail('insufficient_storage', `${what} needs ${bytes === null ? 'room' : `${bytes} bytes`}, but the disk of ${dir} has ${free} bytes free`
        + `${promised > 0 ? `, ${promised} of them promised to transfers under way,` : ''} and keeps ${reserve} free (artifacts.diskReserveBytes); `
        + 'free space on it (delete unused models, run garbage collection: POST /v1/cache/gc) and try again');
    }
    const claim = { expected: bytes ?? 0, written: 0 };
    this.#claims.add(claim);
    return {
      limit: bytes ?? room,
      wrote: (n) => { claim.written += n; },
      release: () => { this.#claims.delete(claim); },
    };
  }
}

/** A full disk met while writing, as the honest answer: `507 insufficient_storage`. */
export function diskFullError(error: unknown, what: string): ModelferryError | undefined {
  if (!isDiskFull(error)) return undefined;
  return new ModelferryError('insufficient_storage', `the disk filled up while ${what}; nothing was stored. Free space on the gateway's disk and try again`);
}
