import { fail } from '../errors.ts';
import type { Logger } from '../log.ts';
import type { BlobStore } from '../store/blob-store.ts';
import { READ_ONCE, type Database, type Table } from '../store/database.ts';
import { EffectiveCatalog } from './effective-catalog.ts';
import { rewrittenVersions } from './immutable-versions.ts';
import { LAYERS_BY_PRECEDENCE, modelKey, type Assignment, type LayerContent, type LayerName, type ModelRecord, type Rollout } from './types.ts';

interface LayerTables {
  models: Table<ModelRecord>;
  assignments: Table<Assignment>;
  groups: Table<string[]>;
}

/** One blob of the full cache check: the models that share it and what was found. */
export interface CachedBlobCheck {
  sha256: string;
  models: string[];
  status: 'ok' | 'missing' | 'corrupt';
}

/**
 * Every catalog change is acknowledged to a client (or ends a sync), so it must survive a
 * power cut, not only a crash of the process: LevelDB fsyncs its log before answering.
 */
const DURABLE: Record<string, unknown> = { sync: true };

export type CatalogListener = (catalog: EffectiveCatalog) => void;

/**
 * Models, assignments and groups, per layer, in LevelDB and in memory. Every change is one
 * LevelDB batch, then the in-memory layers and a fresh EffectiveCatalog, then listeners.
 * Changes run one at a time, so checks such as "is this version taken" hold until written.
 */
export class Catalog {
  readonly #db: Database;
  /** For the checks that each entry has its blob: the catalog never writes blobs. */
  readonly #blobs: Pick<BlobStore, 'size' | 'check'>;
  readonly #log: Logger;
  readonly #tables = new Map<LayerName, LayerTables>();
  readonly #layers = new Map<LayerName, LayerContent>();
  readonly #listeners = new Set<CatalogListener>();
  #current: EffectiveCatalog | undefined;
  #queue: Promise<unknown> = Promise.resolve();

  constructor(db: Database, blobs: Pick<BlobStore, 'size' | 'check'>, log: Logger) {
    this.#db = db;
    this.#blobs = blobs;
    this.#log = log;
  }

  async start(): Promise<void> {
    for (const layer of LAYERS_BY_PRECEDENCE) {
      const tables: LayerTables = {
        models: this.#db.table<ModelRecord>(`${layer}-models`),
        assignments: this.#db.table<Assignment>(`${layer}-assignments`),
        groups: this.#db.table<string[]>(`${layer}-groups`),
      };
      this.#tables.set(layer, tables);
      const content: LayerContent = { models: [], assignments: [], groups: {} };
      for await (const value of tables.models.values(READ_ONCE)) content.models.push(value);
      for await (const value of tables.assignments.values(READ_ONCE)) content.assignments.push(value);
      for await (const [key, value] of tables.groups.iterator(READ_ONCE)) content.groups[key] = value;
      this.#layers.set(layer, content);
    }
    this.#rebuild();
    await this.#checkBlobs();
  }

  async stop(): Promise<void> {
    await this.#queue;
    this.#listeners.clear();
  }

