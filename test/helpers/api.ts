import { createHash, generateKeyPairSync, sign } from 'node:crypto';
import { readdir, stat } from 'node:fs/promises';
import { request } from 'node:http';
import path from 'node:path';
import type { ExecutionContext } from 'ava';
import type { TestGateway } from './gateway.ts';
import { until } from './harness.ts';
import { sha256 } from './programs.ts';
import { ADMIN_TOKEN, PUSH_TOKEN } from './tokens.ts';

// Steps and checks of the HTTP API tests (test/http). Everything goes through the gateway's
// real HTTP API; nothing here reaches into the daemon. gateway.ts is imported as a type
// only, so this module does not load the daemon either.

// ---------------------------------------------------------------- requests

export interface RawResponse {
  status: number;
  headers: Record<string, string | string[] | undefined>;
  text: string;
}

/**
 * One request with the path sent exactly as written: fetch() would normalize `..` and
 * `%2e%2e` segments away before they reach the gateway.
 */
export function rawRequest(gw: TestGateway, method: string, rawPath: string, options: { token?: string; body?: Buffer } = {}): Promise<RawResponse> {
  const { hostname, port } = new URL(gw.url);
  return new Promise((resolve, reject) => {
    const req = request({
      host: hostname,
      port,
      method,
      path: rawPath,
      headers: {
        ...(options.token ? { Authorization: `Bearer ${options.token}` } : {}),
        'Content-Length': String(options.body?.length ?? 0),
      },
    }, (res) => {
      const chunks: Buffer[] = [];
      res.on('data', (chunk: Buffer) => chunks.push(chunk));
      res.on('end', () => resolve({ status: res.statusCode!, headers: res.headers, text: Buffer.concat(chunks).toString('utf8') }));
      res.on('error', reject);
    });
    req.on('error', reject);
    req.end(options.body);
  });
}

/** A JSON request body with the right Content-Type, as an admin client sends it. */
export function sendJson(gw: TestGateway, method: 'PUT' | 'POST', pathname: string, body: unknown, token = ADMIN_TOKEN): Promise<Response> {
  return gw.fetch(pathname, {
    method,
    token,
    headers: { 'Content-Type': 'application/json' },
    body: typeof body === 'string' ? body : JSON.stringify(body),
  });
}

// ---------------------------------------------------------------- error answers

/**
 * Asserts an error answer (from fetch or rawRequest): exact status, a JSON Content-Type and
 * a body of exactly `{error, message}` with the expected code and a non-empty message (that
 * includes `messageIncludes` when given).
 */
export async function expectError(t: ExecutionContext, response: Response | RawResponse, status: number, code: string, messageIncludes?: string): Promise<void> {
  const { contentType, text } = response instanceof Response
    ? { contentType: response.headers.get('content-type'), text: await response.text() }
    : { contentType: String(response.headers['content-type'] ?? ''), text: response.text };
  t.is(response.status, status, text);
  t.regex(contentType ?? '', /^application\/json/);
  let body: unknown;
  try {
    body = JSON.parse(text);
  } catch {
    t.fail(`error body is not JSON: ${text}`);
    return;
  }
  if (body === null || typeof body !== 'object' || Array.isArray(body)) {
    t.fail(`error body is not a JSON object: ${text}`);
    return;
  }
  const { error, message } = body as { error?: unknown; message?: unknown };
  t.deepEqual(Object.keys(body).sort(), ['error', 'message'], text);
  t.is(error, code, text);
  t.is(typeof message, 'string');
  t.true(String(message).length > 0);
  if (messageIncludes !== undefined) t.true(String(message).includes(messageIncludes), `message "${String(message)}" should name ${messageIncludes}`);
}

/** Asserts a 401 unauthorized error answer that asks for a bearer token (WWW-Authenticate: Bearer). */
export async function expectUnauthorized(t: ExecutionContext, response: Response): Promise<void> {
  t.regex(response.headers.get('www-authenticate') ?? '', /^Bearer\b/);
  await expectError(t, response, 401, 'unauthorized');
}

// ---------------------------------------------------------------- stored state

/** Blob files on disk, from both blob folders: `<state>/blobs` (pushed) and `<cache>` (synced). */
export async function blobFiles(gw: { config: { paths: { state: string; cache: string } } }): Promise<string[]> {
  const names = [
    ...await readdir(path.join(gw.config.paths.state, 'blobs')),
    ...await readdir(gw.config.paths.cache),
  ];
  return names.filter((name) => /^[0-9a-f]{64}$/.test(name)).sort();
}

/**
 * What a refused request must leave untouched: the blob folders (complete blobs and any
 * temporary files) and the catalog as the API shows it.
 */
