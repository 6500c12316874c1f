import { existsSync } from 'node:fs';
import { writeFile } from 'node:fs/promises';
import net from 'node:net';
import path from 'node:path';
import YAML from 'yaml';
import { freePort, spawnModelferry, testConfig } from '../helpers/daemon-process.ts';
import { tempDir } from '../helpers/harness.ts';
import { testNeeding } from '../helpers/requirements.ts';
import { opensslPair } from './tls-helpers.ts';

// `modelferry serve` with tls.enabled: what cannot work is refused before anything opens,
// naming the TLS setting at fault.

const test = testNeeding('openssl');

test('a TLS port in use stops serve with exit 1 naming tls.port; a key that is not the certificate\'s, with exit 78 and nothing opened', async (t) => {
  const dir = await tempDir(t);
  const taken = net.createServer();
  await new Promise<void>((resolve) => taken.listen(0, '127.0.0.1', () => resolve()));
  t.teardown(() => taken.close());
  const tlsPort = (taken.address() as net.AddressInfo).port;
  const busyFile = path.join(dir, 'busy.yaml');
  await writeFile(busyFile, YAML.stringify(testConfig(dir, await freePort(), { tls: { enabled: true, port: tlsPort } })));
  const busy = spawnModelferry(t, ['serve', '--config', busyFile]);

  const a = await opensslPair(dir, 'a');
  const b = await opensslPair(dir, 'b');
  const mismatchDir = path.join(dir, 'mismatch');
  const mismatchFile = path.join(dir, 'mismatch.yaml');
  await writeFile(mismatchFile, YAML.stringify(testConfig(mismatchDir, await freePort(), { tls: { enabled: true, port: await freePort(), certFile: a.certFile, keyFile: b.keyFile } })));
  const mismatch = spawnModelferry(t, ['serve', '--config', mismatchFile]);

  t.deepEqual(await busy.exited, { code: 1, signal: null });
  t.regex(busy.stderr, new RegExp(`tls\\.port = ${tlsPort} \\(from ${busyFile}\\) on http\\.host = 127\\.0\\.0\\.1 .*: the port is in use by another process \\(another modelferry\\?\\): stop it, or choose another port with --set tls\\.port=PORT or tls\\.port`));

  t.deepEqual(await mismatch.exited, { code: 78, signal: null });
  t.regex(mismatch.stderr, new RegExp(`${b.keyFile} is not the private key of the certificate in ${a.certFile}`));
  t.false(existsSync(path.join(mismatchDir, 'state', 'CURRENT')), 'no database was opened');
});
