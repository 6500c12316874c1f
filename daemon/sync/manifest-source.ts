import { fail, isModelferryError, ModelferryError } from '../errors.ts';
import { parseManifest, type Manifest } from './manifest.ts';
import { displayUrl, type Validators } from './sync-plan.ts';
import { readBody, type UpstreamHttp } from './upstream-http.ts';

export interface FetchedManifest extends Validators {
  manifest: Manifest;
}

export interface ManifestRequest {
  /** Sent as If-None-Match and If-Modified-Since: an unchanged manifest is a 304. */
  validators?: Validators;
  /** The store's authorization, when it has one. */
  headers: Record<string, string>;
  /** upstream.maxManifestBytes */
  maxBytes: number;
}

/** GET of the store's manifest: `unchanged` on a 304, otherwise the parsed manifest and its validators. */
export async function fetchManifest(http: UpstreamHttp, url: URL, request: ManifestRequest, signal: AbortSignal, onBytes: (n: number) => void): Promise<'unchanged' | FetchedManifest> {
  const headers: Record<string, string> = { Accept: 'application/json', ...request.headers };
  if (request.validators?.etag) headers['If-None-Match'] = request.validators.etag;
  if (request.validators?.lastModified) headers['If-Modified-Since'] = request.validators.lastModified;
  const res = await http.get(url, headers, signal);
  if (res.statusCode === 304) {
    res.resume();
    return 'unchanged';
  }
  if (res.statusCode !== 200) {
    res.resume();
    fail('upstream_error', `${displayUrl(url.href)} answered ${res.statusCode} for the manifest`);
  }
  let body: Buffer;
  try {
    body = await readBody(res, request.maxBytes, 'the manifest');
  } catch (error) {
    throw isModelferryError(error) ? error : new ModelferryError('upstream_unreachable', `the manifest's body broke off: ${(error as Error).message}`);
  }
  onBytes(body.length);
  const header = (name: string) => {
    const value = res.headers[name];
    return typeof value === 'string' && value !== '' ? value : null;
  };
  return { manifest: readManifest(body, url), etag: header('etag'), lastModified: header('last-modified') };
}

/** A manifest's body as a manifest, or `manifest_invalid` naming what is wrong. */
export function readManifest(body: Buffer, url: URL): Manifest {
  let parsed: unknown;
  try {
    parsed = JSON.parse(body.toString('utf8'));
  } catch {
    fail('manifest_invalid', `${displayUrl(url.href)} is not JSON`);
  }
  try {
    return parseManifest(parsed);
  } catch (error) {
    fail('manifest_invalid', `the manifest is not valid: ${(error as Error).message}`);
  }
}
