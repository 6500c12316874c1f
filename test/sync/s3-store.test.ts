import { writeFile } from 'node:fs/promises';
import path from 'node:path';
import test from 'ava';
import { checkUpstream } from '../../daemon/doctor/checks.ts';
import { isModelferryError } from '../../daemon/errors.ts';
import { publish } from '../../daemon/publish/publish.ts';
import { poll } from '../helpers/api.ts';
import { startGateway } from '../helpers/gateway.ts';
import { tempDir } from '../helpers/harness.ts';
import { runCli } from '../helpers/daemon-process.ts';
import { fixture, fixturePath, makeProgram, sha256 } from '../helpers/programs.ts';
import { S3_KEY_ID, S3_READER_KEY_ID, S3_SECRET, S3Store } from '../helpers/s3-store.ts';
import { NEVER, syncNow, synced, syncStatus, syncingGateway, startRunDone } from './sync-helpers.ts';

// A private bucket as the central store (docs/central-store.md "Many sites on S3"), against
// a real S3 endpoint on loopback (s3rver): publish writes into it, gateways sync from it,
// every request signed (SigV4), and what S3 refuses is said as something a person can fix.

async function publishTo(t: import('ava').ExecutionContext, s3: S3Store, prefix: string, name: string, version: string, bytes: Buffer, extra: { assign?: string; secret?: string } = {}) {
  const file = path.join(await tempDir(t), `${name}-${version}.pte`);
  await writeFile(file, bytes);
  return publish({
    store: `s3://${s3.bucket}/${prefix}`, file, name, version, assign: extra.assign,
    access: { s3: s3.settings(extra.secret ? { secretAccessKey: extra.secret } : {}), env: {} },
  });
}

async function refusal(t: import('ava').ExecutionContext, promise: Promise<unknown>, code: string, pattern: RegExp): Promise<void> {
  const error = await t.throwsAsync(promise);
  t.true(isModelferryError(error), String(error));
  t.is((error as { code?: string }).code, code, (error as Error).message);
  t.regex((error as Error).message, pattern);
}

