import test from 'ava';
import { assignHttp, startDaemon, type RunningDaemon } from '../helpers/daemon-process.ts';
import { Teardowns, until } from '../helpers/harness.ts';
import { fixture, makeProgram, sha256 } from '../helpers/programs.ts';
import { connect, requestFrom, within } from '../helpers/raw-client.ts';
import { ADMIN_TOKEN, ALL_TOKEN } from '../helpers/tokens.ts';

// docs/limits.md, docs/design.md "Limits": every limit against a real
// daemon process, with small values so that each is reached quickly. Nothing here asserts
// a duration: each check waits for what must happen, bounded by a generous deadline.

const DEADLINE_MS = 20_000;

async function put(daemon: RunningDaemon, name: string, version: string, body: Buffer): Promise<void> {
  const response = await daemon.fetch(`/v1/models/${name}/${version}`, { method: 'PUT', body, token: ALL_TOKEN });
  await response.arrayBuffer();
  if (response.status >= 300) throw new Error(`push ${name}@${version}: ${response.status}`);
}

async function health(daemon: RunningDaemon): Promise<{ longPolls: number; devices: number }> {
  return await (await daemon.fetch('/healthz')).json() as { longPolls: number; devices: number };
}

// The timeout tests share one daemon with short timeouts (fewer processes starting at once
// on a busy machine); each test uses its own connections.
const shared = new Teardowns();
let timeouts: RunningDaemon;
// A model big enough to fill every socket buffer on the way, pushed by a daemon with the
// default timeouts first (on a busy machine a 40 MiB push could overrun the short ones).
const big = makeProgram(40 * 1024 * 1024);
test.before(async () => {
  const config = { artifacts: { maxBytes: '64 MiB' } };
  const seeding = await startDaemon(shared, { config });
  await put(seeding, 'big', '1', big);
  await seeding.stop();
  timeouts = await startDaemon(shared, { dir: seeding.dir, config: { ...config, http: { headersTimeoutSeconds: 1, requestTimeoutSeconds: 4, idleTimeoutSeconds: 3 } } });
});
test.after.always(() => shared.run());

test.serial('slow-loris: headers trickled a byte at a time are cut at http.headersTimeoutSeconds while /healthz keeps answering', async (t) => {
  const daemon = timeouts;
  // The witness: a request started with the loris whose headers are complete and whose body
  // trickles, so that only the request deadline (4 s) applies to it. Had that deadline and
  // not the headers' own (1 s) cut the loris, it would have cut the witness at the same check,
  // and the witness could not finish its request afterwards.
  const BODY = 1000;
  const witness = await connect(t, daemon.port);
  const loris = await connect(t, daemon.port);
  witness.write(`POST /v1/devices/02:00:00:00:00:02/report HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\nContent-Length: ${BODY}\r\n\r\n`);
  loris.write('GET /healthz HTTP/1.1\r\nHost: x\r\n');
  const header = 'X-Slow: ' + 'a'.repeat(200);
  let sent = 0;
  let witnessSent = 0;
  const trickle = setInterval(() => {
    if (sent < header.length) loris.write(header[sent++]!);
    witness.write(' ');
    witnessSent++;
  }, 100);
  t.teardown(() => clearInterval(trickle));
  t.is((await daemon.fetch('/healthz')).status, 200, 'others are served meanwhile');
  t.not(await within(loris.closed, DEADLINE_MS), 'timeout', 'the connection is closed');
  clearInterval(trickle);
  t.true(sent < header.length, 'before the trickled header was complete');
  t.is(loris.status, 408);
  // The rest of the witness's body at once: it is read to its end and answered (400: an
  // empty report), not cut with a 408.
  witness.write('{}'.padStart(BODY - witnessSent));
  t.is(await until('the witness answered', async () => witness.status, DEADLINE_MS), 400, witness.text);
  t.regex(witness.text, /"error":"invalid_body"/);
});

