import { execFile } from 'node:child_process';
import { createHash } from 'node:crypto';
import { readFile, stat, writeFile } from 'node:fs/promises';
import path from 'node:path';
import { promisify } from 'node:util';
import test, { type ExecutionContext } from 'ava';
import { assign, expectError, expectUnauthorized, poll, pushed } from '../helpers/api.ts';
import { startGateway, type TestGateway } from '../helpers/gateway.ts';
import { tempDir, Teardowns } from '../helpers/harness.ts';
import { fixture, makeProgram, sha256 } from '../helpers/programs.ts';
import { testNeeding } from '../helpers/requirements.ts';

// GET|HEAD /v1/artifacts/{sha256} (docs/design.md "Artifact downloads") against a real gateway
// holding a multi-MiB program, over real HTTP; the last tests use the curl binary as the
// client.

const run = promisify(execFile);
const SIZE = 4 * 1024 * 1024 + 12_345; // not a multiple of the server's read size
const program = makeProgram(SIZE);
const digest = sha256(program);
const reprDigest = `sha-256=:${createHash('sha256').update(program).digest('base64')}:`;
const url = `/v1/artifacts/${digest}`;

// One gateway for the read-only tests. ava does not allow t.teardown() in hooks, so its
// teardown is collected here and run after all tests.
let gw: TestGateway;
const teardowns = new Teardowns();

test.before(async (t) => {
  gw = await startGateway(teardowns);
  await pushed(t, gw, 'big', '1', program);
});

test.after.always(() => teardowns.run());

async function get(pathname: string, headers: Record<string, string> = {}, method = 'GET') {
  const response = await gw.fetch(pathname, { method, headers });
  return { response, status: response.status, headers: response.headers, bytes: Buffer.from(await response.arrayBuffer()) };
}

function assertRepresentationHeaders(t: ExecutionContext, headers: Headers): void {
  t.is(headers.get('etag'), `"${digest}"`);
  t.is(headers.get('accept-ranges'), 'bytes');
  t.is(headers.get('repr-digest'), reprDigest);
  t.is(headers.get('cache-control'), 'public, max-age=31536000, immutable');
}

test('GET answers 200 application/octet-stream with the exact bytes, Content-Length, ETag "<sha256>", Accept-Ranges, Repr-Digest and immutable Cache-Control', async (t) => {
  const { status, headers, bytes } = await get(url);
  t.is(status, 200);
  t.is(headers.get('content-type'), 'application/octet-stream');
  t.is(headers.get('content-length'), String(SIZE));
  t.is(headers.get('content-range'), null);
  assertRepresentationHeaders(t, headers);
  t.is(bytes.length, SIZE);
  t.true(bytes.equals(program));
  t.is(sha256(bytes), digest);
});

test('Repr-Digest is RFC 9530 sha-256 of the representation, the same digest as the URL and the ETag', async (t) => {
  const { headers } = await get(url, {}, 'HEAD');
  const match = /^sha-256=:([A-Za-z0-9+/]+=*):$/.exec(headers.get('repr-digest') ?? '');
  t.truthy(match);
  t.is(Buffer.from(match![1]!, 'base64').toString('hex'), digest);
});

test('HEAD answers 200 with the same headers as GET and no body', async (t) => {
  const head = await get(url, {}, 'HEAD');
  const full = await get(url);
  t.is(head.status, 200);
  t.is(head.bytes.length, 0);
  for (const name of ['content-type', 'content-length', 'etag', 'accept-ranges', 'repr-digest', 'cache-control']) {
    t.is(head.headers.get(name), full.headers.get(name), name);
  }
  t.is(head.headers.get('content-length'), String(SIZE));
});

test('HEAD with a range answers 206 with Content-Range and the range length, and no body', async (t) => {
  const head = await get(url, { Range: 'bytes=100-199' }, 'HEAD');
  t.is(head.status, 206);
  t.is(head.headers.get('content-range'), `bytes 100-199/${SIZE}`);
  t.is(head.headers.get('content-length'), '100');
  t.is(head.bytes.length, 0);
});

const RANGES: Array<[range: string, start: number, end: number]> = [
  ['bytes=0-99', 0, 99],
  ['bytes=0-0', 0, 0],
  ['bytes=1048000-1049999', 1_048_000, 1_049_999], // across the server's 1 MiB read size
  ['bytes=3000000-', 3_000_000, SIZE - 1],
  [`bytes=${SIZE - 1}-`, SIZE - 1, SIZE - 1],
  ['bytes=-1000', SIZE - 1000, SIZE - 1],
  ['bytes=-1', SIZE - 1, SIZE - 1],
  [`bytes=-${SIZE + 10}`, 0, SIZE - 1], // a suffix longer than the artifact is all of it
  [`bytes=4000000-${SIZE + 100_000}`, 4_000_000, SIZE - 1], // a last position past the end is clamped
];

