import type { ExecutionContext } from 'ava';
import { assign, poll, push, pushed, setGroup, type PushedModel } from '../helpers/api.ts';
import type { FetchInit } from '../helpers/harness.ts';
import { fixture } from '../helpers/programs.ts';

// A small fleet in known states, made through the HTTP API only, for the operations tests
// (metrics, status page, backup). Works against an in-process or a child-process gateway.

export interface Target {
  url: string;
  fetch(pathname: string, init?: FetchInit): Promise<Response>;
}

export const IN_SYNC = 'aa:bb:cc:00:00:01';
export const FAILED = 'aa:bb:cc:00:00:02';
export const PENDING = 'aa:bb:cc:00:00:03';
/** What the failed device reports as its error: markup that must never become markup. */
export const HOSTILE_ERROR = '<img src=x onerror="document.title=\'pwned\'"><script>document.title="pwned"</script> & "quotes"';

export interface Fleet {
  v1: PushedModel;
  v2: PushedModel;
  /** Bytes the scenario downloaded from /v1/artifacts. */
  downloadedBytes: number;
}

/**
 * kws@1.0 and kws@2.0 pushed (plus one unchanged re-push and one refused conflict);
 * default → kws@2.0, group lab (the failed device) → kws@1.0. The in-sync device polls,
 * downloads and reports installed; the failed one reports a hostile error; the pending one
 * polls twice (200, then 304) and never reports. One full download and one range.
 */
export async function scriptedFleet(t: ExecutionContext, gw: Target): Promise<Fleet> {
  const v1 = await pushed(t, gw as never, 'kws', '1.0', fixture('add.pte'));
  const v2 = await pushed(t, gw as never, 'kws', '2.0', fixture('mul.pte'));
  t.is((await push(gw as never, 'kws', '1.0', fixture('add.pte'))).status, 200);
  t.is((await push(gw as never, 'kws', '1.0', fixture('mul.pte'))).status, 409);
  await setGroup(t, gw as never, 'lab', [FAILED]);
  await assign(t, gw as never, 'default', { model: 'kws', version: '2.0' });
  await assign(t, gw as never, 'group:lab', { model: 'kws', version: '1.0' });

  t.is((await poll(gw as never, IN_SYNC)).status, 200);
  const full = await gw.fetch(`/v1/artifacts/${v2.sha256}`);
  t.is(full.status, 200);
  const fullBytes = (await full.arrayBuffer()).byteLength;
  const range = await gw.fetch(`/v1/artifacts/${v2.sha256}`, { headers: { Range: 'bytes=0-9' } });
  t.is(range.status, 206);
  const rangeBytes = (await range.arrayBuffer()).byteLength;
  await report(t, gw, IN_SYNC, { state: 'installed', sha256: v2.sha256, model: 'kws', version: '2.0', rssi: -52 });

  t.is((await poll(gw as never, FAILED)).status, 200);
  await report(t, gw, FAILED, { state: 'failed', model: 'kws', version: '1.0', error: HOSTILE_ERROR, rssi: -81 });

  const first = await poll(gw as never, PENDING);
  t.is(first.status, 200);
  t.is((await poll(gw as never, PENDING, { etag: first.etag! })).status, 304);
  return { v1, v2, downloadedBytes: fullBytes + rangeBytes };
}

export async function report(t: ExecutionContext, gw: Target, mac: string, body: Record<string, unknown>): Promise<void> {
  const response = await gw.fetch(`/v1/devices/${mac}/report`, {
    method: 'POST', headers: { 'Content-Type': 'application/json' }, body: JSON.stringify(body),
  });
  t.is(response.status, 204, await response.text());
}
