import { once } from 'node:events';
import { readFile } from 'node:fs/promises';
import path from 'node:path';
import net from 'node:net';
import { connect, type TLSSocket } from 'node:tls';
import { assign, poll, pushed } from '../helpers/api.ts';
import { runCli } from '../helpers/daemon-process.ts';
import { startGateway, type TestGateway } from '../helpers/gateway.ts';
import { tempDir, until } from '../helpers/harness.ts';
import { fixture, ADD_SHA256 } from '../helpers/programs.ts';
import { testNeeding } from '../helpers/requirements.ts';
import { ADMIN_TOKEN, ALL_TOKEN } from '../helpers/tokens.ts';
import { curlPinned, opensslPinOfServer } from './tls-helpers.ts';

// HTTPS on tls.port (tls.enabled): the same API, fast paths, limits and connection caps as
// plain HTTP, with the certificate the gateway made, checked by its pin only, as a device
// checks it. curl and openssl are the clients: nothing here trusts the gateway's own code.

const test = testNeeding('curl', 'openssl');

const TLS_ON = { 'tls.enabled': 'true', 'tls.port': '0' };
const MAC = 'aa:bb:cc:dd:ee:01';

interface Health {
  tls: { port: number; fingerprint: string } | null;
}

async function healthOf(gw: TestGateway): Promise<Health> {
  return (await gw.fetch('/healthz')).json() as Promise<Health>;
}

function httpsUrl(gw: TestGateway, pathname: string): string {
  return `https://127.0.0.1:${gw.gateway.tlsAddress!.port}${pathname}`;
}

/** The status line, headers and body of a curl -i answer. */
function parseAnswer(stdout: string): { status: number; headers: Record<string, string>; body: string } {
  const end = stdout.indexOf('\r\n\r\n');
  const head = stdout.slice(0, end).split('\r\n');
  const headers: Record<string, string> = {};
  for (const line of head.slice(1)) {
    const colon = line.indexOf(':');
    headers[line.slice(0, colon).toLowerCase()] = line.slice(colon + 1).trim();
  }
  return { status: Number(head[0]!.split(' ')[1]), headers, body: stdout.slice(end + 4) };
}

test('GET /healthz gives the HTTPS port and the pin, on both ports; openssl reads the same pin off the wire', async (t) => {
  const gw = await startGateway(t, TLS_ON);
  const health = await healthOf(gw);
  t.is(health.tls?.port, gw.gateway.tlsAddress!.port);
  t.regex(health.tls!.fingerprint, /^[0-9a-f]{64}$/);
  t.is(await opensslPinOfServer(health.tls!.port), health.tls!.fingerprint);

  const overTls = await curlPinned(httpsUrl(gw, '/healthz'), health.tls!.fingerprint);
  t.is(overTls.code, 0, overTls.stderr);
  t.deepEqual((JSON.parse(overTls.stdout) as Health).tls, health.tls);
});

test('without tls.enabled /healthz says tls null', async (t) => {
  const gw = await startGateway(t);
  t.is((await healthOf(gw)).tls, null);
  t.is(gw.gateway.tlsAddress, null);
});

test('a client that pins the right key gets answers; with another pin it drops the connection before the request is sent, and nothing is stored', async (t) => {
  const gw = await startGateway(t, TLS_ON);
  const { fingerprint } = (await healthOf(gw)).tls!;
  const wrong = fingerprint.replace(/^./, (c) => (c === '0' ? '1' : '0'));
  const push = (pin: string) => curlPinned(httpsUrl(gw, '/v1/models/kws/1.0'), pin, [
    '-i', '-X', 'PUT', '-H', `Authorization: Bearer ${ALL_TOKEN}`, '-H', 'Content-Type: application/octet-stream',
    '--data-binary', `@${new URL('../fixtures/pte/add.pte', import.meta.url).pathname}`,
  ]);

  const refused = await push(wrong);
  t.is(refused.code, 90, `curl exit 90 is "SSL public key does not match pinned public key": ${refused.stderr}`);
  t.is(refused.stdout, '');
  t.is((await gw.fetch('/v1/models/kws/1.0', { token: ADMIN_TOKEN })).status, 404);

  const accepted = await push(fingerprint);
  t.is(accepted.code, 0, accepted.stderr);
  t.is(parseAnswer(accepted.stdout).status, 201);
  t.is((await gw.fetch('/v1/models/kws/1.0', { token: ADMIN_TOKEN })).status, 200);
});

