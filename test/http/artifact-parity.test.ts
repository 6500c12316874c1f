import test, { type ExecutionContext } from 'ava';
import { pushed } from '../helpers/api.ts';
import { startGateway, type TestGateway } from '../helpers/gateway.ts';
import { makeProgram, sha256 } from '../helpers/programs.ts';

// Artifact reads are answered before Koa (daemon/http/artifact-fast-path.ts) when the path is
// plain; a percent-encoded digest or a query takes the Koa route. Both answer through
// artifact-responder.ts: for every case docs/design.md "Artifact downloads" names, a device
// must not be able to tell which one answered, whether the blob is served from memory or
// streamed from disk.

const SIZE = 300_001;
const program = makeProgram(SIZE);
const digest = sha256(program);
const etag = `"${digest}"`;
const plain = `/v1/artifacts/${digest}`;
// koa-router decodes the parameter; the fast path matches only the literal digest.
const viaKoa = [`/v1/artifacts/%${digest.charCodeAt(0).toString(16)}${digest.slice(1)}`, `${plain}?via=koa`];
const HEADERS = ['etag', 'accept-ranges', 'repr-digest', 'cache-control', 'content-range', 'content-type', 'content-length'];

const cases: Array<[string, string, Record<string, string>]> = [
  ['whole blob', 'GET', {}],
  ['HEAD', 'HEAD', {}],
  ['one range', 'GET', { Range: 'bytes=1000-66535' }],
  ['open-ended range', 'GET', { Range: 'bytes=299000-' }],
  ['suffix range', 'GET', { Range: 'bytes=-500' }],
  ['suffix longer than the blob', 'GET', { Range: 'bytes=-900000' }],
  ['range past the end, clamped', 'GET', { Range: 'bytes=299990-400000' }],
  ['HEAD with a range', 'HEAD', { Range: 'bytes=0-99' }],
  ['unsatisfiable range', 'GET', { Range: 'bytes=400000-400010' }],
  ['malformed range', 'GET', { Range: 'pages=1-2' }],
  ['several ranges', 'GET', { Range: 'bytes=0-9,100-109' }],
  ['If-Range with the ETag', 'GET', { Range: 'bytes=10-19', 'If-Range': etag }],
  ['If-Range with another ETag', 'GET', { Range: 'bytes=10-19', 'If-Range': '"other"' }],
  ['If-Range with a date', 'GET', { Range: 'bytes=10-19', 'If-Range': 'Wed, 21 Oct 2015 07:28:00 GMT' }],
  ['If-None-Match with the ETag', 'GET', { 'If-None-Match': etag }],
  ['If-None-Match weak', 'GET', { 'If-None-Match': `W/${etag}` }],
  ['If-None-Match *', 'GET', { 'If-None-Match': '*' }],
  ['If-None-Match in a list', 'GET', { 'If-None-Match': `"a", ${etag}` }],
  ['If-None-Match with another ETag', 'GET', { 'If-None-Match': '"other"' }],
  ['HEAD with If-None-Match', 'HEAD', { 'If-None-Match': etag }],
  ['If-None-Match and a range', 'GET', { 'If-None-Match': etag, Range: 'bytes=0-9' }],
];

async function answer(gw: TestGateway, pathname: string, method: string, headers: Record<string, string>) {
  const response = await gw.fetch(pathname, { method, headers });
  return {
    status: response.status,
    headers: Object.fromEntries(HEADERS.map((name) => [name, response.headers.get(name)])),
    body: Buffer.from(await response.arrayBuffer()),
  };
}

async function artifactAnswersCounted(gw: TestGateway): Promise<number> {
  const text = await (await gw.fetch('/metrics')).text();
  return [...text.matchAll(/^modelferry_artifact_responses_total\{[^}]*\} (\d+)$/gm)].reduce((sum, m) => sum + Number(m[1]), 0);
}

/** http_requests_total for the artifact route, summed over methods and statuses. */
async function artifactRequestsCounted(gw: TestGateway): Promise<Map<string, number>> {
  const text = await (await gw.fetch('/metrics')).text();
  const counted = new Map<string, number>();
  for (const [, method, status, value] of text.matchAll(/^modelferry_http_requests_total\{route="\/v1\/artifacts\/:sha256",method="(\w+)",status="(\d+)"\} (\d+)$/gm)) {
    counted.set(`${method} ${status}`, Number(value));
  }
  return counted;
}

async function parity(t: ExecutionContext, memoryCacheBytes: string): Promise<void> {
  const gw = await startGateway(t, { 'artifacts.memoryCacheBytes': memoryCacheBytes });
  await pushed(t, gw, 'parity', '1', program);
  let requests = 0;
  const expected = new Map<string, number>();
  for (const [name, method, headers] of cases) {
    const fast = await answer(gw, plain, method, headers);
    expected.set(`${method} ${fast.status}`, (expected.get(`${method} ${fast.status}`) ?? 0) + 1 + viaKoa.length);
    for (const other of viaKoa) {
      t.deepEqual(await answer(gw, other, method, headers), fast, `${name} via ${other.slice(-12)}`);
    }
    requests += 1 + viaKoa.length;
    if (fast.status === 200 && method === 'GET') t.true(fast.body.equals(program), name);
    if (fast.status === 206 && method === 'GET') {
      const [, start, end] = /^bytes (\d+)-(\d+)\/\d+$/.exec(fast.headers['content-range']!)!;
      t.true(fast.body.equals(program.subarray(Number(start), Number(end) + 1)), name);
    }
  }
  t.is(await artifactAnswersCounted(gw), requests, 'each answer is counted once, whichever path gave it');
  t.deepEqual(await artifactRequestsCounted(gw), expected, 'http_requests_total counts every answer under one route, whichever path gave it');
}

test('fast path and Koa route answer every artifact case identically, blobs streamed from disk (memoryCacheBytes 0)', (t) => parity(t, '0'));

test('fast path and Koa route answer every artifact case identically, blobs served from memory', (t) => parity(t, '1 MiB'));

test('the statuses are those the contract names: 200, 206, 304 and 416', async (t) => {
  const gw = await startGateway(t);
  await pushed(t, gw, 'parity', '1', program);
  const statuses = [];
  for (const [, method, headers] of cases) statuses.push((await answer(gw, plain, method, headers)).status);
  t.deepEqual([...new Set(statuses)].sort(), [200, 206, 304, 416]);
});
