import { chmod, chown, mkdir, writeFile } from 'node:fs/promises';
import http from 'node:http';
import net from 'node:net';
import path from 'node:path';
import test from 'ava';
import YAML from 'yaml';
import {
  checkClock, checkConfigAccess, checkDisk, checkMdns, checkNode, checkPort, checkTls, checkUpstream, checkWritable,
} from '../../daemon/doctor/checks.ts';
import { freePort, runCli, startDaemon, testConfig } from '../helpers/daemon-process.ts';
import { startGateway } from '../helpers/gateway.ts';
import { tempDir, type HasTeardown } from '../helpers/harness.ts';

// `modelferry doctor`: each check finds what is wrong and says what to do; the command's
// exit status says whether anything is.

/** A loopback server: HTTP with `handler`, else one that accepts and never answers. */
async function listen(t: HasTeardown, handler?: http.RequestListener): Promise<number> {
  const server = handler ? http.createServer(handler) : net.createServer();
  const sockets = new Set<net.Socket>();
  server.on('connection', (socket: net.Socket) => sockets.add(socket));
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', () => resolve()));
  t.teardown(() => new Promise<void>((resolve) => {
    server.close(() => resolve());
    for (const socket of sockets) socket.destroy();
  }));
  return (server.address() as net.AddressInfo).port;
}

test('Node: too old fails, 20 warns, 22 is fine', (t) => {
  t.like(checkNode('18.19.0'), { verdict: 'fail', message: 'Node.js 18.19.0 is too old: modelferry needs 20.19 or later' });
  t.like(checkNode('20.18.3'), { verdict: 'fail' });
  t.like(checkNode('20.19.0'), { verdict: 'warn' });
  t.like(checkNode('22.11.0'), { verdict: 'ok' });
});

test('clock: a Pi that never got the time fails, an unsynchronized one warns', (t) => {
  const unset = checkClock(new Date('1970-01-01T00:00:42Z'));
  t.is(unset.verdict, 'fail');
  t.regex(unset.fix!, /timedatectl/);
  t.like(checkClock(new Date('2026-11-26T10:00:00Z'), false), { verdict: 'warn' });
  t.like(checkClock(new Date('2026-11-26T10:00:00Z'), true), { verdict: 'ok' });
});

test('config access: under install.sh\'s set-group-id folder the service\'s group must read the file; elsewhere tokens readable by all warn', async (t) => {
  const dir = await tempDir(t);
  const etc = path.join(dir, 'etc-modelferry');
  await mkdir(etc);
  await chmod(etc, 0o2750);
  const file = path.join(etc, 'config.yaml');
  await writeFile(file, 'auth: {}\n');
  await chmod(file, 0o640);
  t.like(await checkConfigAccess(file, true), { verdict: 'ok' });
  // What an editor that saves a new file as root's alone leaves behind.
  await chmod(file, 0o600);
  const locked = await checkConfigAccess(file, true);
  t.is(locked.verdict, 'fail');
  t.regex(locked.message, /mode 0600\) is not readable by the group .* of its folder, which the service runs in/);
  t.regex(locked.fix!, /^chgrp .* && chmod 0640 /);
  if (process.getuid?.() === 0) {
    // Another group, even with group read: the service is not in it.
    await chmod(file, 0o640);
    await chown(file, 0, 65534);
    t.like(await checkConfigAccess(file, true), { verdict: 'fail' });
  }

  const own = path.join(dir, 'own');
  await mkdir(own);
  await chmod(dir, 0o755);
  await chmod(own, 0o755);
  const mine = path.join(own, 'config.yaml');
  await writeFile(mine, 'auth: {}\n');
  await chmod(mine, 0o644);
  t.like(await checkConfigAccess(mine, true), { verdict: 'warn', fix: `chmod o-rwx ${mine}` });
  t.like(await checkConfigAccess(mine, false), { verdict: 'ok' });
  await chmod(mine, 0o600);
  t.like(await checkConfigAccess(mine, true), { verdict: 'ok' });
});

