import { X509Certificate } from 'node:crypto';
import { copyFile, readFile, rm, stat, writeFile } from 'node:fs/promises';
import path from 'node:path';
import { ConfigError } from '../../daemon/errors.ts';
import { loadConfig } from '../../daemon/config/load.ts';
import { gatewayCredentials, generatedFilesOf } from '../../daemon/tls/tls-credentials.ts';
import { tempDir } from '../helpers/harness.ts';
import { testNeeding } from '../helpers/requirements.ts';
import { opensslPair, opensslPinOfFile, sh } from './tls-helpers.ts';

// The key and certificate a gateway serves HTTPS with: made on first start, kept in the
// state folder, reused; or configured (tls.certFile, tls.keyFile). Checked with node's
// X509Certificate and with openssl, never with the code that made them.

const test = testNeeding('openssl');

const MADE_HERE = { enabled: true, port: 8443, certFile: null, keyFile: null };

test('the gateway makes a self-signed X.509 v3 certificate: ECDSA P-256, signed with SHA-256, CN its mDNS host name, valid 1970 to 9999', async (t) => {
  const dir = await tempDir(t);
  const credentials = gatewayCredentials(MADE_HERE, dir, 'pi-hall-b.local');
  const { certFile } = generatedFilesOf(dir);
  t.is(credentials.certFile, certFile);
  t.true(credentials.generated);

  const cert = new X509Certificate(await readFile(certFile));
  t.is(cert.subject, 'CN=pi-hall-b.local');
  t.is(cert.issuer, 'CN=pi-hall-b.local');
  t.true(cert.verify(cert.publicKey), 'signed by its own key');
  t.is(cert.publicKey.asymmetricKeyType, 'ec');
  t.is(cert.publicKey.asymmetricKeyDetails?.namedCurve, 'prime256v1');
  t.is(new Date(cert.validFrom).toISOString(), '1970-01-01T00:00:00.000Z');
  t.is(new Date(cert.validTo).toISOString(), '9999-12-31T23:59:59.000Z');
  t.false(cert.ca);
  t.is(cert.subjectAltName, 'DNS:pi-hall-b.local, DNS:localhost');

  const text = await sh('openssl x509 -in "$1" -noout -text', [certFile]);
  t.regex(text, /Version: 3 \(0x2\)/);
  t.regex(text, /Signature Algorithm: ecdsa-with-SHA256/);
  t.regex(text, /NIST CURVE: P-256/);
  t.regex(text, /Basic Constraints: critical\s+CA:FALSE/);
  t.regex(text, /Key Usage: critical\s+Digital Signature/);
  t.regex(text, /Extended Key Usage:\s+TLS Web Server Authentication/);
  t.is((await sh('openssl verify -CAfile "$1" "$1"', [certFile])).trim(), `${certFile}: OK`);
});

test('the pin is the sha256 of the certificate\'s DER SubjectPublicKeyInfo, as openssl computes it', async (t) => {
  const dir = await tempDir(t);
  const credentials = gatewayCredentials(MADE_HERE, dir, 'pi.local');
  t.regex(credentials.pin, /^[0-9a-f]{64}$/);
  t.is(credentials.pin, await opensslPinOfFile(credentials.certFile));
});

test('key and certificate are kept in paths.state/tls, mode 0600, and reused as they are on the next start', async (t) => {
  const dir = await tempDir(t);
  const first = gatewayCredentials(MADE_HERE, dir, 'pi.local');
  const { certFile, keyFile } = generatedFilesOf(dir);
  t.is(keyFile, path.join(dir, 'tls', 'key.pem'));
  for (const file of [certFile, keyFile]) t.is((await stat(file)).mode & 0o777, 0o600, file);
  t.is((await stat(path.dirname(keyFile))).mode & 0o777, 0o700);
  const certBefore = await readFile(certFile, 'utf8');

  const again = gatewayCredentials(MADE_HERE, dir, 'pi.local');
  t.is(again.cert, certBefore);
  t.is(again.key, first.key);
  t.is(await readFile(certFile, 'utf8'), certBefore, 'the file is not rewritten');
});

test('a new host name or a lost certificate gets a new certificate from the same key: the pin stays', async (t) => {
  const dir = await tempDir(t);
  const first = gatewayCredentials(MADE_HERE, dir, 'pi.local');
  const renamed = gatewayCredentials(MADE_HERE, dir, 'gateway-2.local');
  t.not(renamed.cert, first.cert);
  t.is(new X509Certificate(renamed.cert).subject, 'CN=gateway-2.local');
  t.is(renamed.pin, first.pin);

  await rm(generatedFilesOf(dir).certFile);
  const rebuilt = gatewayCredentials(MADE_HERE, dir, 'gateway-2.local');
  t.is(rebuilt.pin, first.pin);
  t.is(await opensslPinOfFile(rebuilt.certFile), first.pin);
});

