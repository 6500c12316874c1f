import { createHash } from 'node:crypto';
import { readFile } from 'node:fs/promises';
import path from 'node:path';
import aws4 from 'aws4';
import { fail } from '../errors.ts';

// How a gateway or the `modelferry` command reaches a bucket: which endpoint, which
// addressing, which credentials, and the SigV4 signature of each request (by `aws4`).
// Settings come from `upstream.s3`, else the standard AWS_* variables; a secret may also
// come from a file, such as a systemd credential (docs/operations.md "S3 credentials").

/** `upstream.s3` as the config holds it; every field may be left out (null). */
export interface S3Settings {
  endpoint: string | null;
  region: string | null;
  accessKeyId: string | null;
  secretAccessKey: string | null;
  /** A file holding the secret; a relative name is a credential in $CREDENTIALS_DIRECTORY. */
  secretAccessKeyFile: string | null;
  forcePathStyle: boolean | null;
}

export const NO_S3_SETTINGS: S3Settings = {
  endpoint: null, region: null, accessKeyId: null, secretAccessKey: null, secretAccessKeyFile: null, forcePathStyle: null,
};

export interface S3Credentials {
  accessKeyId: string;
  secretAccessKey: string;
  sessionToken?: string;
}

/** Everything a request to a bucket needs, resolved once per sync, publish or report. */
export interface S3Access {
  /** null: AWS itself, `https://s3.<region>.amazonaws.com`. */
  endpoint: URL | null;
  region: string;
  /** null: anonymous requests (a public bucket). */
  credentials: S3Credentials | null;
  /** Bucket in the path (`endpoint/bucket/key`), as endpoints that are not AWS want. */
  pathStyle: boolean;
}

/** An object in a bucket, as `s3://bucket/key` names it. */
export interface S3Object {
  bucket: string;
  key: string;
}

/** The SHA-256 of an empty payload: what a bodiless request signs. */
export const EMPTY_PAYLOAD = createHash('sha256').update('').digest('hex');
/** What a streamed upload signs instead of its body's hash (allowed by S3 for any request). */
export const UNSIGNED_PAYLOAD = 'UNSIGNED-PAYLOAD';