test.serial('a report that promises 100 bytes and sends 1 is cut by the idle timeout; a body trickled fast enough never to be idle is cut by the request timeout', async (t) => {
  const daemon = timeouts;
  const stalled = await connect(t, daemon.port);
  stalled.write('POST /v1/devices/02:00:00:00:00:01/report HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\nContent-Length: 100\r\n\r\n{');
  t.not(await within(stalled.closed, DEADLINE_MS), 'timeout');

  const trickled = await connect(t, daemon.port);
  trickled.write('POST /v1/devices/02:00:00:00:00:01/report HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\nContent-Length: 1000\r\n\r\n');
  let sent = 0;
  const trickle = setInterval(() => { if (sent < 1000) { trickled.write(' '); sent++; } }, 200);
  t.teardown(() => clearInterval(trickle));
  t.not(await within(trickled.closed, DEADLINE_MS), 'timeout');
  t.true(sent < 1000, 'cut before the body was complete');
  t.is((await daemon.fetch('/healthz')).status, 200);
});

test.serial('an endless chunked push without a token gets 401 and its connection is closed, instead of the body being read to its end', async (t) => {
  const daemon = timeouts;
  const pusher = await connect(t, daemon.port);
  pusher.write('PUT /v1/models/flood/1 HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n');
  const chunk = Buffer.concat([Buffer.from('10000\r\n'), Buffer.alloc(0x10000, 7), Buffer.from('\r\n')]);
  const limit = 4 * 1024 * 1024 * 1024;
  let written = 0;
  // Write as fast as the connection takes it, until it is closed or 4 GiB went through.
  while (!pusher.isClosed && written < limit) {
    if (!pusher.write(chunk)) {
      await Promise.race([new Promise((resolve) => pusher.socket.once('drain', resolve)), pusher.closed]);
    }
    written += chunk.length;
  }
  await within(pusher.closed, DEADLINE_MS);
  t.true(pusher.isClosed, 'the gateway closed the connection');
  t.true(written < limit, `closed after ${written} bytes`);
  t.is(pusher.status, 401);
  t.regex(pusher.text, /connection: close/i);
});

test.serial('a download the client stops reading is cut by the idle timeout, and a slow reader that keeps making progress is not', async (t) => {
  const daemon = timeouts;
  const program = big;
  const digest = sha256(program);

  const stalled = await connect(t, daemon.port);
  stalled.socket.pause();
  stalled.write(`GET /v1/artifacts/${digest} HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n`);
  // Three idle timeouts without reading a byte, then read what the gateway sent before it gave up.
  await new Promise((resolve) => setTimeout(resolve, 9000));
  stalled.socket.resume();
  await within(stalled.closed, DEADLINE_MS);
  t.true(stalled.isClosed);
  t.true(stalled.received.length < program.length, 'the body was not all sent');

  // A reader that pauses for a second now and then: slow, but never idle for the 3 s timeout.
  const slow = await connect(t, daemon.port);
  const part = 8 * 1024 * 1024;
  slow.write(`GET /v1/artifacts/${digest} HTTP/1.1\r\nHost: x\r\nRange: bytes=0-${part - 1}\r\nConnection: close\r\n\r\n`);
  const reader = setInterval(() => {
    slow.socket.pause();
    setTimeout(() => slow.socket.resume(), 1000);
  }, 1500);
  t.teardown(() => clearInterval(reader));
  await within(slow.closed, 60_000);
  const headerEnd = slow.received.indexOf('\r\n\r\n');
  t.is(sha256(slow.received.subarray(headerEnd + 4)), sha256(program.subarray(0, part)), 'the slow reader got every byte it asked for');
});

test.serial('connections are capped per address (429 rate_limited) and in total (503 busy), each with Retry-After, and free again once closed', async (t) => {
  const daemon = await startDaemon(t, { config: { http: { maxConnections: 6, maxConnectionsPerAddress: 4 } } });
  const held = await Promise.all([1, 2, 3, 4].map(() => connect(t, daemon.port)));
  const refused = await connect(t, daemon.port);
  await within(refused.closed, DEADLINE_MS);
  t.is(refused.status, 429);
  t.regex(refused.text, /retry-after: \d+/i);
  t.regex(refused.text, /"error":"rate_limited"/);

  held.push(await connect(t, daemon.port, '127.0.0.2'), await connect(t, daemon.port, '127.0.0.3'));
  const busy = await connect(t, daemon.port, '127.0.0.4');
  await within(busy.closed, DEADLINE_MS);
  t.is(busy.status, 503);
  t.regex(busy.text, /retry-after: \d+/i);
  t.regex(busy.text, /"error":"busy"/);

  for (const connection of held) connection.socket.destroy();
  await until('the caps to free up', async () => (await daemon.fetch('/healthz').catch(() => undefined))?.status === 200 || undefined, DEADLINE_MS);
  t.pass();
});

