import type { AbstractBatchOperation, AbstractSublevel } from 'abstract-level';
import { Level } from 'level';
import type { Logger } from '../log.ts';
import { makeDirectory } from '../make-directory.ts';

export type Table<V> = AbstractSublevel<Level<string, unknown>, string | Buffer | Uint8Array, string, V>;

/** One write of an atomic batch across tables: each operation names its table as `sublevel`. */
export type BatchOperation = AbstractBatchOperation<Level<string, unknown>, string, unknown>;


/**
 * Iterator options for a table read whole into memory at start: classic-level's fillCache
 * off, so the read does not also fill LevelDB's block cache (limit is its default, -1).
 */
export const READ_ONCE: { limit: number } = { limit: -1, fillCache: false } as { limit: number };

/**
 * The gateway's one LevelDB database. It belongs to this process alone: LevelDB locks the
 * folder, so the CLI talks to the daemon over HTTP instead of opening it.
 */
export class Database {
  readonly #dir: string;
  readonly #log: Logger;
  #db: Level<string, unknown> | undefined;

  constructor(dir: string, log: Logger) {
    this.#dir = dir;
    this.#log = log;
  }

  async start(): Promise<void> {
    await makeDirectory(this.#dir);
    const db = new Level<string, unknown>(this.#dir, { valueEncoding: 'json' });
    try {
      await db.open();
    } catch (error) {
      const cause = (error as { cause?: { code?: string } }).cause;
      if (cause?.code === 'LEVEL_LOCKED') {
        throw new Error(`the database in ${this.#dir} (paths.state) is in use by another modelferry process: stop that one, or give this one another state folder (--state-dir)`);
      }
      throw error;
    }
    this.#db = db;
    this.#log.info({ dir: this.#dir }, 'database open');
  }

  async stop(): Promise<void> {
    await this.#db?.close();
    this.#db = undefined;
  }

  get level(): Level<string, unknown> {
    if (!this.#db) throw new Error('database is not open');
    return this.#db;
  }

  /** A sublevel: one table of the database, its values JSON unless said otherwise. */
  table<V>(name: string, valueEncoding: 'json' | 'utf8' = 'json'): Table<V> {
    return this.level.sublevel<string, V>(name, { valueEncoding });
  }
}
