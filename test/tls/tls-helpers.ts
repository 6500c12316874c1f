import { execFile } from 'node:child_process';
import path from 'node:path';
import { promisify } from 'node:util';

// The pin of a certificate as openssl computes it, and certificates made by openssl: the
// gateway's own code is checked against these, never against itself.

const run = promisify(execFile);

/** Runs a shell pipeline; stdout. */
export async function sh(script: string, args: string[] = []): Promise<string> {
  const { stdout } = await run('sh', ['-c', script, 'sh', ...args], { encoding: 'utf8', maxBuffer: 16 * 1024 * 1024 });
  return stdout;
}

/** sha256 of the DER SubjectPublicKeyInfo of the certificate in a PEM file: the documented pipeline. */
export async function opensslPinOfFile(certFile: string): Promise<string> {
  const out = await sh('openssl x509 -in "$1" -pubkey -noout | openssl pkey -pubin -outform DER | sha256sum', [certFile]);
  return out.split(' ')[0]!;
}

/** The same pin of the certificate a server presents on `port`, read by openssl s_client. */
export async function opensslPinOfServer(port: number): Promise<string> {
  const out = await sh('openssl s_client -connect "127.0.0.1:$1" </dev/null 2>/dev/null | openssl x509 -pubkey -noout | openssl pkey -pubin -outform DER | sha256sum', [String(port)]);
  return out.split(' ')[0]!;
}

/** curl's --pinnedpubkey form of a hex pin: sha256//<base64>. */
export function curlPin(hex: string): string {
  return `sha256//${Buffer.from(hex, 'hex').toString('base64')}`;
}

/** A self-signed certificate and key made by openssl (as a person with their own CA would bring): file paths. */
export async function opensslPair(dir: string, name: string, curve = 'P-256'): Promise<{ certFile: string; keyFile: string }> {
  const certFile = path.join(dir, `${name}.crt`);
  const keyFile = path.join(dir, `${name}.key`);
  await sh(`openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:${curve} -nodes -keyout "$1" -out "$2" -subj "/CN=${name}" -days 30 2>/dev/null`, [keyFile, certFile]);
  return { certFile, keyFile };
}

/** curl over HTTPS, the certificate checked by its pin only (as a device does). */
export async function curlPinned(url: string, pin: string, extra: string[] = []): Promise<{ code: number; stdout: string; stderr: string }> {
  try {
    const { stdout, stderr } = await run('curl', ['-sS', '-k', '--max-time', '20', '--pinnedpubkey', curlPin(pin), ...extra, url], { encoding: 'utf8' });
    return { code: 0, stdout, stderr };
  } catch (error) {
    const e = error as { code: number; stdout: string; stderr: string };
    return { code: e.code, stdout: e.stdout, stderr: e.stderr };
  }
}