export async function storedState(gw: TestGateway): Promise<{ blobs: string[]; temp: string[]; models: unknown; assignments: unknown; groups: unknown }> {
  const blobs = await blobFiles(gw);
  const temp = (await readdir(path.join(gw.config.paths.state, 'blobs', 'tmp'))).sort();
  const read = async (pathname: string) => (await gw.fetch(pathname, { token: ADMIN_TOKEN })).json();
  const models = await read('/v1/models');
  const assignments = await read('/v1/assignments');
  const groups = await read('/v1/groups');
  return { blobs, temp, models, assignments, groups };
}

/** Runs `refused` and asserts that nothing stored changed and no temporary file was left. */
export async function leavesStateUnchanged(t: ExecutionContext, gw: TestGateway, refused: () => Promise<void>): Promise<void> {
  const before = await storedState(gw);
  await refused();
  const after = await storedState(gw);
  t.deepEqual(after, before);
  t.deepEqual(after.temp, []);
}

/**
 * Bytes in LevelDB's write-ahead log files (`*.log`) of the gateway's state folder. LevelDB
 * appends every write (put or batch) to this log and flushes it to the file at once, so
 * its size shows whether the database was written.
 */
export async function levelLogBytes(gw: TestGateway): Promise<number> {
  const dir = gw.config.paths.state;
  let total = 0;
  for (const name of await readdir(dir)) {
    if (name.endsWith('.log') && name !== 'LOG') total += (await stat(path.join(dir, name))).size;
  }
  return total;
}

// ---------------------------------------------------------------- models

export interface Signed {
  signature: string;
  keyId: string;
  /** The sequence of a v2 signature (X-Signature-Seq); absent or null for v1. */
  seq?: string | null;
}

export interface PushedModel {
  name: string;
  version: string;
  sha256: string;
  size: number;
  signature: string | null;
  keyId: string | null;
  signatureSeq: string | null;
}

/**
 * PUT /v1/models/{name}/{version} as the pipeline sends it (the push token unless `token`
 * says otherwise; `signed` adds X-Signature, X-Signature-Key-Id and X-Signature-Seq), answer unchecked.
 */
export function push(
  gw: TestGateway,
  name: string,
  version: string,
  bytes: Buffer,
  init: { token?: string; headers?: Record<string, string>; signed?: Signed } = {},
): Promise<Response> {
  const headers = { ...init.headers };
  if (init.signed) {
    headers['X-Signature'] = init.signed.signature;
    headers['X-Signature-Key-Id'] = init.signed.keyId;
    if (init.signed.seq != null) headers['X-Signature-Seq'] = init.signed.seq;
  }
  return gw.fetch(`/v1/models/${name}/${version}`, { method: 'PUT', token: init.token ?? PUSH_TOKEN, body: bytes, headers });
}

/** Pushes (see push); fails the test unless the gateway stores it (201). */
export async function pushed(t: ExecutionContext, gw: TestGateway, name: string, version: string, bytes: Buffer, signed?: Signed): Promise<PushedModel> {
  const response = await push(gw, name, version, bytes, {
    headers: { 'Content-Type': 'application/octet-stream' },
    ...(signed ? { signed } : {}),
  });
  const text = await response.text();
  t.is(response.status, 201, `push ${name}@${version}: ${text}`);
  return {
    name,
    version,
    sha256: sha256(bytes),
    size: bytes.length,
    signature: signed?.signature ?? null,
    keyId: signed?.keyId ?? null,
    signatureSeq: signed?.seq ?? null,
  };
}

/** An ed25519 key pair and the DESIGN section 5 signature of a model, made without the daemon's code. */
export function signModel(name: string, version: string, bytes: Buffer): Signed {
  const { publicKey, privateKey } = generateKeyPairSync('ed25519');
  const raw = publicKey.export({ format: 'der', type: 'spki' }).subarray(-32);
  const keyId = createHash('sha256').update(raw).digest('hex').slice(0, 16);
  const message = Buffer.from(`modelferry-v1:${name}:${version}:${sha256(bytes)}:${bytes.length}`, 'utf8');
  return { signature: sign(null, message, privateKey).toString('base64'), keyId };
}

// ---------------------------------------------------------------- assignments and groups

/** PUT of a JSON body with the admin token; fails the test unless it is accepted (200 or 201). */
async function putAccepted(t: ExecutionContext, gw: TestGateway, pathname: string, body: unknown, what: string): Promise<void> {
  const response = await sendJson(gw, 'PUT', pathname, body);
  const text = await response.text();
  t.true(response.status === 200 || response.status === 201, `${what}: ${response.status} ${text}`);
}

