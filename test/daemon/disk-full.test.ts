import http from 'node:http';
import { mkdir, open, readdir, readFile, rename, rm, stat, writeFile } from 'node:fs/promises';
import path from 'node:path';
import type { ExecutionContext } from 'ava';
import { publishBytes, storeDir } from '../sync/sync-helpers.ts';
import { startDaemon, type RunningDaemon } from '../helpers/daemon-process.ts';
import { tempDir, until } from '../helpers/harness.ts';
import { FaultStore } from '../helpers/fault-store.ts';
import { makeProgram, sha256 } from '../helpers/programs.ts';
import { connect, within } from '../helpers/raw-client.ts';
import { ALL_TOKEN } from '../helpers/tokens.ts';
import { testNeeding } from '../helpers/requirements.ts';

// A full disk for real (docs/limits.md, docs/design.md "Limits"): the
// gateway's state and cache folders live on an 8 MiB tmpfs, mounted inside `unshare -m`
// around the daemon, so the mount goes with the daemon's process whatever happens to the
// test. The test reaches the tmpfs through /proc/<pid>/root. Pushes, a drop and a sync are
// refused up front with 507 when they cannot fit beyond the reserve; a disk that fills up
// under a push or a sync that did fit is 507 too, with nothing left behind and the daemon
// serving. The store is test/helpers/fault-store.ts, whose hook fills the disk as the
// sync's download begins.

// Root, to mount a tmpfs in a private mount namespace.
const rootTest = testNeeding('root');

const MiB = 1024 * 1024;
const LOCAL_MAC = '02:00:00:00:d1:01';
const UPSTREAM_MAC = '02:00:00:00:d1:02';

/** `unshare -m` with a tmpfs of `size` mounted at `mount`, then the daemon. */
function onTmpfs(mount: string, size: string): string[] {
  return ['unshare', '-m', '--propagation', 'private', 'sh', '-c', 'mount -t tmpfs -o "size=$1" tmpfs "$0" && shift && exec "$@"', mount, size];
}

async function json(daemon: RunningDaemon, pathname: string, init: RequestInit = {}): Promise<{ status: number; headers: Headers; body: any }> {
  const response = await daemon.fetch(pathname, { token: ALL_TOKEN, ...init });
  return { status: response.status, headers: response.headers, body: await response.json() };
}

/** Writes zeros into `file` until the disk is full; returns how many bytes fit. */
async function fillDisk(file: string): Promise<number> {
  const handle = await open(file, 'w');
  const block = Buffer.alloc(64 * 1024);
  let written = 0;
  try {
    for (;;) written += (await handle.write(block)).bytesWritten;
  } catch (error) {
    if ((error as NodeJS.ErrnoException).code !== 'ENOSPC') throw error;
  } finally {
    await handle.close();
  }
  return written;
}

/** What devices and the admin API see: must not change when a write is refused. */
async function servedState(t: ExecutionContext, daemon: RunningDaemon) {
  const models = (await json(daemon, '/v1/models')).body.models.map((m: any) => `${m.name}@${m.version}:${m.sha256}`).sort();
  const answers: Record<string, string | null> = {};
  for (const mac of [LOCAL_MAC, UPSTREAM_MAC]) {
    const poll = await daemon.fetch(`/v1/devices/${mac}/model`);
    t.is(poll.status, 200, `${mac} is answered`);
    const { model } = await poll.json() as { model: { sha256: string; url: string } };
    const artifact = await daemon.fetch(model.url);
    t.is(artifact.status, 200);
    t.is(sha256(Buffer.from(await artifact.arrayBuffer())), model.sha256, `${mac}'s artifact downloads whole`);
    answers[mac] = `${poll.headers.get('etag')} ${model.sha256}`;
  }
  return { models, answers };
}

