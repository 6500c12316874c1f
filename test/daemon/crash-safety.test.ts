import { existsSync } from 'node:fs';
import { readdir, rm, stat, truncate } from 'node:fs/promises';
import http from 'node:http';
import path from 'node:path';
import test from 'ava';
import { assignHttp, startDaemon, type RunningDaemon } from '../helpers/daemon-process.ts';
import { ADD_SHA256, fixture, makeProgram, sha256 } from '../helpers/programs.ts';
import { ADMIN_TOKEN, ALL_TOKEN } from '../helpers/tokens.ts';
import { until } from '../helpers/harness.ts';

// docs/design.md "Storage and crash safety": a crash at any point leaves either the old state
// or the new one, and what went missing or bad on disk while the daemon was down is found at
// start and never served. The daemon runs as a child process and is killed or stopped for
// real.

async function put(daemon: RunningDaemon, name: string, version: string, body: Buffer): Promise<number> {
  const response = await daemon.fetch(`/v1/models/${name}/${version}`, { method: 'PUT', body, token: ALL_TOKEN });
  await response.arrayBuffer();
  return response.status;
}

async function poll(daemon: RunningDaemon, mac: string): Promise<{ status: number; body: any }> {
  const response = await daemon.fetch(`/v1/devices/${mac}/model`);
  return { status: response.status, body: await response.json() };
}

test('SIGKILL in the middle of receiving a push leaves no trace: no catalog entry, no artifact, an empty tmp after restart, and the push then succeeds', async (t) => {
  const daemon = await startDaemon(t);
  const program = makeProgram(8 * 1024 * 1024);
  const digest = sha256(program);
  const tmp = path.join(daemon.state, 'blobs', 'tmp');

  // A pipeline mid-upload: the headers promise the whole program, half of it is sent.
  const request = http.request(`${daemon.url}/v1/models/crashy/1`, {
    method: 'PUT',
    agent: false,
    headers: {
      Authorization: `Bearer ${ALL_TOKEN}`,
      'Content-Type': 'application/octet-stream',
      'Content-Length': String(program.length),
      'X-Content-SHA256': digest,
    },
  });
  request.on('error', () => {}); // the connection dies with the daemon
  request.write(program.subarray(0, program.length / 2));
  const partial = await until('a partial upload under <state>/blobs/tmp', async () => {
    for (const name of await readdir(tmp)) {
      const { size } = await stat(path.join(tmp, name)).catch(() => ({ size: 0 }));
      if (size > 0) return name;
    }
    return undefined;
  });
  t.truthy(partial);

  t.deepEqual(await daemon.kill(), { code: null, signal: 'SIGKILL' });
  request.destroy();
  t.true(existsSync(path.join(tmp, partial)), 'the killed daemon left its partial upload behind');

  const next = await startDaemon(t, { dir: daemon.dir });
  t.deepEqual(await readdir(tmp), [], 'leftover temporary files are removed at start');
  t.truthy(next.logs().find((line) => line.msg?.includes('unfinished uploads') && line.count === 1));
  t.deepEqual((await readdir(path.join(next.state, 'blobs'))).sort(), ['tmp'], 'no blob file, complete or not');
  // No artifact, and no delta (its folder comes with the first one).
  t.deepEqual(await readdir(next.cache), []);

  const models = await (await next.fetch('/v1/models', { token: ADMIN_TOKEN })).json() as { models: Array<{ name: string }> };
  t.false(models.models.some((model) => model.name === 'crashy'));
  t.is((await next.fetch('/v1/models/crashy', { token: ADMIN_TOKEN })).status, 404);
  const artifact = await next.fetch(`/v1/artifacts/${digest}`);
  t.is(artifact.status, 404);
  t.is(((await artifact.json()) as { error: string }).error, 'artifact_not_found');

  t.is(await put(next, 'crashy', '1', program), 201);
  const served = await next.fetch(`/v1/artifacts/${digest}`);
  t.is(served.status, 200);
  t.is(sha256(Buffer.from(await served.arrayBuffer())), digest);
});

test('a blob deleted while the daemon was down is reported at start, its devices get 404 no_assignment, and a re-push of the same bytes restores it', async (t) => {
  const mac = '02:00:00:00:0a:01';
  const daemon = await startDaemon(t);
  t.is(await put(daemon, 'kws', '1', fixture('add.pte')), 201);
  await assignHttp(daemon, 'default', 'kws', '1');
  t.is((await poll(daemon, mac)).status, 200);
  t.deepEqual(await daemon.stop(), { code: 0, signal: null });

  await rm(path.join(daemon.state, 'blobs', ADD_SHA256));

  const next = await startDaemon(t, { dir: daemon.dir });
  t.truthy(next.logs().find((line) => line.level >= 50 && line.sha256 === ADD_SHA256), 'an error names the missing blob');
  const missing = await poll(next, mac);
  t.is(missing.status, 404);
  t.is(missing.body.error, 'no_assignment');
  t.is((await next.fetch(`/v1/artifacts/${ADD_SHA256}`)).status, 404);
  t.like(await (await next.fetch('/v1/models/kws/1', { token: ADMIN_TOKEN })).json(), { sha256: ADD_SHA256, cached: false });

  t.is(await put(next, 'kws', '1', fixture('add.pte')), 200);
  const restored = await poll(next, mac);
  t.is(restored.status, 200);
  t.is(restored.body.model.sha256, ADD_SHA256);
  const artifact = await next.fetch(restored.body.model.url);
  t.is(artifact.status, 200);
  t.deepEqual(Buffer.from(await artifact.arrayBuffer()), fixture('add.pte'));
});

test('a blob truncated while the daemon was down is caught by the size check at start and never served', async (t) => {
  const mac = '02:00:00:00:0b:01';
  const program = makeProgram(1024 * 1024);
  const digest = sha256(program);
  const daemon = await startDaemon(t);
  t.is(await put(daemon, 'cut', '1', program), 201);
  await assignHttp(daemon, mac, 'cut', '1');
  t.deepEqual(await daemon.stop(), { code: 0, signal: null });

  await truncate(path.join(daemon.state, 'blobs', digest), program.length / 2);

  const next = await startDaemon(t, { dir: daemon.dir });
  t.truthy(next.logs().find((line) => line.level >= 50 && line.sha256 === digest), 'an error names the bad blob');
  for (const method of ['HEAD', 'GET']) {
    t.is((await next.fetch(`/v1/artifacts/${digest}`, { method })).status, 404, method);
  }
  const answer = await poll(next, mac);
  t.is(answer.status, 404);
  t.is(answer.body.error, 'no_assignment');
  t.like(await (await next.fetch('/v1/models/cut/1', { token: ADMIN_TOKEN })).json(), { cached: false });

  t.is(await put(next, 'cut', '1', program), 200);
  const restored = await next.fetch(`/v1/artifacts/${digest}`);
  t.is(restored.status, 200);
  t.is(sha256(Buffer.from(await restored.arrayBuffer())), digest);
  t.is((await poll(next, mac)).status, 200);
});