test('folders: writable, to be created, under a file, on a read-only file system', async (t) => {
  const dir = await tempDir(t);
  t.like(await checkWritable('state', dir), { verdict: 'ok', message: `${dir} is writable` });
  t.like(await checkWritable('state', path.join(dir, 'a', 'b')), { verdict: 'ok' });
  await writeFile(path.join(dir, 'file'), '');
  t.like(await checkWritable('cache', path.join(dir, 'file', 'cache')), { verdict: 'fail', message: `${path.join(dir, 'file')} is not a folder` });
  const readOnly = await checkWritable('state', '/proc/modelferry/state');
  t.is(readOnly.verdict, 'fail');
  t.regex(readOnly.message, /is not writable/);
});

test('disk: less free than a model needs fails, enough is fine', async (t) => {
  const dir = await tempDir(t);
  const [full] = await checkDisk({ state: dir }, Number.MAX_SAFE_INTEGER);
  t.is(full!.verdict, 'fail');
  t.regex(full!.fix!, /modelferry delete/);
  const [fine] = await checkDisk({ state: dir, cache: path.join(dir, 'not-yet') }, 1);
  t.not(fine!.verdict, 'fail');
  t.is((await checkDisk({ state: dir, cache: path.join(dir, 'not-yet') }, 1)).length, 1, 'one file system, one line');
});

test('port: free, held by another program, held by a running gateway', async (t) => {
  const busy = await listen(t);
  t.like(await checkPort('127.0.0.1', busy), { verdict: 'fail', message: `127.0.0.1:${busy} is in use by another program` });
  const gw = await startGateway(t);
  const port = Number(new URL(gw.url).port);
  const running = await checkPort('127.0.0.1', port);
  t.is(running.verdict, 'ok');
  t.regex(running.message, /taken by a running modelferry gateway \(id [0-9a-f]{16}\)/);
  t.like(await checkPort('192.0.2.250', 8080), { verdict: 'fail', message: '192.0.2.250 is not an address of this machine' });
});

test('tls: off, on but not made yet, a configured certificate that does not load', async (t) => {
  const dir = await tempDir(t);
  const tls = { enabled: true, port: 8443, certFile: null, keyFile: null };
  const http = { plain: true, port: 8080 };
  t.like(checkTls({ tls: { ...tls, enabled: false }, http, paths: { state: dir } }), { verdict: 'ok', message: 'off (tls.enabled: false): devices and clients use plain HTTP' });
  t.like(checkTls({ tls, http, paths: { state: dir } }), {
    verdict: 'warn',
    message: `HTTPS on port 8443, plain HTTP on 8080 too; the gateway makes its key and certificate at its first start (${path.join(dir, 'tls', 'cert.pem')})`,
    fix: 'start the gateway once, then run doctor again for the pin',
  });
  await writeFile(path.join(dir, 'cert.pem'), 'not a certificate\n');
  await writeFile(path.join(dir, 'key.pem'), 'not a key either\n');
  t.like(checkTls({ tls: { ...tls, certFile: path.join(dir, 'cert.pem'), keyFile: path.join(dir, 'key.pem') }, http: { ...http, plain: false }, paths: { state: dir } }), {
    verdict: 'fail', message: `${path.join(dir, 'cert.pem')} holds no PEM certificate (-----BEGIN CERTIFICATE-----)`,
  });
});

test('modelferry doctor beside a gateway serving HTTPS finds it on its TLS port and prints the pin /healthz gives, on a line of its own', async (t) => {
  const tlsPort = await freePort();
  const daemon = await startDaemon(t, { config: { tls: { enabled: true, port: tlsPort } } });
  const { tls } = await (await daemon.fetch('/healthz')).json() as { tls: { port: number; fingerprint: string } };
  const result = await runCli(['doctor', '--config', daemon.configFile]);
  t.regex(result.stdout, new RegExp(`^ok    tls port +127\\.0\\.0\\.1:${tlsPort} is taken by a running modelferry gateway`, 'm'));
  t.regex(result.stdout, new RegExp(`^ok    tls +HTTPS on port ${tlsPort}, plain HTTP on ${daemon.port} too with the certificate it made \\(${daemon.state}/tls/cert\\.pem\\)$`, 'm'));
  t.regex(result.stdout, /^ +pin, the sha256 of its public key \(a device's Kconfig, the simulator's --pin-gateway\):$/m);
  t.regex(result.stdout, new RegExp(`^ +${tls.fingerprint}$`, 'm'));
});