for (const [range, start, end] of RANGES) {
  test(`Range: ${range} answers 206 with Content-Range bytes ${start}-${end}/${SIZE} and exactly that slice`, async (t) => {
    const { status, headers, bytes } = await get(url, { Range: range });
    t.is(status, 206);
    t.is(headers.get('content-range'), `bytes ${start}-${end}/${SIZE}`);
    t.is(headers.get('content-length'), String(end - start + 1));
    assertRepresentationHeaders(t, headers);
    t.is(bytes.length, end - start + 1);
    t.true(bytes.equals(program.subarray(start, end + 1)));
  });
}

test('an unsatisfiable range answers 416 with Content-Range: bytes */<size> and a JSON error', async (t) => {
  for (const range of [`bytes=${SIZE}-`, `bytes=${SIZE + 10}-${SIZE + 20}`, 'bytes=-0']) {
    const response = await gw.fetch(url, { headers: { Range: range } });
    t.is(response.headers.get('content-range'), `bytes */${SIZE}`, range);
    await expectError(t, response, 416, 'range_not_satisfiable');
  }
});

test('If-Range with the ETag honours the range; with another ETag, a weak one or a date it answers 200 with the whole body', async (t) => {
  const honoured = await get(url, { Range: 'bytes=10-19', 'If-Range': `"${digest}"` });
  t.is(honoured.status, 206);
  t.is(honoured.headers.get('content-range'), `bytes 10-19/${SIZE}`);
  t.true(honoured.bytes.equals(program.subarray(10, 20)));

  const otherDigest = 'f'.repeat(64);
  for (const ifRange of [`"${otherDigest}"`, `W/"${digest}"`, new Date().toUTCString(), 'Thu, 01 Jan 1970 00:00:00 GMT']) {
    const full = await get(url, { Range: 'bytes=10-19', 'If-Range': ifRange });
    t.is(full.status, 200, ifRange);
    t.is(full.headers.get('content-range'), null);
    t.is(full.headers.get('content-length'), String(SIZE));
    t.true(full.bytes.equals(program), ifRange);
  }
});

test('several ranges are answered 200 with the whole body', async (t) => {
  for (const range of ['bytes=0-9,100-199', 'bytes=0-0,-1', 'bytes=10-20,1048576-1048600,-5']) {
    const { status, headers, bytes } = await get(url, { Range: range });
    t.is(status, 200, range);
    t.is(headers.get('content-range'), null);
    t.is(headers.get('content-length'), String(SIZE));
    t.true(bytes.equals(program), range);
  }
});

test('a Range header that is not a byte range is ignored: 200 with the whole body', async (t) => {
  for (const range of ['items=0-9', 'bytes=abc', 'bytes 0-9']) {
    const { status, bytes } = await get(url, { Range: range });
    t.is(status, 200, range);
    t.true(bytes.equals(program), range);
  }
});

test('If-None-Match with the ETag answers 304 with no body; with another ETag the whole body', async (t) => {
  for (const inm of [`"${digest}"`, `W/"${digest}"`, `"${'0'.repeat(64)}", "${digest}"`, '*']) {
    const { status, headers, bytes } = await get(url, { 'If-None-Match': inm });
    t.is(status, 304, inm);
    t.is(bytes.length, 0);
    t.is(headers.get('etag'), `"${digest}"`);
  }
  // Takes precedence over Range.
  t.is((await get(url, { 'If-None-Match': `"${digest}"`, Range: 'bytes=0-9' })).status, 304);
  const other = await get(url, { 'If-None-Match': `"${'0'.repeat(64)}"` });
  t.is(other.status, 200);
  t.true(other.bytes.equals(program));
});

test('an unknown digest is 404 artifact_not_found, for GET and HEAD', async (t) => {
  const unknown = sha256(Buffer.from('not stored here'));
  await expectError(t, await gw.fetch(`/v1/artifacts/${unknown}`), 404, 'artifact_not_found');
  const head = await get(`/v1/artifacts/${unknown}`, {}, 'HEAD');
  t.is(head.status, 404);
  t.is(head.bytes.length, 0);
});

test('a malformed digest is 400 invalid_digest', async (t) => {
  for (const bad of [digest.toUpperCase(), digest.slice(1), `${digest}0`, `${digest.slice(1)}g`, 'abc', `sha256:${digest}`]) {
    await expectError(t, await gw.fetch(`/v1/artifacts/${bad}`), 400, 'invalid_digest');
  }
});

test('a download resumed with Range (first part, then bytes=N- with If-Range) reassembles to the exact sha256', async (t) => {
  const cut = 1_234_567;
  const first = await get(url, { Range: `bytes=0-${cut - 1}` });
  t.is(first.status, 206);
  t.is(first.bytes.length, cut);
  const etag = first.headers.get('etag')!;
  const rest = await get(url, { Range: `bytes=${cut}-`, 'If-Range': etag });
  t.is(rest.status, 206);
  t.is(rest.headers.get('content-range'), `bytes ${cut}-${SIZE - 1}/${SIZE}`);
  const whole = Buffer.concat([first.bytes, rest.bytes]);
  t.is(whole.length, SIZE);
  t.is(sha256(whole), digest);
});

