import { createHash, createPrivateKey, generateKeyPairSync, X509Certificate, type KeyObject } from 'node:crypto';
import { closeSync, fsyncSync, mkdirSync, openSync, readFileSync, renameSync, rmSync, writeSync } from 'node:fs';
import path from 'node:path';
import { ConfigError } from '../errors.ts';
import type { Config } from '../config/schema.ts';
import { describeFsError, errnoOf } from '../fs-errors.ts';
import { selfSignedCertificate } from './self-signed-certificate.ts';

/** What the HTTPS listener serves, and the pin a device or client checks it by. */
export interface TlsCredentials {
  /** PEM: the certificate (a configured file may add its chain after it). */
  cert: string;
  /** PEM: its private key. */
  key: string;
  /** 64 hex: the sha256 of the certificate's DER SubjectPublicKeyInfo. */
  pin: string;
  certFile: string;
  keyFile: string;
  /** True for the key and certificate the gateway made itself (no tls.certFile). */
  generated: boolean;
}

/** Where a gateway without tls.certFile keeps the key and certificate it made. */
export function generatedFilesOf(stateDir: string): { certFile: string; keyFile: string } {
  const dir = path.join(stateDir, 'tls');
  return { certFile: path.join(dir, 'cert.pem'), keyFile: path.join(dir, 'key.pem') };
}

/** The pin of a certificate: sha256 of its public key as DER SubjectPublicKeyInfo, hex. */
export function pinOf(certificate: X509Certificate): string {
  return createHash('sha256').update(certificate.publicKey.export({ type: 'spki', format: 'der' })).digest('hex');
}

/**
 * The configured certificate and key, or the ones the gateway made in its state folder
 * (made now when there are none). The pin belongs to the key: a certificate made again
 * from the same key (the host name changed, the file was lost) keeps it, so only a new key
 * means devices need a new pin. Synchronous: it runs at start and in a config reload.
 */
export function gatewayCredentials(tls: Config['tls'], stateDir: string, hostName: string): TlsCredentials {
  if (tls.certFile !== null && tls.keyFile !== null) return configuredCredentials(tls.certFile, tls.keyFile);
  const { certFile, keyFile } = generatedFilesOf(stateDir);
  mkdirSync(path.dirname(keyFile), { recursive: true, mode: 0o700 });
  let keyPem = readIfPresent(keyFile, 'the generated TLS key');
  if (keyPem === undefined) {
    keyPem = generateKeyPairSync('ec', { namedCurve: 'P-256' }).privateKey.export({ type: 'pkcs8', format: 'pem' }).toString();
    writeSecretFile(keyFile, keyPem);
  }
  const key = privateKeyOf(keyPem, `${keyFile} (the key the gateway made; remove it and its cert.pem to make a new one, then give devices the new pin)`);
  const certPem = readIfPresent(certFile, 'the generated TLS certificate');
  const existing = certPem === undefined ? undefined : parseCertificate(certPem);
  if (certPem !== undefined && existing && existing.checkPrivateKey(key) && existing.subject === `CN=${hostName}`) {
    return { cert: certPem, key: keyPem, pin: pinOf(existing), certFile, keyFile, generated: true };
  }
  let made: string;
  try {
    made = selfSignedCertificate(key, { commonName: hostName, dnsNames: [hostName, 'localhost'] });
  } catch (error) {
    throw new ConfigError(`${keyFile}: ${(error as Error).message} (the gateway makes P-256 keys; remove the file to make a new one, then give devices the new pin)`);
  }
  writeSecretFile(certFile, made);
  return { cert: made, key: keyPem, pin: pinOf(new X509Certificate(made)), certFile, keyFile, generated: true };
}

/**
 * What `gatewayCredentials` would serve, read without making anything (doctor runs as
 * another user and must not leave files the service cannot read): undefined when the
 * gateway has not made its own yet.
 */
export function existingCredentials(tls: Config['tls'], stateDir: string): TlsCredentials | undefined {
  if (tls.certFile !== null && tls.keyFile !== null) return configuredCredentials(tls.certFile, tls.keyFile);
  const { certFile, keyFile } = generatedFilesOf(stateDir);
  const certPem = readIfPresent(certFile, 'the generated TLS certificate');
  const keyPem = readIfPresent(keyFile, 'the generated TLS key');
  if (certPem === undefined || keyPem === undefined) return undefined;
  return { ...matchingPair(certPem, keyPem, certFile, keyFile), generated: true };
}

function configuredCredentials(certFile: string, keyFile: string): TlsCredentials {
  const read = (file: string, key: string) => {
    try {
      return readFileSync(file, 'utf8');
    } catch (error) {
      throw new ConfigError(`config: ${key} = ${file}: ${describeFsError(error, 'the file', `set ${key} to a PEM file this user may read`)}`);
    }
  };
  return { ...matchingPair(read(certFile, 'tls.certFile'), read(keyFile, 'tls.keyFile'), certFile, keyFile), generated: false };
}

function matchingPair(certPem: string, keyPem: string, certFile: string, keyFile: string): Omit<TlsCredentials, 'generated'> {
  const certificate = parseCertificate(certPem);
  if (!certificate) throw new ConfigError(`config: ${certFile} holds no PEM certificate (-----BEGIN CERTIFICATE-----)`);
  const key = privateKeyOf(keyPem, keyFile);
  if (!certificate.checkPrivateKey(key)) {
    throw new ConfigError(`config: ${keyFile} is not the private key of the certificate in ${certFile}: give the key the certificate was issued for`);
  }
  return { cert: certPem, key: keyPem, pin: pinOf(certificate), certFile, keyFile };
}

function parseCertificate(pem: string): X509Certificate | undefined {
  try {
    return new X509Certificate(pem);
  } catch {
    return undefined;
  }
}

function privateKeyOf(pem: string, what: string): KeyObject {
  try {
    return createPrivateKey(pem);
  } catch {
    throw new ConfigError(`config: ${what} is not an unencrypted PEM private key`);
  }
}

function readIfPresent(file: string, what: string): string | undefined {
  try {
    return readFileSync(file, 'utf8');
  } catch (error) {
    if (errnoOf(error) === 'ENOENT') return undefined;
    throw new ConfigError(`config: ${describeFsError(error, `${what} ${file}`)}`);
  }
}

/** Mode 0600, written whole and fsynced under a temporary name, then renamed into place. */
function writeSecretFile(file: string, text: string): void {
  const temp = `${file}.${process.pid}.tmp`;
  try {
    rmSync(temp, { force: true });
    const fd = openSync(temp, 'wx', 0o600);
    try {
      writeSync(fd, text);
      fsyncSync(fd);
    } finally {
      closeSync(fd);
    }
    renameSync(temp, file);
    const dir = openSync(path.dirname(file), 'r');
    try {
      fsyncSync(dir);
    } finally {
      closeSync(dir);
    }
  } catch (error) {
    rmSync(temp, { force: true });
    throw new ConfigError(`config: ${describeFsError(error, `${file} (under paths.state)`)}`);
  }
}
