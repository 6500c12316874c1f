import type { S3Settings } from '../s3/s3-access.ts';

// A central store's objects, wherever the store is: a folder (served by nginx, uploaded
// by hand) or a prefix of a bucket (s3://BUCKET/PREFIX). What `modelferry publish` writes,
// what gateways report into (gateways/<id>.json) and what `modelferry fleet` reads.

export interface StoredObject {
  bytes: Buffer;
  /** The store's validator for a conditional write of the same object; null when it has none. */
  etag: string | null;
}

export interface WriteOptions {
  contentType: string;
  cacheControl?: string;
  /**
   * Write only if the object is still the one read: its etag, or null when it was absent.
   * A bucket checks it itself (If-Match / If-None-Match); a folder holds its lock instead.
   */
  replacing?: string | null;
}

export interface PrefixListing {
  names: string[];
  /** There were more than the limit; `names` holds that many of them. */
  more: boolean;
}

export interface StoreObjects {
  /** The store as messages name it: `/srv/store` or `s3://bucket/prefix`. */
  readonly where: string;
  /** One object as messages name it. */
  nameOf(key: string): string;
  /** An object's bytes, or null when there is none. */
  read(key: string): Promise<StoredObject | null>;
  /** Whether the object is there with this size (an artifact, named by its digest, is then complete). */
  has(key: string, size: number): Promise<boolean>;
  /** Places `file` under `key`, complete or not at all, checking on the way that its bytes still have `sha256`. */
  writeFile(key: string, file: string, sha256: string, options: WriteOptions): Promise<void>;
  /** Writes `bytes` under `key`, complete or not at all. */
  writeBytes(key: string, bytes: Buffer, options: WriteOptions): Promise<void>;
  /** The keys under `prefix` (`gateways/`), relative to the store. */
  list(prefix: string): Promise<string[]>;
  /**
   * The names one level down (`site-a` for `site-a/...`), at most `limit` of them, sorted:
   * a bucket's common prefixes (a listing with delimiter `/`), a folder's folders. Never
   * every object below, which can be thousands of artifacts.
   */
  listPrefixes(limit: number): Promise<PrefixListing>;
  /** Holds off other writers that take it, where the store has a way (a folder's lock file). */
  lock(timeoutMs: number): Promise<() => Promise<void>>;
  close(): void;
}

export interface StoreAccess {
  /** `upstream.s3` for a bucket; the AWS_* variables fill in what it leaves out. */
  s3?: S3Settings;
  env?: NodeJS.ProcessEnv;
  /** The clock requests are signed with (a gateway's). */
  now?: () => Date;
}

/** Whether a store is named by an s3:// address (else it is a folder). */
export function isBucketStore(location: string): boolean {
  return location.startsWith('s3://');
}

/** The store at `location`: `s3://BUCKET/PREFIX` or a folder. */
export async function openStore(location: string, access: StoreAccess = {}): Promise<StoreObjects> {
  if (isBucketStore(location)) {
    const { BucketObjects } = await import('./bucket-objects.ts');
    return BucketObjects.open(location, access);
  }
  const { FolderObjects } = await import('./folder-objects.ts');
  return new FolderObjects(location);
}