/** PUT /v1/assignments/{selector}; fails the test unless it is accepted (200 or 201). */
export function assign(t: ExecutionContext, gw: TestGateway, selector: string, body: unknown): Promise<void> {
  return putAccepted(t, gw, `/v1/assignments/${selector}`, body, `assign ${selector}`);
}

/** PUT /v1/groups/{name}; fails the test unless it is accepted (200 or 201). */
export function setGroup(t: ExecutionContext, gw: TestGateway, name: string, members: string[]): Promise<void> {
  return putAccepted(t, gw, `/v1/groups/${name}`, { members }, `group ${name}`);
}

/** DELETE /v1/assignments/{selector}; fails the test unless it answers 204. */
export async function unassign(t: ExecutionContext, gw: TestGateway, selector: string): Promise<void> {
  const response = await gw.fetch(`/v1/assignments/${selector}`, { method: 'DELETE', token: ADMIN_TOKEN });
  t.is(response.status, 204, `unassign ${selector}: ${await response.text()}`);
}

// ---------------------------------------------------------------- devices

export interface Poll {
  status: number;
  etag: string | null;
  headers: Headers;
  /** The raw body bytes, exactly as sent. */
  bytes: Buffer;
  /** The body parsed as JSON, or undefined when empty. */
  json: any;
}

/** GET /v1/devices/{mac}/model as a device sends it. */
export async function poll(
  gw: TestGateway,
  mac: string,
  options: { etag?: string; wait?: string | number; token?: string; signal?: AbortSignal } = {},
): Promise<Poll> {
  const query = options.wait === undefined ? '' : `?wait=${options.wait}`;
  const headers: Record<string, string> = {};
  if (options.etag !== undefined) headers['If-None-Match'] = options.etag;
  const response = await gw.fetch(`/v1/devices/${mac}/model${query}`, {
    headers,
    ...(options.token === undefined ? {} : { token: options.token }),
    ...(options.signal === undefined ? {} : { signal: options.signal }),
  });
  const bytes = Buffer.from(await response.arrayBuffer());
  return {
    status: response.status,
    etag: response.headers.get('etag'),
    headers: response.headers,
    bytes,
    json: bytes.length === 0 ? undefined : JSON.parse(bytes.toString('utf8')),
  };
}

/** The long polls the gateway holds now (its `modelferry_device_long_polls_held` gauge). */
export async function longPollsHeld(gw: TestGateway): Promise<number> {
  const text = await (await gw.fetch('/metrics')).text();
  return Number(/^modelferry_device_long_polls_held (\d+)$/m.exec(text)?.[1]);
}

/** Waits until the gateway holds exactly `count` long polls: they arrived and wait for a change. */
export async function untilLongPollsHeld(gw: TestGateway, count: number): Promise<void> {
  await until(`${count} long polls held`, async () => ((await longPollsHeld(gw)) === count ? true : undefined));
}

/** The DESIGN section 2 poll body for a device and a model. */
export function expectedAnswer(mac: string, model: PushedModel, poll: { intervalSeconds: number; jitterSeconds: number }) {
  return {
    device: mac,
    model: {
      name: model.name,
      version: model.version,
      sha256: model.sha256,
      size: model.size,
      url: `/v1/artifacts/${model.sha256}`,
      signature: model.signature,
      keyId: model.keyId,
      signatureSeq: model.signatureSeq,
    },
    poll,
  };
}

/** The rollout bucket of DESIGN section 2, computed here independently of the daemon's rollout code. */
export function bucketOf(mac: string, name: string, version: string): number {
  return createHash('sha256').update(`${mac}:${name}:${version}`, 'utf8').digest().readUInt32BE(0) % 100;
}

/** GET /v1/devices/{mac} with the admin token. */
export async function inventoryOf(gw: TestGateway, mac: string): Promise<{ status: number; body: any }> {
  const response = await gw.fetch(`/v1/devices/${mac}`, { token: ADMIN_TOKEN });
  return { status: response.status, body: await response.json() };
}

/** GET /v1/devices with the admin token. */
export async function inventory(t: ExecutionContext, gw: TestGateway): Promise<any[]> {
  const response = await gw.fetch('/v1/devices', { token: ADMIN_TOKEN });
  t.is(response.status, 200);
  const body = (await response.json()) as { devices: any[] };
  return body.devices;
}

/** A deterministic list of distinct MACs. */
export function macs(count: number, prefix = '02:00:00:00'): string[] {
  return Array.from({ length: count }, (_, i) => `${prefix}:${(i >> 8).toString(16).padStart(2, '0')}:${(i & 0xff).toString(16).padStart(2, '0')}`);
}

export const delay = (ms: number) => new Promise<void>((resolve) => setTimeout(resolve, ms));
