import { createHash, generateKeyPairSync, sign } from 'node:crypto';
import { readdir, stat } from 'node:fs/promises';
import path from 'node:path';
import type { ExecutionContext } from 'ava';
import { ADMIN_TOKEN, PUSH_TOKEN, type TestGateway } from '../helpers/gateway.ts';
import { sha256 } from '../helpers/programs.ts';

// Shared steps of the device-facing API tests (device-poll, device-report, artifacts).
// Everything goes through the gateway's real HTTP API; nothing here reaches into the daemon.

export interface PushedModel {
  name: string;
  version: string;
  sha256: string;
  size: number;
  signature: string | null;
  keyId: string | null;
}

/** PUT /v1/models/{name}/{version}; fails the test unless the gateway stores it (201). */
export async function push(
  t: ExecutionContext,
  gw: TestGateway,
  name: string,
  version: string,
  bytes: Buffer,
  signed?: { signature: string; keyId: string },
): Promise<PushedModel> {
  const headers: Record<string, string> = { 'Content-Type': 'application/octet-stream' };
  if (signed) {
    headers['X-Signature'] = signed.signature;
    headers['X-Signature-Key-Id'] = signed.keyId;
  }
  const response = await gw.fetch(`/v1/models/${name}/${version}`, { method: 'PUT', body: bytes, headers, token: PUSH_TOKEN });
  const text = await response.text();
  t.is(response.status, 201, `push ${name}@${version}: ${text}`);
  return {
    name,
    version,
    sha256: sha256(bytes),
    size: bytes.length,
    signature: signed?.signature ?? null,
    keyId: signed?.keyId ?? null,
  };
}

/** An ed25519 key pair and the DESIGN section 5 signature of a model. */
export function signModel(name: string, version: string, bytes: Buffer): { signature: string; keyId: string } {
  const { publicKey, privateKey } = generateKeyPairSync('ed25519');
  const raw = publicKey.export({ format: 'der', type: 'spki' }).subarray(-32);
  const keyId = createHash('sha256').update(raw).digest('hex').slice(0, 16);
  const message = Buffer.from(`modelferry-v1:${name}:${version}:${sha256(bytes)}:${bytes.length}`, 'utf8');
  return { signature: sign(null, message, privateKey).toString('base64'), keyId };
}

/** PUT /v1/assignments/{selector}; fails the test unless it is accepted (200 or 201). */
export async function assign(t: ExecutionContext, gw: TestGateway, selector: string, body: unknown): Promise<void> {
  const response = await gw.fetch(`/v1/assignments/${selector}`, {
    method: 'PUT',
    body: JSON.stringify(body),
    headers: { 'Content-Type': 'application/json' },
    token: ADMIN_TOKEN,
  });
  const text = await response.text();
  t.true(response.status === 200 || response.status === 201, `assign ${selector}: ${response.status} ${text}`);
}

export async function unassign(t: ExecutionContext, gw: TestGateway, selector: string): Promise<void> {
  const response = await gw.fetch(`/v1/assignments/${selector}`, { method: 'DELETE', token: ADMIN_TOKEN });
  t.is(response.status, 204, `unassign ${selector}: ${await response.text()}`);
}

export async function setGroup(t: ExecutionContext, gw: TestGateway, name: string, members: string[]): Promise<void> {
  const response = await gw.fetch(`/v1/groups/${name}`, {
    method: 'PUT',
    body: JSON.stringify({ members }),
    headers: { 'Content-Type': 'application/json' },
    token: ADMIN_TOKEN,
  });
  const text = await response.text();
  t.true(response.status === 200 || response.status === 201, `group ${name}: ${response.status} ${text}`);
}

export interface Poll {
  status: number;
  etag: string | null;
  headers: Headers;
  /** The raw body bytes, exactly as sent. */
  bytes: Buffer;
  /** The body parsed as JSON, or undefined when empty. */
  json: any;
}

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
    },
    poll,
  };
}

/** DESIGN section 2, computed here independently of the daemon's rollout code. */
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

/** A deterministic list of distinct MACs. */
export function macs(count: number, prefix = '02:00:00:00'): string[] {
  return Array.from({ length: count }, (_, i) => `${prefix}:${(i >> 8).toString(16).padStart(2, '0')}:${(i & 0xff).toString(16).padStart(2, '0')}`);
}

export const delay = (ms: number) => new Promise<void>((resolve) => setTimeout(resolve, ms));

/** Asserts a JSON error response of exactly `{error, message}`. */
export async function assertError(t: ExecutionContext, response: Response, status: number, code: string, messageIncludes?: string): Promise<void> {
  const text = await response.text();
  t.is(response.status, status, text);
  t.regex(response.headers.get('content-type') ?? '', /^application\/json/);
  const body = JSON.parse(text) as Record<string, unknown>;
  t.deepEqual(Object.keys(body).sort(), ['error', 'message']);
  t.is(body.error, code);
  t.is(typeof body.message, 'string');
  t.true((body.message as string).length > 0);
  if (messageIncludes !== undefined) t.true((body.message as string).includes(messageIncludes), `message "${body.message}" should name ${messageIncludes}`);
}
