import type { Readable } from 'node:stream';
import type { Catalog } from '../catalog/catalog.ts';
import type { ModelRecord } from '../catalog/types.ts';
import type { Logger } from '../log.ts';
import type { BlobStore, PendingBlob } from '../store/blob-store.ts';
import type { WayIn } from './way-in.ts';

export interface StreamedModelOptions {
  /** Who sent it, for the log: a token name, `inbox`. */
  client: string;
  /** The size announced before the body (Content-Length, the dropped file's); null when none was. */
  size: number | null;
  /** Opens the body once the rules that need no bytes have passed, and closes it after `receive`. */
  read(receive: (body: Readable) => Promise<PendingBlob>): Promise<PendingBlob>;
  /** The last check before a byte is read (a push's limit on pushes at once). */
  beforeBytes?(): void;
}

export interface Stored {
  /** False when the same name, version and bytes were already stored. */
  created: boolean;
  record: ModelRecord;
}

/**
 * The way in of a model whose bytes are streamed (a push's body, a dropped file): into a
 * temporary blob while hashing, then blob and local catalog entry, in that order.
 */
export function streamedModel(parts: { catalog: Catalog; blobs: BlobStore; log: Logger }, options: StreamedModelOptions): WayIn<Stored> {
  const { catalog, blobs, log } = parts;
  let pending: PendingBlob | undefined;
  return {
    digests: 'claim',
    writing: 'the model was being stored',
    plan() {
      options.beforeBytes?.();
      return { dir: blobs.dirOf('local'), bytes: options.size, what: `this ${options.size === null ? '' : `${options.size}-byte `}model` };
    },
    async bring({ maxBytes, room }) {
      pending = await options.read((body) => blobs.receive(body, maxBytes, room ?? undefined));
      return [pending];
    },
    async enter([admitted]) {
      const { record } = admitted!;
      const result = await catalog.addModel(record, () => pending!.commit());
      if (result.created) log.info({ model: record.name, version: record.version, sha256: record.sha256, size: record.size, client: options.client }, 'model stored');
      return result;
    },
  };
}
