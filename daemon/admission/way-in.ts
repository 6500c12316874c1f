import type { ModelRecord } from '../catalog/types.ts';
import type { ModelferryError } from '../errors.ts';
import type { SignatureClaim } from '../signing/trust.ts';
import type { DiskClaim } from '../store/disk-space.ts';

/** A model that asks to enter the catalog, as its sender describes it. */
export interface Candidate {
  /** As sent: admission applies the name and version rules. */
  name: string;
  version: string;
  /** The sha256 the bytes are said to have; null when not said. */
  sha256: string | null;
  /** The size the bytes are said to have (Content-Length, the dropped file's, the manifest's); null when not said. */
  size: number | null;
  claim: SignatureClaim;
  /** When the model was made, when its sender says (a manifest does); otherwise when it is admitted. */
  createdAt?: string;
}

/** The bytes of a candidate, on disk and not yet named by the catalog. */
export interface ArrivedBytes {
  readonly sha256: string;
  readonly size: number;
  /** Where they can be read for the format check. */
  readonly path: string;
  /** Throws away bytes that did not enter (nothing once they did). */
  discard?(): Promise<void>;
}

export interface AdmittedModel {
  record: ModelRecord;
  bytes: ArrivedBytes;
}

/** What will be written before the bytes are in place, to be claimed on its disk first. */
export interface Write {
  dir: string;
  /** null: not known before the bytes arrive (a chunked push); held to the room there is. */
  bytes: number | null;
  /** The write as a refusal names it: `this 1234-byte model`. */
  what: string;
}

/** An admission that ends before its end, with this result: nothing to bring, or nothing left to enter. */
export interface Done<R> {
  done: R;
}

/**
 * Where the bytes of a model come from and where its record goes: the one thing each way in
 * (a push, the drop folder, a sync) adds to admission.
 */
export interface WayIn<R> {
  /**
   * `claim`: a declared sha256 is the sender's word, checked once the bytes are here.
   * `address`: the bytes are fetched by it and thrown away unless they match, so a
   * signature can be verified before the first byte is asked for.
   */
  readonly digests: 'claim' | 'address';
  /** What was being written, for a disk that fills up anyway: `the model was being stored`. */
  readonly writing: string;
  /**
   * `upstream`: the candidates are the whole upstream layer, replacing it (a sync); absent:
   * they are added to the catalog. What artifacts.maxModels counts.
   */
  readonly replaces?: 'upstream';
  /** After the rules that need no bytes: what will be written (null: nothing), or the end. */
  plan(): Write | null | Done<R> | Promise<Write | null | Done<R>>;
  /** The bytes of each candidate, in order, within `maxBytes` and the room claimed. */
  bring(limits: { maxBytes: number; room: DiskClaim | null }): Promise<ArrivedBytes[] | Done<R>>;
  /** Enters what passed every rule. */
  enter(admitted: AdmittedModel[]): Promise<R>;
  /** A rule's refusal of one candidate as this way reports it; absent: as it is. */
  refusal?(error: ModelferryError, candidate: Candidate, stage: 'before bytes' | 'after bytes'): Error;
}