test('a download cut off mid-body by the client resumes from what arrived and reassembles to the exact sha256', async (t) => {
  // Read the body as a stream and hang up after about 1.5 MiB, as a device losing Wi-Fi would.
  const controller = new AbortController();
  const response = await gw.fetch(url, { signal: controller.signal });
  t.is(response.status, 200);
  const received: Buffer[] = [];
  let length = 0;
  const reader = response.body!.getReader();
  while (length < 1_500_000) {
    const { value, done } = await reader.read();
    if (done) break;
    received.push(Buffer.from(value));
    length += value.length;
  }
  controller.abort();
  await reader.cancel().catch(() => {});
  t.true(length >= 1_500_000 && length < SIZE);

  const rest = await get(url, { Range: `bytes=${length}-`, 'If-Range': `"${digest}"` });
  t.is(rest.status, 206);
  t.is(sha256(Buffer.concat([...received, rest.bytes])), digest);
  // And the gateway still serves everyone.
  t.is((await get(url, {}, 'HEAD')).status, 200);
});

test('the artifact named by a poll answer is served at its url with the size and sha256 of the answer', async (t) => {
  await assign(t, gw, 'default', { model: 'big', version: '1' });
  const answer = await poll(gw, 'aa:bb:cc:dd:ee:ff');
  t.is(answer.status, 200);
  const { status, bytes } = await get(answer.json.model.url);
  t.is(status, 200);
  t.is(bytes.length, answer.json.model.size);
  t.is(sha256(bytes), answer.json.model.sha256);
});

test('with devices.token an artifact needs it: 401 with WWW-Authenticate without, 200 with it', async (t) => {
  const token = 'device-token-0123456789';
  const guarded = await startGateway(t, { 'devices.token': token });
  const small = await pushed(t, guarded, 'add', '1', fixture('add.pte'));
  const response = await guarded.fetch(`/v1/artifacts/${small.sha256}`);
  await expectUnauthorized(t, response);
  const ok = await guarded.fetch(`/v1/artifacts/${small.sha256}`, { token });
  t.is(ok.status, 200);
  t.true(Buffer.from(await ok.arrayBuffer()).equals(fixture('add.pte')));
});

testNeeding('curl')('curl downloads a range with -r, then resumes with -C - to the exact sha256', async (t) => {
  const dir = await tempDir(t, 'modelferry-curl-');
  const file = path.join(dir, 'model.pte');
  const address = `${gw.url.replace('localhost', '127.0.0.1')}${url}`;
  t.regex(address, /^http:\/\/127\.0\.0\.1:\d+\//);
  const curl = (...args: string[]) => run('curl', ['--silent', '--show-error', '--noproxy', '*', '--fail', '--write-out', '%{http_code}', ...args], { encoding: 'utf8' });

  const first = await curl('-r', '0-999999', '-o', file, address);
  t.is(first.stdout, '206');
  t.is((await stat(file)).size, 1_000_000);
  t.true((await readFile(file)).equals(program.subarray(0, 1_000_000)));

  const resumed = await curl('-C', '-', '-o', file, address);
  t.is(resumed.stdout, '206');
  const bytes = await readFile(file);
  t.is(bytes.length, SIZE);
  t.is(sha256(bytes), digest);
});

testNeeding('curl')('curl resumes a truncated file with -C - and a plain curl download matches the Repr-Digest it was sent', async (t) => {
  const dir = await tempDir(t, 'modelferry-curl-');
  const address = `${gw.url}${url}`;
  t.regex(address, /^http:\/\/127\.0\.0\.1:\d+\//);
  const curl = (...args: string[]) => run('curl', ['--silent', '--show-error', '--noproxy', '*', '--fail', ...args], { encoding: 'utf8', maxBuffer: 1 << 20 });

  // A partial file as an interrupted download leaves it.
  const partial = path.join(dir, 'partial.pte');
  await writeFile(partial, program.subarray(0, 2_500_001));
  const resumed = await curl('--write-out', '%{http_code} %{size_download}', '-C', '-', '-o', partial, address);
  t.is(resumed.stdout, `206 ${SIZE - 2_500_001}`);
  t.is(sha256(await readFile(partial)), digest);

  // Whole download, headers dumped by curl.
  const whole = path.join(dir, 'whole.pte');
  const headers = path.join(dir, 'headers.txt');
  await curl('-D', headers, '-o', whole, address);
  const dumped = await readFile(headers, 'utf8');
  t.regex(dumped, /^HTTP\/1\.1 200 /);
  const repr = /^repr-digest: (.*)\r$/im.exec(dumped)?.[1];
  t.is(repr, reprDigest);
  t.is(repr, `sha-256=:${createHash('sha256').update(await readFile(whole)).digest('base64')}:`);
});