test.serial('long polls are bounded per address and in total: beyond, a poll is answered 304 at once; If-None-Match: * never holds; a long poll outlives the idle timeout while it waits', async (t) => {
  const daemon = await startDaemon(t, {
    config: {
      http: { idleTimeoutSeconds: 2 },
      devices: { maxLongPolls: 3, maxLongPollsPerAddress: 2, maxWaitSeconds: 600 },
    },
  });
  await put(daemon, 'kws', '1', fixture('add.pte'));
  await put(daemon, 'kws', '2', fixture('mul.pte'));
  await assignHttp(daemon, 'default', 'kws', '1');
  const url = (mac: string, wait: number) => `${daemon.url}/v1/devices/${mac}/model?wait=${wait}`;
  const first = await daemon.fetch('/v1/devices/02:00:00:00:00:01/model');
  const etag = first.headers.get('etag')!;
  const macEtag = async (mac: string) => (await daemon.fetch(`/v1/devices/${mac}/model`)).headers.get('etag')!;

  const aborter = new AbortController();
  t.teardown(() => aborter.abort());
  const hold = (mac: string, from: string, wait = 600) => macEtag(mac).then((tag) => requestFrom(url(mac, wait), { localAddress: from, headers: { 'If-None-Match': tag }, signal: aborter.signal }));
  const heldA1 = hold('02:00:00:00:00:01', '127.0.0.1');
  const heldA2 = hold('02:00:00:00:00:02', '127.0.0.1');
  await until('two long polls held', async () => (await health(daemon)).longPolls === 2 || undefined, DEADLINE_MS);

  const overAddress = await hold('02:00:00:00:00:03', '127.0.0.1');
  t.is(overAddress.status, 304, 'a third from the same address is answered at once');
  const heldB = hold('02:00:00:00:00:04', '127.0.0.2');
  await until('three long polls held', async () => (await health(daemon)).longPolls === 3 || undefined, DEADLINE_MS);
  const overTotal = await hold('02:00:00:00:00:05', '127.0.0.3');
  t.is(overTotal.status, 304, 'one over the total is answered at once');

  const wildcard = await requestFrom(url('02:00:00:00:00:06', 600), { localAddress: '127.0.0.4', headers: { 'If-None-Match': '*' } });
  t.is(wildcard.status, 304, 'If-None-Match: * is answered at once');
  t.is((await health(daemon)).longPolls, 3);

  // A short long poll outlives the 2 s idle timeout and ends as a long poll does.
  const short = await requestFrom(url('02:00:00:00:00:07', 5), { localAddress: '127.0.0.5', headers: { 'If-None-Match': await macEtag('02:00:00:00:00:07') } })
    .catch((error: Error) => ({ status: 0, headers: {}, body: error.message }));
  t.is(short.status, 304, 'held for its 5 s despite the idle timeout');

  await assignHttp(daemon, 'default', 'kws', '2');
  for (const released of await Promise.all([heldA1, heldA2, heldB])) {
    t.is(released.status, 200);
    t.is(JSON.parse(released.body).model.version, '2');
  }
  t.not(etag, (await daemon.fetch('/v1/devices/02:00:00:00:00:01/model')).headers.get('etag'));
});

