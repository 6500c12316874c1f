import type { Readable } from 'node:stream';
import type { Config } from '../config/schema.ts';
import { fail } from '../errors.ts';
import type { Logger } from '../log.ts';
import type { SignatureClaim, TrustPolicy } from '../signing/trust.ts';
import type { BlobStore, PendingBlob } from '../store/blob-store.ts';
import { diskFullError, type DiskClaim, type DiskSpace } from '../store/disk-space.ts';
import { acceptFormat, inspectProgramFile } from '../store/executorch.ts';
import type { Catalog } from './catalog.ts';
import type { ModelRecord } from './types.ts';

export interface ModelSubmission {
  /** Already parsed: parseModelName / parseVersion. */
  name: string;
  version: string;
  /** The sha256 the sender says it sent, checked against what arrived; null when none. */
  declaredSha256: string | null;
  claim: SignatureClaim;
  /** Who sent it, for the log: a token name, `inbox`. */
  client: string;
}

/**
 * The one way a model enters the catalog, whether pushed over HTTP or dropped in the inbox:
 * stream to a temporary blob while hashing, check format, declared digest and signature,
 * then commit blob and catalog entry, in that order. Any refusal (a ModelferryError with a
 * stable code) leaves the catalog and the blob folder exactly as they were.
 */
export class ModelIntake {
  readonly #catalog: Catalog;
  readonly #blobs: BlobStore;
  readonly #trust: TrustPolicy;
  readonly #config: Config;
  readonly #log: Logger;
  readonly #disk: DiskSpace;

  constructor(parts: { catalog: Catalog; blobs: BlobStore; trust: TrustPolicy; config: Config; log: Logger; disk: DiskSpace }) {
    this.#catalog = parts.catalog;
    this.#blobs = parts.blobs;
    this.#trust = parts.trust;
    this.#config = parts.config;
    this.#log = parts.log;
    this.#disk = parts.disk;
  }

  /** Read at each submission: the limit may change while the gateway runs (config reload). */
  get maxBytes(): number {
    return this.#config.artifacts.maxBytes;
  }

  /** What can be refused before any byte is read. */
  precheck(submission: ModelSubmission, declaredSize: number | null): void {
    this.#trust.precheck(submission.claim);
    if (declaredSize !== null && declaredSize > this.maxBytes) {
      fail('body_too_large', `the artifact is ${declaredSize} bytes, more than artifacts.maxBytes (${this.maxBytes} bytes)`);
    }
  }

  /**
   * `declaredSize`: the size the sender announced (Content-Length, the dropped file's), or
   * null. The disk must hold it beyond the reserve before a byte is read (a size not
   * announced is held to the room there is, as it arrives). A disk that fills up anyway
   * (another writer) is `insufficient_storage` too, wherever it is met.
   */
  async submit(submission: ModelSubmission, body: Readable, declaredSize: number | null): Promise<{ created: boolean; record: ModelRecord }> {
    const room = await this.#disk.claim(this.#blobs.dirOf('local'), declaredSize, `this ${declaredSize === null ? '' : `${declaredSize}-byte `}model`);
    try {
      return await this.#submit(submission, body, room);
    } catch (error) {
      throw diskFullError(error, 'the model was being stored') ?? error;
    } finally {
      room.release();
    }
  }

  async #submit(submission: ModelSubmission, body: Readable, room: DiskClaim): Promise<{ created: boolean; record: ModelRecord }> {
    const pending: PendingBlob = await this.#blobs.receive(body, this.maxBytes, room);
    // Between the blob's commit and its catalog entry nothing names it: garbage collection
    // (with a grace period shorter than the push took) must not take it meanwhile.
    const release = this.#blobs.hold([pending.sha256]);
    try {
      const { name, version, declaredSha256, claim } = submission;
      const { sha256, size } = pending;
      const { format, program } = acceptFormat(await inspectProgramFile(pending.path, size), this.#config.artifacts.formats);
      if (declaredSha256 !== null && declaredSha256 !== sha256) {
        fail('digest_mismatch', `the body's sha256 is ${sha256}, not the declared ${declaredSha256}; nothing was stored`);
      }
      this.#trust.check({ name, version, sha256, size }, claim);
      const result = await this.#catalog.addModel({
        name, version, sha256, size,
        format,
        program,
        signature: claim.signature,
        keyId: claim.keyId,
        createdAt: new Date().toISOString(),
      }, () => pending.commit());
      if (result.created) this.#log.info({ model: name, version, sha256, size, client: submission.client }, 'model stored');
      return result;
    } finally {
      release();
      await pending.discard();
    }
  }
}