test('publish writes artifacts then the manifest into the bucket; a gateway syncs from s3:// with every request signed, and devices get the model', async (t) => {
  const s3 = await S3Store.start(t);
  const result = await publishTo(t, s3, 'site-a', 'kws', '1', fixture('add.pte'), { assign: 'default' });
  t.like(result, { created: true, manifestChanged: true });
  const puts = s3.requests.filter((r) => r.method === 'PUT').map((r) => r.url);
  t.deepEqual(puts, [`/models/site-a/artifacts/${sha256(fixture('add.pte'))}`, '/models/site-a/manifest.json'], 'the artifact is whole before the manifest names it');

  const gw = await syncingGateway(t, `s3://models/site-a/manifest.json`, { 'upstream.s3': JSON.stringify(s3.settings()) });
  t.like(await startRunDone(gw), { state: 'ok', url: 's3://models/site-a/manifest.json', lastOutcome: { result: 'updated', fetched: 1 } });
  const answer = await poll(gw, 'aa:bb:cc:dd:ee:01');
  t.is(answer.status, 200);
  t.is(answer.json.model.sha256, sha256(fixture('add.pte')));
  const reads = s3.requests.filter((r) => r.method === 'GET');
  t.true(reads.length >= 2);
  for (const request of reads) t.regex(request.authorization, /^AWS4-HMAC-SHA256 Credential=S3RVER\//, `${request.url} is signed`);
  t.true(reads.some((r) => r.url === `/models/site-a/artifacts/${sha256(fixture('add.pte'))}` && r.status === 200), 'the artifact URL, relative to the manifest, resolved inside the bucket');

  // The same store as the pipeline sees it: the CLI, with the standard AWS variables.
  const file = path.join(await tempDir(t), 'mul.pte');
  await writeFile(file, fixture('mul.pte'));
  const cli = await runCli(['publish', 's3://models/site-a', fixturePath('mul.pte'), '--name', 'kws', '--version', '2'], {
    env: { ...process.env, AWS_ACCESS_KEY_ID: S3_KEY_ID, AWS_SECRET_ACCESS_KEY: S3_SECRET, AWS_ENDPOINT_URL: s3.endpoint, AWS_REGION: 'us-east-1' },
  });
  t.is(cli.code, 0, cli.stderr);
  t.like(JSON.parse(cli.stdout), { created: true, name: 'kws', version: '2' });
  t.like(await synced(t, gw), { models: 2, fetched: 1 });
});

test('an unchanged bucket costs one small request per sync: a conditional GET answered 304', async (t) => {
  const s3 = await S3Store.start(t);
  await publishTo(t, s3, 'site-a', 'kws', '1', fixture('add.pte'), { assign: 'default' });
  await publishTo(t, s3, 'site-a', 'vad', '1', makeProgram(64 * 1024));
  const gw = await syncingGateway(t, 's3://models/site-a/manifest.json', { 'upstream.s3': JSON.stringify(s3.settings()) });
  t.like(await startRunDone(gw), { lastOutcome: { result: 'updated', fetched: 2 } });
  const before = s3.requests.length;
  for (let i = 0; i < 5; i++) t.like(await synced(t, gw, 'unchanged'), { bytes: 0, fetched: 0 });
  const during = s3.requests.slice(before);
  t.is(during.length, 5, 'one request per sync');
  for (const request of during) {
    t.like(request, { method: 'GET', url: '/models/site-a/manifest.json', status: 304 });
    t.not(request.ifNoneMatch, '');
  }
});

test('a wrong secret fails the sync as upstream_denied naming the secret, and the secret is never logged', async (t) => {
  const s3 = await S3Store.start(t);
  await publishTo(t, s3, 'site-a', 'kws', '1', fixture('add.pte'), { assign: 'default' });
  const wrong = 'not-the-secret-0123456789';
  const gw = await startGateway(t, {
    'upstream.url': 's3://models/site-a/manifest.json',
    'upstream.s3': JSON.stringify(s3.settings({ secretAccessKey: wrong })),
    'upstream.schedule': NEVER,
  }, { logs: true });
  await startRunDone(gw);
  const answer = await syncNow(gw);
  t.is(answer.status, 502);
  t.is(answer.body.error, 'upstream_denied');
  t.regex(answer.body.message, /SignatureDoesNotMatch.*secret access key is not the one of access key id S3RVER.*upstream\.s3\.secretAccessKey/);
  t.like(await syncStatus(gw), { state: 'failing', lastError: { code: 'upstream_denied' } });
  const health = await (await gw.fetch('/healthz')).json() as { upstream: { lastError: { code: string } } };
  t.is(health.upstream.lastError.code, 'upstream_denied');
  const lines = gw.logs().map((line) => JSON.stringify(line));
  t.true(lines.some((line) => line.includes('SignatureDoesNotMatch')), 'the failure is logged');
  t.false(lines.some((line) => line.includes(wrong)), 'the secret is not');
  t.is((await poll(gw, 'aa:bb:cc:dd:ee:01')).status, 404, 'nothing was applied');
});

test('modelferry doctor reads an s3:// manifest as a sync does: the right key answers, a wrong secret is named', async (t) => {
  const s3 = await S3Store.start(t);
  await publishTo(t, s3, 'site-a', 'kws', '1', fixture('add.pte'));
  t.like(await checkUpstream('s3://models/site-a/manifest.json', null, 10_000, s3.settings()), { verdict: 'ok' });
  const wrong = await checkUpstream('s3://models/site-a/manifest.json', null, 10_000, s3.settings({ secretAccessKey: 'wrong-secret-000000' }));
  t.like(wrong, { verdict: 'fail' });
  t.regex(JSON.stringify(wrong), /SignatureDoesNotMatch/);
  t.regex(JSON.stringify(await checkUpstream('s3://models/site-b/manifest.json', null, 10_000, s3.settings())), /s3:\/\/models\/site-b\/manifest\.json does not exist/);
});

test('a wrong key id is InvalidAccessKeyId, named with the key id to check', async (t) => {
  const s3 = await S3Store.start(t);
  await publishTo(t, s3, 'site-a', 'kws', '1', fixture('add.pte'));
  const gw = await syncingGateway(t, 's3://models/site-a/manifest.json', { 'upstream.s3': JSON.stringify(s3.settings({ accessKeyId: 'AKIAWRONGKEY0001' })) });
  await startRunDone(gw);
  const answer = await syncNow(gw);
  t.is(answer.status, 502);
  t.is(answer.body.error, 'upstream_denied');
  t.regex(answer.body.message, /does not know the access key id AKIAWRONGKEY0001 .*InvalidAccessKeyId/);
});

test('a bucket that does not exist is upstream_error saying so, for a sync and for a publish', async (t) => {
  const s3 = await S3Store.start(t);
  const gw = await syncingGateway(t, 's3://no-such-bucket/site-a/manifest.json', { 'upstream.s3': JSON.stringify(s3.settings()) });
  await startRunDone(gw);
  const answer = await syncNow(gw);
  t.is(answer.status, 502);
  t.is(answer.body.error, 'upstream_error');
  t.regex(answer.body.message, /there is no bucket named no-such-bucket at 127\.0\.0\.1:\d+ \(404 NoSuchBucket\)/);

  const file = path.join(await tempDir(t), 'kws.pte');
  await writeFile(file, fixture('add.pte'));
  await refusal(t, publish({ store: 's3://no-such-bucket/site-a', file, name: 'kws', version: '1', access: { s3: s3.settings(), env: {} } }), 'upstream_error', /no bucket named no-such-bucket/);
});

test('a publish with a wrong secret is refused and writes nothing', async (t) => {
  const s3 = await S3Store.start(t);
  await refusal(t, publishTo(t, s3, 'site-a', 'kws', '1', fixture('add.pte'), { secret: 'wrong-secret-000000' }), 'upstream_denied', /SignatureDoesNotMatch/);
  t.deepEqual(s3.requests.filter((r) => r.status >= 200 && r.status < 300), [], 'nothing was written');
});

test("a gateway whose clock is off is told by how much, from S3's RequestTimeTooSkewed", async (t) => {
  const s3 = await S3Store.start(t);
  await publishTo(t, s3, 'site-a', 'kws', '1', fixture('add.pte'));
  const offset = 20 * 60_000 + 7_000;
  const clock = { now: () => new Date(Date.now() + offset), every: () => () => undefined };
  const gw = await startGateway(t, { 'upstream.url': 's3://models/site-a/manifest.json', 'upstream.s3': JSON.stringify(s3.settings()), 'upstream.schedule': NEVER }, { clock });
  await startRunDone(gw);
  const answer = await syncNow(gw);
  t.is(answer.status, 502);
  t.is(answer.body.error, 'upstream_denied');
  t.regex(answer.body.message, /this machine's clock is off by 20 min [67] s \(ahead of the store's\) \(403 RequestTimeTooSkewed/);
});

test("a gateway's read-only key syncs the bucket; a publish with it is refused AccessDenied naming the permission and the key, and writes nothing", async (t) => {
  const s3 = await S3Store.start(t);
  await publishTo(t, s3, 'site-a', 'kws', '1', fixture('add.pte'), { assign: 'default' });
  const gw = await syncingGateway(t, 's3://models/site-a/manifest.json', { 'upstream.s3': JSON.stringify(s3.readerSettings()) });
  t.like(await startRunDone(gw), { state: 'ok', lastOutcome: { result: 'updated', fetched: 1 } });
  t.is((await poll(gw, 'aa:bb:cc:dd:ee:01')).json.model.sha256, sha256(fixture('add.pte')));

  const before = s3.requests.length;
  const file = path.join(await tempDir(t), 'mul.pte');
  await writeFile(file, fixture('mul.pte'));
  await refusal(t, publish({ store: 's3://models/site-a', file, name: 'kws', version: '2', access: { s3: s3.readerSettings(), env: {} } }),
    'upstream_denied', new RegExp(`denied s3:PutObject on s3://models/site-a/artifacts/${sha256(fixture('mul.pte'))} to access key id ${S3_READER_KEY_ID} \\(403 AccessDenied\\)`));
  t.deepEqual(s3.requests.slice(before).filter((r) => r.method === 'PUT').map((r) => r.status), [403], 'one write tried, refused; the manifest was not touched');
  t.like(await synced(t, gw, 'unchanged'), { fetched: 0 });
});