test.serial('a change with thousands of long polls waiting releases them in slices: other requests are answered while the release is under way', async (t) => {
  const count = 2000;
  const daemon = await startDaemon(t, {
    config: {
      http: { maxConnections: count + 100, maxConnectionsPerAddress: count + 100 },
      devices: { maxLongPolls: count, maxLongPollsPerAddress: count, maxWaitSeconds: 600 },
    },
  });
  await put(daemon, 'kws', '1', fixture('add.pte'));
  await put(daemon, 'kws', '2', fixture('mul.pte'));
  await assignHttp(daemon, 'default', 'kws', '1');
  const mac = '02:00:00:00:00:01';
  const etag = (await daemon.fetch(`/v1/devices/${mac}/model`)).headers.get('etag')!;
  const aborter = new AbortController();
  t.teardown(() => aborter.abort());
  const polls = Array.from({ length: count }, () => requestFrom(`${daemon.url}/v1/devices/${mac}/model?wait=600`, { headers: { 'If-None-Match': etag }, signal: aborter.signal }));
  await until(`${count} long polls held`, async () => (await health(daemon)).longPolls === count || undefined, DEADLINE_MS);

  await assignHttp(daemon, 'default', 'kws', '2');
  const seen: number[] = [];
  for (let i = 0; i < 50; i++) {
    const waiting = (await health(daemon)).longPolls;
    seen.push(waiting);
    if (waiting === 0) break;
  }
  t.true(seen.some((waiting) => waiting > 0 && waiting < count), `health answered mid-release (waiting seen: ${seen.join(', ')})`);
  const answers = await Promise.all(polls);
  t.true(answers.every((answer) => answer.status === 200));
});

test.serial('device records: none for a MAC nothing names or resolves, new MACs rate-limited per address (429 with Retry-After), at most devices.maxKnown kept by evicting the least recently seen unnamed ones, and the inventory paged', async (t) => {
  const daemon = await startDaemon(t, { config: { devices: { maxKnown: 4, newPerAddressPerMinute: 3 } } });
  const poll = (mac: string, from = '127.0.0.1') => requestFrom(`${daemon.url}/v1/devices/${mac}/model`, { localAddress: from });
  const inventory = async (query = '') => await (await daemon.fetch(`/v1/devices${query}`, { token: ADMIN_TOKEN })).json() as { devices: Array<{ mac: string }>; next: string | null };

  t.is((await poll('02:00:00:00:01:01')).status, 404);
  t.is((await health(daemon)).devices, 0, 'no assignment resolves: no record');

  await put(daemon, 'kws', '1', fixture('add.pte'));
  await assignHttp(daemon, 'default', 'kws', '1');
  await assignHttp(daemon, '02:00:00:00:00:aa', 'kws', '1');
  for (const mac of ['02:00:00:00:00:aa', '02:00:00:00:01:01', '02:00:00:00:01:02']) t.is((await poll(mac)).status, 200);
  const limited = await poll('02:00:00:00:01:03');
  t.is(limited.status, 429);
  t.regex(String(limited.headers['retry-after']), /^\d+$/);
  t.is(JSON.parse(limited.body).error, 'rate_limited');
  t.is((await poll('02:00:00:00:01:01')).status, 200, 'a known device is never limited');

  // Another address may introduce its own; past maxKnown the least recently seen unnamed
  // record (01:02; 01:01 polled since) goes, and the assigned one stays.
  for (const mac of ['02:00:00:00:02:01', '02:00:00:00:02:02']) t.is((await poll(mac, '127.0.0.2')).status, 200);
  const macs = (await inventory()).devices.map((device) => device.mac);
  t.deepEqual(macs, ['02:00:00:00:00:aa', '02:00:00:00:01:01', '02:00:00:00:02:01', '02:00:00:00:02:02']);

  const first = await inventory('?limit=3');
  t.deepEqual(first.devices.map((device) => device.mac), macs.slice(0, 3));
  t.is(first.next, '02:00:00:00:02:01');
  const second = await inventory(`?limit=3&after=${first.next}`);
  t.deepEqual(second.devices.map((device) => device.mac), macs.slice(3));
  t.is(second.next, null);
  t.is((await daemon.fetch('/v1/devices?limit=0', { token: ADMIN_TOKEN })).status, 400);
  t.is((await daemon.fetch('/v1/devices?after=nope', { token: ADMIN_TOKEN })).status, 400);

  // The bound holds across a restart, and evicted records stay gone.
  t.deepEqual(await daemon.stop(), { code: 0, signal: null });
  const next = await startDaemon(t, { dir: daemon.dir, config: { devices: { maxKnown: 4, newPerAddressPerMinute: 3 } } });
  t.deepEqual((await (await next.fetch('/v1/devices', { token: ADMIN_TOKEN })).json() as { devices: Array<{ mac: string }> }).devices.map((device) => device.mac), macs);
});
