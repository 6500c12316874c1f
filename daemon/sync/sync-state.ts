import type { Database, Table } from '../store/database.ts';
import type { SavedState } from './sync-plan.ts';

/** The sync's record in the database: the last manifest applied and its validators. */
export class SyncState {
  readonly #table: Table<SavedState>;
  #saved: SavedState | undefined;

  private constructor(table: Table<SavedState>, saved: SavedState | undefined) {
    this.#table = table;
    this.#saved = saved;
  }

  static async load(database: Database): Promise<SyncState> {
    const table = database.table<SavedState>('sync');
    return new SyncState(table, await table.get('state'));
  }

  get saved(): SavedState | undefined {
    return this.#saved;
  }

  async save(state: SavedState): Promise<void> {
    await this.#table.put('state', state);
    this.#saved = state;
  }
}