rootTest('a full disk: pushes, drops and syncs that cannot fit beyond the reserve are 507 before they start; a disk that fills under a push or a sync is 507 with nothing left behind; at most maxConcurrentPushes at once (503 busy)', async (t) => {
  const dir = await tempDir(t, 'modelferry-diskfull-');
  const mount = path.join(dir, 'small-disk');
  const inbox = path.join(dir, 'inbox');
  await mkdir(mount);
  await mkdir(inbox);

  const store = await storeDir(t);
  const upstreamV1 = makeProgram(64 * 1024);
  await publishBytes(store, 'synced', '1', upstreamV1, { assign: UPSTREAM_MAC });
  const server = await FaultStore.start(t, store);

  const daemon = await startDaemon(t, {
    dir,
    prefix: onTmpfs(mount, '8m'),
    config: {
      paths: { state: path.join(mount, 'state'), cache: path.join(mount, 'cache') },
      artifacts: { diskReserveBytes: '1 MiB', maxConcurrentPushes: 1 },
      upstream: { url: `${server.url}/manifest.json`, schedule: '0 0 1 1 *', maxRandomDelaySeconds: 0 },
      inbox: { dir: inbox, settleSeconds: 0.2, checkSeconds: 0.5 },
    },
  });
  /** A path on the daemon's tmpfs, as the test sees it. */
  const onDisk = (...parts: string[]) => path.join(`/proc/${daemon.pid}/root`, mount, ...parts);
  const tmp = onDisk('state', 'blobs', 'tmp');
  await until('the first sync', async () => (await json(daemon, '/v1/sync')).body.lastOutcome?.result === 'updated' || undefined);

  const v1 = makeProgram(MiB);
  t.is((await json(daemon, '/v1/models/kws/1', { method: 'PUT', body: v1 })).status, 201);
  const assigned = await json(daemon, `/v1/assignments/${LOCAL_MAC}`, { method: 'PUT', headers: { 'Content-Type': 'application/json' }, body: JSON.stringify({ model: 'kws', version: '1' }) });
  t.is(assigned.status, 201);
  const before = await servedState(t, daemon);

  // Up front: a push whose Content-Length does not fit is answered before its body is read.
  const pusher = await connect(t, daemon.port);
  pusher.write(`PUT /v1/models/kws/2 HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer ${ALL_TOKEN}\r\nContent-Length: ${7 * MiB}\r\n\r\n`);
  pusher.write(makeProgram(64 * 1024));
  t.not(await within(pusher.closed, 10_000), 'timeout', 'answered and closed with 64 KiB of 7 MiB sent');
  t.is(pusher.status, 507);
  t.regex(pusher.text, /connection: close/i);
  t.regex(pusher.text, /"error":"insufficient_storage"/);
  t.regex(pusher.text, /diskReserveBytes/);
  t.deepEqual(await readdir(tmp), []);

  // Up front: a drop too big for the disk is filed in rejected/ with a sentence saying why.
  // Written under a temporary name and renamed, as rsync does: a slow write in place could
  // settle half-written on a busy machine.
  await writeFile(path.join(inbox, '.big@1.pte'), makeProgram(7 * MiB));
  await rename(path.join(inbox, '.big@1.pte'), path.join(inbox, 'big@1.pte'));
  const note = await until('the drop refused', async () => {
    const names = await readdir(path.join(inbox, 'rejected')).catch(() => [] as string[]);
    const text = names.find((name) => name.endsWith('.error.txt'));
    // Read once it is written whole: it ends with a newline.
    const content = text ? await readFile(path.join(inbox, 'rejected', text), 'utf8') : '';
    return content.endsWith('\n') ? content : undefined;
  });
  t.regex(note, /disk is too full/);
  t.deepEqual(await readdir(tmp), []);

  // A push that fits the check, and a disk that fills up under it.
  const v2 = makeProgram(3 * MiB);
  const slow = http.request(`${daemon.url}/v1/models/kws/2`, {
    method: 'PUT', agent: false, headers: { Authorization: `Bearer ${ALL_TOKEN}`, 'Content-Length': String(v2.length) },
  });
  const answered = new Promise<{ status: number; body: string; headers: http.IncomingHttpHeaders }>((resolve, reject) => {
    slow.on('response', (res) => {
      let body = '';
      res.setEncoding('utf8').on('data', (text: string) => { body += text; }).on('end', () => resolve({ status: res.statusCode!, body, headers: res.headers }));
    });
    slow.on('error', reject);
  });
  slow.write(v2.subarray(0, 256 * 1024));
  await until('the push under way in tmp/', async () => {
    for (const name of await readdir(tmp)) if ((await stat(path.join(tmp, name))).size > 0) return true;
    return undefined;
  });

  // While it runs, another push is refused at once, before its body is read.
  const second = await connect(t, daemon.port);
  second.write(`PUT /v1/models/kws/3 HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer ${ALL_TOKEN}\r\nContent-Length: ${MiB}\r\n\r\n`);
  second.write(Buffer.alloc(16 * 1024));
  t.not(await within(second.closed, 10_000), 'timeout');
  t.is(second.status, 503);
  t.regex(second.text, /retry-after: 5/i);
  t.regex(second.text, /connection: close/i);
  t.regex(second.text, /maxConcurrentPushes/);

  const filler = onDisk('filler');
  t.true(await fillDisk(filler) > 0);
  slow.end(v2.subarray(256 * 1024));
  const refused = await answered;
  await rm(filler);
  t.is(refused.status, 507, refused.body);
  t.is(JSON.parse(refused.body).error, 'insufficient_storage');
  t.deepEqual(await readdir(tmp), [], 'no partial file in tmp/');
  t.deepEqual(await servedState(t, daemon), before, 'nothing stored changed; polls and downloads are answered');

  // A sync that fits the check, and a disk that fills up as its artifact arrives.
  const upstreamV2 = makeProgram(1536 * 1024);
  await publishBytes(store, 'synced', '2', upstreamV2, { assign: UPSTREAM_MAC });
  server.beforeServe(async (pathname) => {
    if (pathname === `/artifacts/${sha256(upstreamV2)}`) await fillDisk(filler);
  });
  const cut = await json(daemon, '/v1/sync', { method: 'POST' });
  server.beforeServe(undefined);
  await rm(filler);
  t.is(cut.status, 507, JSON.stringify(cut.body));
  t.is(cut.body.error, 'insufficient_storage');
  t.true(server.requests.some((r) => r.path === `/artifacts/${sha256(upstreamV2)}`), 'the download had begun');
  t.deepEqual(await readdir(onDisk('cache', 'partial')).catch(() => []), [], 'the partial download gave its space back');
  t.deepEqual(await servedState(t, daemon), before, 'devices keep the old upstream layer');

  // A sync whose artifacts do not fit: 507, recorded, the old layer kept, nothing fetched.
  const upstreamV3 = makeProgram(7 * MiB);
  await publishBytes(store, 'synced', '3', upstreamV3, { assign: UPSTREAM_MAC });
  const sync = await json(daemon, '/v1/sync', { method: 'POST' });
  t.is(sync.status, 507, JSON.stringify(sync.body));
  t.is(sync.body.error, 'insufficient_storage');
  const status = (await json(daemon, '/v1/sync')).body;
  t.like(status, { state: 'failing', lastError: { code: 'insufficient_storage' }, lastOutcome: { result: 'failed' } });
  t.false(server.requests.some((r) => r.path === `/artifacts/${sha256(upstreamV3)}`), 'no byte of the artifact was asked for');
  t.deepEqual(await readdir(onDisk('cache', 'partial')).catch(() => []), []);
  t.deepEqual(await servedState(t, daemon), before, 'devices keep the old upstream layer');

  // A push without Content-Length (chunked) is held to the room there was when it began.
  const big = makeProgram(7 * MiB);
  const chunked = await daemon.fetch('/v1/models/kws/4', {
    method: 'PUT', token: ALL_TOKEN, duplex: 'half',
    body: new ReadableStream({ start(controller) { for (let i = 0; i < big.length; i += MiB) controller.enqueue(big.subarray(i, i + MiB)); controller.close(); } }),
  } as RequestInit);
  t.is(chunked.status, 507);
  t.regex((await chunked.json() as { message: string }).message, /room for \d+ bytes/);
  t.deepEqual(await readdir(tmp), []);

  // With room again, the same push goes through.
  t.is((await json(daemon, '/v1/models/kws/2', { method: 'PUT', body: v2 })).status, 201);
  t.false(daemon.logs().some((line) => line.msg === 'request failed'), 'no request failed as internal');
});