test('a damaged key file is a ConfigError that says how to start over', async (t) => {
  const dir = await tempDir(t);
  gatewayCredentials(MADE_HERE, dir, 'pi.local');
  const { keyFile } = generatedFilesOf(dir);
  await writeFile(keyFile, 'not a key\n');
  const error = t.throws(() => gatewayCredentials(MADE_HERE, dir, 'pi.local'), { instanceOf: ConfigError });
  t.regex(error!.message, /key\.pem .*remove it and its cert\.pem to make a new one, then give devices the new pin.* is not an unencrypted PEM private key/);
});

test('a configured certificate and key are served as they are, with the pin of their key', async (t) => {
  const dir = await tempDir(t);
  const { certFile, keyFile } = await opensslPair(dir, 'site');
  const credentials = gatewayCredentials({ ...MADE_HERE, certFile, keyFile }, path.join(dir, 'state'), 'pi.local');
  t.false(credentials.generated);
  t.is(credentials.cert, await readFile(certFile, 'utf8'));
  t.is(credentials.key, await readFile(keyFile, 'utf8'));
  t.is(credentials.pin, await opensslPinOfFile(certFile));
  await t.throwsAsync(stat(path.join(dir, 'state', 'tls')), { code: 'ENOENT' }, 'nothing is made');
});

test('a configured key that is not the certificate\'s, or a file that cannot be read, is a ConfigError naming it', async (t) => {
  const dir = await tempDir(t);
  const a = await opensslPair(dir, 'a');
  const b = await opensslPair(dir, 'b');
  const mismatch = t.throws(() => gatewayCredentials({ ...MADE_HERE, certFile: a.certFile, keyFile: b.keyFile }, dir, 'pi.local'), { instanceOf: ConfigError });
  t.is(mismatch!.message, `config: ${b.keyFile} is not the private key of the certificate in ${a.certFile}: give the key the certificate was issued for`);

  const missing = path.join(dir, 'missing.crt');
  const unreadable = t.throws(() => gatewayCredentials({ ...MADE_HERE, certFile: missing, keyFile: a.keyFile }, dir, 'pi.local'), { instanceOf: ConfigError });
  t.is(unreadable!.message, `config: tls.certFile = ${missing}: the file does not exist: set tls.certFile to a PEM file this user may read`);

  await copyFile(a.keyFile, path.join(dir, 'key-as-cert.pem'));
  const notCert = t.throws(() => gatewayCredentials({ ...MADE_HERE, certFile: path.join(dir, 'key-as-cert.pem'), keyFile: a.keyFile }, dir, 'pi.local'), { instanceOf: ConfigError });
  t.regex(notCert!.message, /key-as-cert\.pem holds no PEM certificate/);
});

test('config: tls is off by default on port 8443, certFile and keyFile go together, and plain HTTP goes off only with TLS on', async (t) => {
  const dir = await tempDir(t);
  const load = (flags: Record<string, string>) => loadConfig({ env: {}, cwd: dir, flags: { 'paths.state': dir, 'paths.cache': dir, ...flags } });
  t.like(load({}).config, { tls: { enabled: false, port: 8443, certFile: null, keyFile: null }, http: { plain: true } });
  const half = t.throws(() => load({ 'tls.certFile': 'cert.pem' }), { instanceOf: ConfigError });
  t.regex(half!.message, /tls\.certFile = "cert\.pem" \(from flag --tls\.certFile\): certFile and keyFile go together/);
  const nowhere = t.throws(() => load({ 'http.plain': 'false' }), { instanceOf: ConfigError });
  t.regex(nowhere!.message, /http\.plain = false .*: plain HTTP can be switched off only when tls\.enabled is true/);
  const samePort = t.throws(() => load({ 'tls.enabled': 'true', 'tls.port': '8080' }), { instanceOf: ConfigError });
  t.regex(samePort!.message, /tls\.port = 8080 .*: must differ from http\.port \(8080\)/);
  t.like(load({ 'http.plain': 'false', 'tls.enabled': 'true' }).config, { http: { plain: false }, tls: { enabled: true } });
});

test('config: certFile and keyFile in a config file are relative to that file', async (t) => {
  const dir = await tempDir(t);
  const file = path.join(dir, 'gateway.yaml');
  await writeFile(file, 'tls:\n  enabled: true\n  certFile: tls/cert.pem\n  keyFile: tls/key.pem\n');
  const { config } = loadConfig({ file, env: {}, cwd: '/', flags: { 'paths.state': dir, 'paths.cache': dir } });
  t.is(config.tls.certFile, path.join(dir, 'tls', 'cert.pem'));
  t.is(config.tls.keyFile, path.join(dir, 'tls', 'key.pem'));
});

test('the shipped example turns TLS on, with the certificate the gateway makes', async (t) => {
  const dir = await tempDir(t);
  const { config } = loadConfig({ file: path.join(import.meta.dirname, '..', '..', 'config', 'example.yaml'), env: {}, flags: { 'paths.state': dir, 'paths.cache': dir } });
  t.deepEqual(config.tls, { enabled: true, port: 8443, certFile: null, keyFile: null });
  t.true(config.http.plain);
});
