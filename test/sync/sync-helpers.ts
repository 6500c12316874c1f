import { mkdir, writeFile } from 'node:fs/promises';
import path from 'node:path';
import type { ExecutionContext } from 'ava';
import { publish, type PublishRequest } from '../../daemon/publish/publish.ts';
import { poll, type Poll } from '../helpers/api.ts';
import { startGateway, type ConfigOverrides, type TestGateway } from '../helpers/gateway.ts';
import { tempDir } from '../helpers/harness.ts';
import { ADMIN_TOKEN } from '../helpers/tokens.ts';

// Shared steps of the upstream sync tests (docs/design.md "Sync").

/** No scheduled run during a test: runs come from start and from POST /v1/sync. */
export const NEVER = '0 0 1 1 *';

export async function storeDir(t: ExecutionContext): Promise<string> {
  const dir = path.join(await tempDir(t, 'modelferry-store-'), 'store');
  await mkdir(dir, { recursive: true });
  return dir;
}

/** Publishes bytes (written to a temporary file) into a store folder. */
export async function publishBytes(store: string, name: string, version: string, bytes: Buffer, extra: Partial<PublishRequest> = {}) {
  const file = path.join(path.dirname(store), `${name}-${version}.pte`);
  await writeFile(file, bytes);
  return publish({ store, file, name, version, ...extra });
}

/** A gateway syncing from `url`, with the scheduler out of the way and short timeouts. */
export async function syncingGateway(t: ExecutionContext, url: string, overrides: ConfigOverrides = {}): Promise<TestGateway> {
  return startGateway(t, {
    'upstream.url': url,
    'upstream.schedule': NEVER,
    'upstream.maxRandomDelaySeconds': '0',
    // Generous: the machine may be busy; tests of the timeouts set short ones.
    'upstream.connectTimeoutSeconds': '10',
    'upstream.headersTimeoutSeconds': '10',
    'upstream.bodyIdleTimeoutSeconds': '10',
    ...overrides,
  });
}

export interface SyncAnswer {
  status: number;
  body: any;
}

/** POST /v1/sync with the admin token. */
export async function syncNow(gw: TestGateway): Promise<SyncAnswer> {
  const response = await gw.fetch('/v1/sync', { method: 'POST', token: ADMIN_TOKEN });
  return { status: response.status, body: await response.json() };
}

/**
 * POST /v1/sync; fails the test unless it answers 200 with `result`. With `tries`, a failed
 * sync is tried again (for gateways whose short test timeouts a busy machine may miss).
 */
export async function synced(t: ExecutionContext, gw: TestGateway, result: 'updated' | 'unchanged' = 'updated', tries = 1): Promise<any> {
  let answer = await syncNow(gw);
  for (let attempt = 1; attempt < tries && answer.status !== 200; attempt++) answer = await syncNow(gw);
  t.is(answer.status, 200, JSON.stringify(answer.body));
  t.is(answer.body.result, result, JSON.stringify(answer.body));
  return answer.body;
}

export async function syncStatus(gw: TestGateway): Promise<any> {
  return (await gw.fetch('/v1/sync', { token: ADMIN_TOKEN })).json();
}

/** Waits for the run the gateway starts by itself to end. */
export async function startRunDone(gw: TestGateway): Promise<any> {
  for (;;) {
    const status = await syncStatus(gw);
    if (!status.running && status.lastOutcome) return status;
    await new Promise((resolve) => setTimeout(resolve, 20));
  }
}

/** What a device sees: the poll answer's bytes and ETag, and the bytes of its artifact. */
export async function deviceView(gw: TestGateway, mac: string): Promise<{ poll: Pick<Poll, 'status' | 'etag'> & { body: string }; artifact: string | null }> {
  const answer = await poll(gw, mac);
  let artifact: string | null = null;
  if (answer.status === 200) {
    const response = await gw.fetch(answer.json.model.url);
    artifact = `${response.status}:${Buffer.from(await response.arrayBuffer()).toString('base64').slice(0, 64)}:${response.headers.get('content-length')}`;
  }
  return { poll: { status: answer.status, etag: answer.etag, body: answer.bytes.toString('utf8') }, artifact };
}