test('mDNS: off, no LAN interface, an interface and the port', async (t) => {
  const mdns = { enabled: true, name: '', priority: 10 };
  t.like(await checkMdns({ ...mdns, enabled: false }), { verdict: 'ok' });
  const loopback = { lo: [{ address: '127.0.0.1', netmask: '255.0.0.0', family: 'IPv4' as const, mac: '00:00:00:00:00:00', internal: true, cidr: '127.0.0.1/8' }] };
  t.like(await checkMdns(mdns, loopback, 0), { verdict: 'fail' });
  const lan = { ...loopback, eth0: [{ address: '192.168.1.20', netmask: '255.255.255.0', family: 'IPv4' as const, mac: '02:00:00:00:00:01', internal: false, cidr: '192.168.1.20/24' }] };
  t.like(await checkMdns(mdns, lan, 0), { verdict: 'ok', message: 'advertised on eth0 192.168.1.20 (UDP 0 available)' });
});

test('upstream: none, answering, refusing the token, unreachable', async (t) => {
  t.like(await checkUpstream(null, null), { verdict: 'ok' });
  const store = await listen(t, (req, res) => {
    res.statusCode = req.headers.authorization === 'Bearer right-token-0123456789' ? 200 : 401;
    res.end('{}');
  });
  t.like(await checkUpstream(`http://127.0.0.1:${store}/manifest.json`, 'right-token-0123456789'), { verdict: 'ok', message: `http://127.0.0.1:${store}/manifest.json answers` });
  const refused = await checkUpstream(`http://127.0.0.1:${store}/manifest.json?sig=secret`, 'wrong-token-0123456789');
  t.like(refused, { verdict: 'fail', fix: 'check upstream.token' });
  t.false(refused.message.includes('secret'), 'a query (where tokens hide) is never printed');
  const closed = await listen(t);
  const unreachable = await checkUpstream(`http://127.0.0.1:${closed}/manifest.json`, null, 2000);
  t.is(unreachable.verdict, 'fail');
});

test('modelferry doctor exits 0 when nothing is wrong and 1 naming each problem with what to do', async (t) => {
  const dir = await tempDir(t);
  const good = path.join(dir, 'good.yaml');
  const port = await listen(t);
  // The test config with mDNS off; the port is given on the command line.
  await writeFile(good, YAML.stringify(testConfig(dir, 0)));
  const fine = await runCli(['doctor', '--config', good, '--port', '0']);
  t.is(fine.code, 0, fine.stdout + fine.stderr);
  for (const check of ['node', 'config', 'clock', 'state', 'cache', 'disk', 'port', 'tls', 'mdns', 'upstream']) t.regex(fine.stdout, new RegExp(`^(ok  |WARN)  ${check} `, 'm'));

  await writeFile(path.join(dir, 'file'), '');
  const bad = await runCli(['doctor', '--config', good, '--port', String(port), '--host', '127.0.0.1', '--state-dir', path.join(dir, 'file', 'state')]);
  t.is(bad.code, 1);
  t.regex(bad.stdout, new RegExp(`^FAIL  port +127\\.0\\.0\\.1:${port} is in use by another program\\n +→ find it with: ss -ltnp`, 'm'));
  t.regex(bad.stdout, /^FAIL  state .* is not a folder/m);
  t.regex(bad.stdout, /^2 problems, \d warnings?$/m);

  const broken = path.join(dir, 'broken.yaml');
  await writeFile(broken, 'http:\n  port: 99999\n');
  const invalid = await runCli(['doctor', '--config', broken]);
  t.is(invalid.code, 1);
  t.regex(invalid.stdout, /^FAIL  config +config is invalid:\n +http\.port = 99999/m);
});
