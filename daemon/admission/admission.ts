import type { Catalog } from '../catalog/catalog.ts';
import type { ModelRecord } from '../catalog/types.ts';
import { modelKey } from '../catalog/types.ts';
import type { Clock } from '../clock.ts';
import { parseModelName, parseVersion } from '../contract/identifiers.ts';
import { fail, isModelferryError, type ModelferryError } from '../errors.ts';
import type { Logger } from '../log.ts';
import type { TrustPolicy } from '../signing/trust.ts';
import type { BlobStore } from '../store/blob-store.ts';
import { diskFullError, type DiskSpace } from '../store/disk-space.ts';
import { acceptFormat, inspectProgramFile, type ProgramCheck } from '../store/executorch.ts';
import { streamedModel, type Stored, type StreamedModelOptions } from './streamed-model.ts';
import type { AdmittedModel, ArrivedBytes, Candidate, WayIn } from './way-in.ts';

export interface AdmissionOptions {
  /** artifacts.maxBytes and artifacts.formats, read at each admission (they reload live). */
  maxBytes: () => number;
  formats: () => readonly string[];
  /** artifacts.maxModels: the models of both layers together, at most. */
  maxModels: () => number;
}

/**
 * The one way a model enters the catalog, whether pushed over HTTP, dropped in the inbox or
 * synced from an upstream store. The rules, in order: name and version, size, signature and
 * trust policy (as far as they can be judged before a byte), room on the disk beyond its
 * reserve; then, on the bytes, format and program, declared digest, signature; immutable
 * versions are the catalog's own check as it writes. Any refusal (a ModelferryError with a
 * stable code) leaves the catalog and the blob folders as they were.
 */
export class Admission {
  readonly #options: AdmissionOptions;
  readonly #catalog: Catalog;
  readonly #trust: TrustPolicy;
  readonly #blobs: BlobStore;
  readonly #disk: DiskSpace;
  readonly #clock: Clock;
  readonly #log: Logger;

  constructor(options: AdmissionOptions, parts: { catalog: Catalog; trust: TrustPolicy; blobs: BlobStore; disk: DiskSpace; clock: Clock; log: Logger }) {
    this.#options = options;
    this.#catalog = parts.catalog;
    this.#trust = parts.trust;
    this.#blobs = parts.blobs;
    this.#disk = parts.disk;
    this.#clock = parts.clock;
    this.#log = parts.log;
  }

  get maxBytes(): number {
    return this.#options.maxBytes();
  }

  /** The way in of a pushed body or a dropped file: see streamedModel. */
  streamed(options: StreamedModelOptions): WayIn<Stored> {
    return streamedModel({ catalog: this.#catalog, blobs: this.#blobs, log: this.#log }, options);
  }

  async admit<R>(candidates: readonly Candidate[], way: WayIn<R>): Promise<R> {
    const maxBytes = this.maxBytes;
    this.#checkRoomInCatalog(candidates, way);
    for (const candidate of candidates) this.#beforeBytes(candidate, way, maxBytes);
    const plan = await way.plan();
    if (plan !== null && 'done' in plan) return plan.done;
    const room = plan === null ? null : await this.#disk.claim(plan.dir, plan.bytes, plan.what);
    // From here until the entry is written nothing names these blobs: garbage collection
    // (with a grace period shorter than the transfer) must not take them meanwhile.
    const holds = [this.#blobs.hold(candidates.flatMap((c) => c.sha256 === null ? [] : [c.sha256]))];
    let arrived: ArrivedBytes[] = [];
    try {
      const brought = await way.bring({ maxBytes, room });
      if ('done' in brought) return brought.done;
      arrived = brought;
      holds.push(this.#blobs.hold(arrived.map((bytes) => bytes.sha256)));
      return await way.enter(await this.#afterBytes(candidates, arrived, way));
    } catch (error) {
      throw diskFullError(error, way.writing) ?? error;
    } finally {
      for (const release of holds) release();
      room?.release();
      for (const bytes of arrived) await bytes.discard?.();
    }
  }

  /**
   * The catalog's size is bounded (memory, the status page, every answer that lists it): a
   * model beyond artifacts.maxModels is refused before a byte is read, and a manifest that
   * would take the catalog past it is refused whole.
   */
  #checkRoomInCatalog(candidates: readonly Candidate[], way: WayIn<unknown>): void {
    const max = this.#options.maxModels();
    const keys = new Set(candidates.map((c) => modelKey(c.name, c.version)));
    const kept = way.replaces === 'upstream'
      ? this.#catalog.layer('local').models.map((m) => modelKey(m.name, m.version))
      : [...this.#catalog.current.models.keys()];
    for (const key of kept) keys.add(key);
    if (keys.size <= max) return;
    if (way.replaces === 'upstream') {
      fail('catalog_full', `the store's manifest lists ${candidates.length} models; with the ${kept.length} pushed here that is more than artifacts.maxModels (${max}): nothing of it was applied; remove old versions from the store, or raise artifacts.maxModels`);
    }
    fail('catalog_full', `the catalog holds ${kept.length} models, as many as artifacts.maxModels (${max}) allows: delete unused models (modelferry delete NAME VERSION) first, or raise artifacts.maxModels`);
  }

  #beforeBytes(candidate: Candidate, way: WayIn<unknown>, maxBytes: number): void {
    try {
      parseModelName(candidate.name);
      parseVersion(candidate.version);
      if (candidate.size !== null && candidate.size > maxBytes) {
        fail('body_too_large', `the artifact is ${candidate.size} bytes, more than artifacts.maxBytes (${maxBytes} bytes)`);
      }
      const { name, version, sha256, size, claim } = candidate;
      if (way.digests === 'address' && sha256 !== null && size !== null) this.#trust.check({ name, version, sha256, size }, claim);
      else this.#trust.precheck(claim);
    } catch (error) {
      throw refused(error, candidate, way, 'before bytes');
    }
  }

  async #afterBytes(candidates: readonly Candidate[], arrived: ArrivedBytes[], way: WayIn<unknown>): Promise<AdmittedModel[]> {
    const formats = this.#options.formats();
    const createdAt = this.#clock.now().toISOString();
    // Bytes that several versions share are read once.
    const programs = new Map<string, ProgramCheck>();
    const admitted: AdmittedModel[] = [];
    for (const [index, candidate] of candidates.entries()) {
      const bytes = arrived[index]!;
      const { name, version, claim } = candidate;
      const { sha256, size } = bytes;
      let accepted: Pick<ModelRecord, 'format' | 'program'>;
      try {
        let program = programs.get(sha256);
        if (!program) programs.set(sha256, program = await inspectProgramFile(bytes.path, size));
        accepted = acceptFormat(program, formats);
        if (candidate.sha256 !== null && candidate.sha256 !== sha256) {
          fail('digest_mismatch', `the body's sha256 is ${sha256}, not the declared ${candidate.sha256}; nothing was stored`);
        }
        this.#trust.check({ name, version, sha256, size }, claim);
      } catch (error) {
        throw refused(error, candidate, way, 'after bytes');
      }
      admitted.push({
        record: {
          name, version, sha256, size,
          ...accepted,
          signature: claim.signature,
          keyId: claim.keyId,
          signatureSeq: claim.seq ?? null,
          createdAt: candidate.createdAt ?? createdAt,
        },
        bytes,
      });
    }
    return admitted;
  }
}

function refused(error: unknown, candidate: Candidate, way: WayIn<unknown>, stage: 'before bytes' | 'after bytes'): unknown {
  return isModelferryError(error) && way.refusal ? way.refusal(error, candidate, stage) : error;
}