/** `s3://bucket/some/key` as bucket and key (the key without its leading slash, decoded). */
export function s3ObjectOf(url: URL): S3Object {
  if (url.protocol !== 's3:' || url.hostname === '') fail('upstream_error', `${url.href} is not an s3://BUCKET/KEY address`);
  return { bucket: url.hostname, key: decodeURIComponent(url.pathname.replace(/^\//, '')) };
}

/**
 * The access for these settings: the config's values first, then AWS_ACCESS_KEY_ID,
 * AWS_SECRET_ACCESS_KEY (and AWS_SESSION_TOKEN), AWS_REGION (or AWS_DEFAULT_REGION),
 * AWS_ENDPOINT_URL_S3 (or AWS_ENDPOINT_URL). A key id without a secret, or the reverse, is
 * refused rather than sent unsigned.
 */
export async function resolveS3Access(settings: S3Settings, env: NodeJS.ProcessEnv = process.env): Promise<S3Access> {
  const endpointText = settings.endpoint ?? env.AWS_ENDPOINT_URL_S3 ?? env.AWS_ENDPOINT_URL ?? null;
  let endpoint: URL | null = null;
  if (endpointText) {
    try {
      endpoint = new URL(endpointText);
    } catch {
      fail('upstream_denied', `the S3 endpoint ${JSON.stringify(endpointText)} is not a URL; set upstream.s3.endpoint (or AWS_ENDPOINT_URL) to one such as http://minio.lan:9000`);
    }
  }
  const region = settings.region ?? env.AWS_REGION ?? env.AWS_DEFAULT_REGION ?? 'us-east-1';
  const fromConfig = settings.accessKeyId !== null || settings.secretAccessKey !== null || settings.secretAccessKeyFile !== null;
  const accessKeyId = fromConfig ? settings.accessKeyId : env.AWS_ACCESS_KEY_ID ?? null;
  let secretAccessKey = fromConfig ? settings.secretAccessKey : env.AWS_SECRET_ACCESS_KEY ?? null;
  if (secretAccessKey === null && settings.secretAccessKeyFile !== null) secretAccessKey = await readSecretFile(settings.secretAccessKeyFile, env);
  if ((accessKeyId === null) !== (secretAccessKey === null)) {
    fail('upstream_denied', accessKeyId === null
      ? 'an S3 secret access key is set but no access key id: set upstream.s3.accessKeyId (or AWS_ACCESS_KEY_ID)'
      : `the S3 access key id ${accessKeyId} has no secret: set upstream.s3.secretAccessKey, upstream.s3.secretAccessKeyFile or AWS_SECRET_ACCESS_KEY`);
  }
  const sessionToken = fromConfig ? undefined : env.AWS_SESSION_TOKEN || undefined;
  return {
    endpoint,
    region,
    credentials: accessKeyId === null ? null : { accessKeyId, secretAccessKey: secretAccessKey!, ...(sessionToken ? { sessionToken } : {}) },
    pathStyle: settings.forcePathStyle ?? endpoint !== null,
  };
}

async function readSecretFile(file: string, env: NodeJS.ProcessEnv): Promise<string> {
  let where = file;
  if (!path.isAbsolute(file)) {
    if (!env.CREDENTIALS_DIRECTORY) {
      fail('upstream_denied', `upstream.s3.secretAccessKeyFile ${JSON.stringify(file)} is a relative name, which means a systemd credential, but $CREDENTIALS_DIRECTORY is not set: give an absolute path, or LoadCredential=${file}:... in the unit`);
    }
    where = path.join(env.CREDENTIALS_DIRECTORY, file);
  }
  let text: string;
  try {
    text = await readFile(where, 'utf8');
  } catch (error) {
    fail('upstream_denied', `cannot read the S3 secret from upstream.s3.secretAccessKeyFile (${where}): ${(error as NodeJS.ErrnoException).code ?? (error as Error).message}`);
  }
  const secret = text.trim();
  if (secret === '') fail('upstream_denied', `upstream.s3.secretAccessKeyFile (${where}) is empty`);
  return secret;
}

/** The HTTP(S) URL of an object: `endpoint/bucket/key` (path style) or `bucket.endpoint/key`. */
export function objectUrl(access: S3Access, object: S3Object, query = ''): URL {
  const base = access.endpoint ?? new URL(`https://s3.${access.region}.amazonaws.com`);
  const key = object.key.split('/').map(encodeURIComponent).join('/');
  // A bucket name with dots does not match the endpoint's TLS certificate as a host name.
  const url = access.pathStyle || object.bucket.includes('.')
    ? new URL(`${base.protocol}//${base.host}${base.pathname.replace(/\/$/, '')}/${object.bucket}/${key}`)
    : new URL(`${base.protocol}//${object.bucket}.${base.host}${base.pathname.replace(/\/$/, '')}/${key}`);
  url.search = query;
  return url;
}

/**
 * The request's headers with its SigV4 signature (Authorization, X-Amz-Date,
 * X-Amz-Content-Sha256), dated by `now` (the gateway's clock: a skewed one is what S3
 * refuses as RequestTimeTooSkewed). Anonymous access sends the headers as they are.
 */
export function signedHeaders(access: S3Access, method: string, url: URL, headers: Record<string, string>, payloadHash: string, now: Date): Record<string, string> {
  if (access.credentials === null) return headers;
  const request = {
    host: url.host,
    path: `${url.pathname}${url.search}`,
    method,
    service: 's3',
    region: access.region,
    headers: { ...headers, 'X-Amz-Content-Sha256': payloadHash, 'X-Amz-Date': now.toISOString().replace(/[:-]|\.\d{3}/g, '') },
  };
  aws4.sign(request, access.credentials);
  return request.headers as Record<string, string>;
}
