import { once } from 'node:events';
import { copyFile, writeFile } from 'node:fs/promises';
import path from 'node:path';
import { connect } from 'node:tls';
import YAML from 'yaml';
import { freePort, startDaemon, testConfig, type LogLine, type RunningDaemon } from '../helpers/daemon-process.ts';
import { tempDir, type HasTeardown } from '../helpers/harness.ts';
import { testNeeding } from '../helpers/requirements.ts';
import { curlPinned, opensslPair, opensslPinOfFile, opensslPinOfServer } from './tls-helpers.ts';

// A certificate renewed under the same file names (certbot, a site CA's cron job) or named
// anew in the config file is served from the next reload (SIGHUP, or the edit itself) to
// new connections; one that does not load is refused and the running one stays.

const test = testNeeding('curl', 'openssl');

interface Setup {
  daemon: RunningDaemon;
  tlsPort: number;
  certFile: string;
  keyFile: string;
  dir: string;
}

async function startWithOwnCertificate(t: HasTeardown): Promise<Setup> {
  const dir = await tempDir(t);
  const { certFile, keyFile } = await opensslPair(dir, 'served');
  const tlsPort = await freePort();
  const daemon = await startDaemon(t, { dir, config: { tls: { enabled: true, port: tlsPort, certFile, keyFile } } });
  return { daemon, tlsPort, certFile, keyFile, dir };
}

function logAfter(daemon: RunningDaemon, from: number, match: (line: LogLine) => boolean): Promise<LogLine> {
  return daemon.waitForLog((line) => Number(line.time) >= from && match(line));
}

async function healthPin(daemon: RunningDaemon): Promise<string> {
  const health = await (await daemon.fetch('/healthz')).json() as { tls: { fingerprint: string } };
  return health.tls.fingerprint;
}

test('a certificate and key renewed in place are served to new connections after SIGHUP; an open connection carries on', async (t) => {
  const { daemon, tlsPort, certFile, keyFile, dir } = await startWithOwnCertificate(t);
  const oldPin = await opensslPinOfFile(certFile);
  t.is(await healthPin(daemon), oldPin);
  t.is(await opensslPinOfServer(tlsPort), oldPin);
  const open = connect({ host: '127.0.0.1', port: tlsPort, rejectUnauthorized: false });
  t.teardown(() => open.destroy());
  await once(open, 'secureConnect');

  const renewed = await opensslPair(dir, 'renewed');
  await copyFile(renewed.keyFile, keyFile);
  await copyFile(renewed.certFile, certFile);
  const newPin = await opensslPinOfFile(certFile);
  const from = Date.now();
  daemon.child.kill('SIGHUP');
  const line = await logAfter(daemon, from, (l) => typeof l.msg === 'string' && l.msg.startsWith('TLS certificate reloaded'));
  t.is(line.level, 40, 'another key: a warning, devices need the new pin');
  t.like(line, { pin: newPin, previousPin: oldPin, certFile });

  t.is(await opensslPinOfServer(tlsPort), newPin);
  t.is(await healthPin(daemon), newPin);
  t.is((await curlPinned(`https://127.0.0.1:${tlsPort}/healthz`, newPin)).code, 0);
  t.is((await curlPinned(`https://127.0.0.1:${tlsPort}/healthz`, oldPin)).code, 90);
  open.write('GET /healthz HTTP/1.1\r\nHost: gw\r\n\r\n');
  const [answer] = await once(open, 'data') as [Buffer];
  t.regex(answer.toString(), /^HTTP\/1\.1 200 OK/);
});

test('a config edit naming another certificate and key takes effect; a key that is not the certificate\'s is refused and the running one stays', async (t) => {
  const { daemon, tlsPort, certFile, keyFile, dir } = await startWithOwnCertificate(t);
  const runningPin = await opensslPinOfFile(certFile);
  const rewrite = (pair: { certFile: string; keyFile: string }) => writeFile(daemon.configFile, YAML.stringify(
    testConfig(dir, daemon.port, { tls: { enabled: true, port: tlsPort, ...pair } })));

  const other = await opensslPair(dir, 'other');
  let from = Date.now();
  await rewrite({ certFile: other.certFile, keyFile: keyFile });
  const refused = await logAfter(daemon, from, (l) => l.msg?.startsWith('configuration change refused') === true);
  t.regex(String(refused.reason), new RegExp(`${path.basename(keyFile)} is not the private key of the certificate in .*${path.basename(other.certFile)}`));
  t.is(await opensslPinOfServer(tlsPort), runningPin);

  from = Date.now();
  await rewrite(other);
  const reloaded = await logAfter(daemon, from, (l) => l.msg?.startsWith('configuration reloaded') === true);
  t.deepEqual(reloaded.keys, ['tls.certFile', 'tls.keyFile']);
  const otherPin = await opensslPinOfFile(other.certFile);
  t.is(await opensslPinOfServer(tlsPort), otherPin);
  t.is(await healthPin(daemon), otherPin);
});

test('SIGHUP with certificate files that no longer load logs why, and the running certificate stays', async (t) => {
  const { daemon, tlsPort, certFile } = await startWithOwnCertificate(t);
  const runningPin = await opensslPinOfFile(certFile);
  await writeFile(certFile, 'half-written\n');
  const from = Date.now();
  daemon.child.kill('SIGHUP');
  const line = await logAfter(daemon, from, (l) => l.msg?.startsWith('the TLS certificate was not reloaded') === true);
  t.is(line.level, 50);
  t.regex(String(line.reason), /holds no PEM certificate/);
  t.is(await opensslPinOfServer(tlsPort), runningPin);
  t.is(await healthPin(daemon), runningPin);
});