test('devices get the same poll answer, ETag and artifact bytes (ranges too) over HTTPS as over plain HTTP', async (t) => {
  const gw = await startGateway(t, TLS_ON);
  const { fingerprint } = (await healthOf(gw)).tls!;
  await pushed(t, gw, 'kws', '1.0', fixture('add.pte'));
  await assign(t, gw, 'default', { model: 'kws', version: '1.0' });
  const plain = await poll(gw, MAC);

  const answer = await curlPinned(httpsUrl(gw, `/v1/devices/${MAC}/model`), fingerprint, ['-i']);
  const parsed = parseAnswer(answer.stdout);
  t.is(parsed.status, 200);
  t.is(parsed.headers.etag, plain.etag!);
  t.is(parsed.body, plain.bytes.toString('utf8'));

  const unchanged = parseAnswer((await curlPinned(httpsUrl(gw, `/v1/devices/${MAC}/model`), fingerprint, ['-i', '-H', `If-None-Match: ${plain.etag}`])).stdout);
  t.is(unchanged.status, 304);

  const whole = await curlPinned(httpsUrl(gw, `/v1/artifacts/${ADD_SHA256}`), fingerprint, ['-i']);
  const artifact = parseAnswer(whole.stdout);
  t.is(artifact.status, 200);
  t.is(artifact.headers['content-length'], '1072');
  const file = path.join(await tempDir(t), 'range');
  const range = await curlPinned(httpsUrl(gw, `/v1/artifacts/${ADD_SHA256}`), fingerprint, ['-r', '100-199', '-o', file]);
  t.is(range.code, 0, range.stderr);
  t.deepEqual(await readFile(file), fixture('add.pte').subarray(100, 200));
});

test('the connection caps count both ports together; a connection refused on the HTTPS port is told 429 after its handshake', async (t) => {
  const gw = await startGateway(t, { ...TLS_ON, 'http.maxConnectionsPerAddress': '2' });
  const { fingerprint, port } = (await healthOf(gw)).tls!;
  // One keep-alive connection on each port, each known to the gateway (answered, or through
  // its handshake) before the third is tried.
  const plain = net.connect(gw.gateway.address.port, '127.0.0.1');
  t.teardown(() => plain.destroy());
  plain.write('GET /healthz HTTP/1.1\r\nHost: gw\r\n\r\n');
  await once(plain, 'data');
  const secure: TLSSocket = connect({ host: '127.0.0.1', port, rejectUnauthorized: false });
  t.teardown(() => secure.destroy());
  await once(secure, 'secureConnect');

  const third = await curlPinned(httpsUrl(gw, '/healthz'), fingerprint, ['-i']);
  t.is(third.code, 0, third.stderr);
  const refused = parseAnswer(third.stdout);
  t.is(refused.status, 429);
  t.is(refused.headers['retry-after'], '5');
  t.like(JSON.parse(refused.body), { error: 'rate_limited' });

  plain.destroy();
  await until('a place freed on the plain port to be taken on the HTTPS port', async () => {
    const attempt = await curlPinned(httpsUrl(gw, '/healthz'), fingerprint, ['-i']);
    return attempt.code === 0 && parseAnswer(attempt.stdout).status === 200 ? true : undefined;
  });
  t.pass();
});

test('with http.plain false only HTTPS listens, and the gateway\'s address is the HTTPS one', async (t) => {
  const gw = await startGateway(t, { ...TLS_ON, 'http.plain': 'false' });
  const tls = gw.gateway.tlsAddress!;
  t.deepEqual(gw.gateway.address, tls);
  const fingerprint = await opensslPinOfServer(tls.port);
  const health = await curlPinned(httpsUrl(gw, '/healthz'), fingerprint);
  t.is(health.code, 0, health.stderr);
  t.like(JSON.parse(health.stdout), { status: 'ok', tls: { port: tls.port, fingerprint } });
  const plainAttempt = await curlPinned(`http://127.0.0.1:${tls.port}/healthz`, fingerprint, ['-i']);
  t.not(plainAttempt.code, 0, 'plain HTTP on the HTTPS port gets no HTTP answer');
});

test('stop closes idle HTTPS keep-alive connections and returns', async (t) => {
  const gw = await startGateway(t, TLS_ON);
  const secure = connect({ host: '127.0.0.1', port: gw.gateway.tlsAddress!.port, rejectUnauthorized: false });
  t.teardown(() => secure.destroy());
  await once(secure, 'secureConnect');
  secure.write('GET /healthz HTTP/1.1\r\nHost: gw\r\n\r\n');
  await once(secure, 'data');
  const closed = once(secure, 'close');
  await gw.stop();
  await closed;
  t.pass();
});

test('the CLI reaches HTTPS by name with the gateway\'s certificate in NODE_EXTRA_CA_CERTS, and without it says what to do', async (t) => {
  const gw = await startGateway(t, TLS_ON);
  const url = `https://localhost:${gw.gateway.tlsAddress!.port}`;
  const certFile = path.join(gw.config.paths.state, 'tls', 'cert.pem');
  const trusted = await runCli(['models', '--gateway', url, '--token', ADMIN_TOKEN], { env: { NODE_EXTRA_CA_CERTS: certFile } });
  t.is(trusted.code, 0, trusted.stderr);
  t.like(JSON.parse(trusted.stdout), { models: [] });
  const untrusted = await runCli(['models', '--gateway', url, '--token', ADMIN_TOKEN]);
  t.is(untrusted.code, 1);
  t.regex(untrusted.stderr, /cannot reach the gateway at https:\/\/localhost:\d+: its certificate is not trusted here: set NODE_EXTRA_CA_CERTS to a copy of the gateway's cert\.pem/);
});