  get current(): EffectiveCatalog {
    if (!this.#current) throw new Error('catalog is not started');
    return this.#current;
  }

  layer(name: LayerName): Readonly<LayerContent> {
    return this.#layers.get(name)!;
  }

  onChange(listener: CatalogListener): () => void {
    this.#listeners.add(listener);
    return () => this.#listeners.delete(listener);
  }

  /**
   * Adds a pushed model to the local layer. `beforeWrite` runs inside the change, after the
   * version is known to be free, so the blob is in place before its entry (crash safety).
   * Returns false when the same name, version and bytes were already stored.
   */
  addModel(record: ModelRecord, beforeWrite: () => Promise<void>): Promise<{ created: boolean; record: ModelRecord }> {
    return this.#serial(async () => {
      const existing = this.current.models.get(modelKey(record.name, record.version));
      if (existing && existing.sha256 !== record.sha256) {
        fail('version_conflict', `${record.name}@${record.version} is already stored with other bytes (sha256 ${existing.sha256}); versions are immutable, push a new version`);
      }
      await beforeWrite();
      // The same bytes from upstream still get a local entry: a later sync that drops the
      // model must not take a locally pushed (and perhaps locally assigned) model with it.
      const local = this.#layers.get('local')!.models.find((m) => m.name === record.name && m.version === record.version);
      if (local) return { created: false, record: local };
      await this.#tables.get('local')!.models.put(modelKey(record.name, record.version), record, DURABLE);
      this.#layers.get('local')!.models.push(record);
      this.#changed();
      return { created: true, record };
    });
  }

  deleteModel(name: string, version: string): Promise<void> {
    return this.#serial(async () => {
      const local = this.#layers.get('local')!;
      const index = local.models.findIndex((m) => m.name === name && m.version === version);
      if (index < 0) {
        const upstream = this.current.models.has(modelKey(name, version));
        fail(upstream ? 'upstream_owned' : 'model_not_found', upstream
          ? `${name}@${version} comes from the upstream store; remove it there`
          : `no model ${name}@${version} in this gateway's local catalog`);
      }
      const using = this.current.selectorsUsing(name, version);
      if (using.length > 0) fail('in_use', `${name}@${version} is assigned to ${using.join(', ')}; change those assignments first`);
      await this.#tables.get('local')!.models.del(modelKey(name, version), DURABLE);
      local.models.splice(index, 1);
      this.#changed();
    });
  }

  setAssignment(assignment: Assignment): Promise<void> {
    return this.#serial(async () => {
      const catalog = this.current;
      for (const ref of assignment.rollout ? [assignment, assignment.rollout.previous] : [assignment]) {
        if (!catalog.resolveRef(ref)) {
          fail('model_not_found', catalog.versionsOf(ref.model).length === 0
            ? `no model named ${ref.model} in the catalog`
            : `no version ${ref.version} of ${ref.model} in the catalog`);
        }
      }
      await this.#tables.get('local')!.assignments.put(assignment.selector, assignment, DURABLE);
      const local = this.#layers.get('local')!;
      local.assignments = local.assignments.filter((a) => a.selector !== assignment.selector).concat(assignment);
      this.#changed();
    });
  }

  /**
   * Changes the rollout of a local assignment in one step (halt, resume, promote, a step):
   * `change` gets the current rollout and returns the new one, or null to leave it as is.
   */
  updateRollout(selector: string, change: (rollout: Rollout, assignment: Assignment) => Rollout | null): Promise<Assignment | null> {
    return this.#serial(async () => {
      const local = this.#layers.get('local')!;
      const assignment = local.assignments.find((a) => a.selector === selector);
      if (!assignment) {
        if (this.current.assignments.has(selector)) fail('upstream_owned', `the assignment for ${selector} comes from the upstream store; change it there`);
        fail('assignment_not_found', `no assignment for ${selector}`);
      }
      if (!assignment.rollout) fail('assignment_not_found', `the assignment for ${selector} has no staged rollout`);
      const rollout = change(assignment.rollout, assignment);
      if (rollout === null) return null;
      const updated: Assignment = { ...assignment, rollout };
      await this.#tables.get('local')!.assignments.put(selector, updated, DURABLE);
      local.assignments = local.assignments.map((a) => a.selector === selector ? updated : a);
      this.#changed();
      return updated;
    });
  }

  deleteAssignment(selector: string): Promise<void> {
    return this.#serial(async () => {
      const local = this.#layers.get('local')!;
      if (!local.assignments.some((a) => a.selector === selector)) {
        if (this.current.assignments.has(selector)) fail('upstream_owned', `the assignment for ${selector} comes from the upstream store; change it there`);
        fail('assignment_not_found', `no assignment for ${selector}`);
      }
      await this.#tables.get('local')!.assignments.del(selector, DURABLE);
      local.assignments = local.assignments.filter((a) => a.selector !== selector);
      this.#changed();
    });
  }

  setGroup(group: string, members: string[]): Promise<void> {
    return this.#serial(async () => {
      const local = this.#layers.get('local')!;
      for (const mac of members) {
        const other = Object.entries(local.groups).find(([name, list]) => name !== group && list.includes(mac));
        if (other) fail('group_conflict', `${mac} is already in group ${other[0]}; a device is in at most one group`);
      }
      await this.#tables.get('local')!.groups.put(group, members, DURABLE);
      local.groups[group] = members;
      this.#changed();
    });
  }

  deleteGroup(group: string): Promise<void> {
    return this.#serial(async () => {
      const local = this.#layers.get('local')!;
      if (!(group in local.groups)) {
        if (this.current.groups.has(group)) fail('upstream_owned', `group ${group} comes from the upstream store; change it there`);
        fail('group_not_found', `no group named ${group}`);
      }
      await this.#tables.get('local')!.groups.del(group, DURABLE);
      delete local.groups[group];
      this.#changed();
    });
  }

  /** Replaces the whole upstream layer in one batch: what a successful sync does. */
  replaceUpstream(content: LayerContent): Promise<void> {
    return this.#serial(async () => {
      const rewritten = rewrittenVersions(this.current.models, content.models);
      if (rewritten.length > 0) fail('version_conflict', `versions are immutable, and the upstream layer would change the bytes of ${rewritten.join(', ')}`);
      const tables = this.#tables.get('upstream')!;
      const old = this.#layers.get('upstream')!;
      await this.#db.level.batch([
        ...old.models.map((m) => ({ type: 'del' as const, sublevel: tables.models, key: modelKey(m.name, m.version) })),
        ...old.assignments.map((a) => ({ type: 'del' as const, sublevel: tables.assignments, key: a.selector })),
        ...Object.keys(old.groups).map((g) => ({ type: 'del' as const, sublevel: tables.groups, key: g })),
        ...content.models.map((m) => ({ type: 'put' as const, sublevel: tables.models, key: modelKey(m.name, m.version), value: m })),
        ...content.assignments.map((a) => ({ type: 'put' as const, sublevel: tables.assignments, key: a.selector, value: a })),
        ...Object.entries(content.groups).map(([g, members]) => ({ type: 'put' as const, sublevel: tables.groups, key: g, value: members })),
      ] as never, DURABLE);
      this.#layers.set('upstream', structuredClone(content));
      this.#changed();
    });
  }

  #serial<T>(change: () => Promise<T>): Promise<T> {
    const run = this.#queue.then(change, change);
    this.#queue = run.catch(() => {});
    return run;
  }

  #rebuild(): void {
    this.#current = new EffectiveCatalog(LAYERS_BY_PRECEDENCE.map((name) => ({ name, content: this.#layers.get(name)! })));
  }

  #changed(): void {
    const before = this.#current?.revision;
    this.#rebuild();
    if (this.#current!.revision === before) return;
    this.#log.info({ revision: this.#current!.revision }, 'catalog changed');
    for (const listener of this.#listeners) listener(this.#current!);
  }

  /**
   * The full check behind `modelferry check`: re-hashes each blob the catalog names, once
   * however many models share it. Corrupt blobs are removed by the store (never served).
   */
  async checkCache(): Promise<CachedBlobCheck[]> {
    const modelsByBlob = new Map<string, string[]>();
    for (const model of this.current.models.values()) {
      const names = modelsByBlob.get(model.sha256);
      if (names) names.push(`${model.name}@${model.version}`);
      else modelsByBlob.set(model.sha256, [`${model.name}@${model.version}`]);
    }
    const results: CachedBlobCheck[] = [];
    for (const [sha256, models] of modelsByBlob) {
      const check = await this.#blobs.check(sha256);
      results.push({ sha256, models, status: check.actualSha256 === null ? 'missing' : check.ok ? 'ok' : 'corrupt' });
    }
    return results;
  }

  /** Start-up check: every entry must have its blob, of the recorded size. */
  async #checkBlobs(): Promise<void> {
    for (const model of this.current.models.values()) {
      const size = this.#blobs.size(model.sha256);
      if (size === undefined) {
        this.#log.error({ model: model.name, version: model.version, sha256: model.sha256 }, 'catalog entry has no blob in the cache; devices assigned to it are not served until it is pushed again');
      } else if (size !== model.size) {
        this.#log.error({ model: model.name, version: model.version, sha256: model.sha256, size, expected: model.size }, 'blob has the wrong size; checking it');
        await this.#blobs.check(model.sha256);
      }
    }
  }
}
