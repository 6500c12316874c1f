import { request } from 'node:http';
import type { ExecutionContext } from 'ava';
import { ADMIN_TOKEN, PUSH_TOKEN, storedState, type TestGateway } from '../helpers/gateway.ts';

// Helpers for the pipeline and admin API tests (push.test.ts, admin.test.ts).

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

/** Asserts an error answer: exact status, JSON `{error, message}` and nothing else. */
export function assertError(t: ExecutionContext, status: number, text: string, expectedStatus: number, code: string): void {
  t.is(status, expectedStatus, text);
  let body: unknown;
  try {
    body = JSON.parse(text);
  } catch {
    t.fail(`error body is not JSON: ${text}`);
    return;
  }
  const { error, message, ...rest } = body as { error?: unknown; message?: unknown };
  t.is(error, code, text);
  t.is(typeof message, 'string');
  t.true((message as string).length > 0);
  t.deepEqual(rest, {});
}

export async function expectError(t: ExecutionContext, response: Response, status: number, code: string): Promise<void> {
  t.regex(response.headers.get('content-type') ?? '', /^application\/json/);
  assertError(t, response.status, await response.text(), status, code);
}

/** Runs `refused` and asserts that nothing stored changed and no temporary file was left. */
export async function leavesStateUnchanged(t: ExecutionContext, gw: TestGateway, refused: () => Promise<void>): Promise<void> {
  const before = await storedState(gw);
  await refused();
  const after = await storedState(gw);
  t.deepEqual(after, before);
  t.deepEqual(after.temp, []);
}

export function push(gw: TestGateway, name: string, version: string, bytes: Buffer, init: { token?: string; headers?: Record<string, string> } = {}): Promise<Response> {
  return gw.fetch(`/v1/models/${name}/${version}`, { method: 'PUT', token: init.token ?? PUSH_TOKEN, body: bytes, headers: init.headers ?? {} });
}

/** Pushes and asserts 201. */
export async function pushed(t: ExecutionContext, gw: TestGateway, name: string, version: string, bytes: Buffer): Promise<void> {
  const response = await push(gw, name, version, bytes);
  t.is(response.status, 201, await response.text());
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
