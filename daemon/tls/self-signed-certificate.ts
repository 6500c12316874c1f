import { createPublicKey, randomBytes, sign, type KeyObject } from 'node:crypto';
import {
  bitString, boolean, explicit, implicit, objectIdentifier, octetString, sequence, set, smallInteger, time, unsignedInteger, utf8String,
} from './der.ts';

const ECDSA_WITH_SHA256 = '1.2.840.10045.4.3.2';
const COMMON_NAME = '2.5.4.3';
const BASIC_CONSTRAINTS = '2.5.29.19';
const KEY_USAGE = '2.5.29.15';
const EXTENDED_KEY_USAGE = '2.5.29.37';
const SUBJECT_ALT_NAME = '2.5.29.17';
const SERVER_AUTH = '1.3.6.1.5.5.7.3.1';

/**
 * Devices have no reliable clock (an ESP32 without SNTP believes it is 1970), and they trust
 * the gateway by its pinned public key, not by dates: the certificate is valid from the epoch
 * and has no well-defined expiry (RFC 5280 section 4.1.2.5: 99991231235959Z).
 */
const NOT_BEFORE = new Date(Date.UTC(1970, 0, 1));
const NOT_AFTER = new Date(Date.UTC(9999, 11, 31, 23, 59, 59));

export interface CertificateSubject {
  /** The subject's (and issuer's) common name: the gateway's mDNS host name. */
  commonName: string;
  /** Host names the certificate is for (subjectAltName dNSName). */
  dnsNames: string[];
}

/**
 * A self-signed X.509 v3 certificate (PEM) for an ECDSA P-256 key, signed with SHA-256:
 * what mbedTLS on an ESP32 handles well. A server certificate, not a CA.
 */
export function selfSignedCertificate(privateKey: KeyObject, subject: CertificateSubject): string {
  if (privateKey.asymmetricKeyType !== 'ec' || privateKey.asymmetricKeyDetails?.namedCurve !== 'prime256v1') {
    throw new Error('the certificate key must be an ECDSA P-256 key');
  }
  const algorithm = sequence(objectIdentifier(ECDSA_WITH_SHA256));
  const name = sequence(set(sequence(objectIdentifier(COMMON_NAME), utf8String(subject.commonName))));
  // A positive serial of at most 20 bytes that is not zero (RFC 5280 section 4.1.2.2).
  const serial = randomBytes(16);
  serial[0] = (serial[0]! & 0x7f) | 0x01;
  const extension = (oid: string, critical: boolean, value: Buffer) =>
    sequence(objectIdentifier(oid), ...(critical ? [boolean(true)] : []), octetString(value));
  const tbs = sequence(
    explicit(0, smallInteger(2)),
    unsignedInteger(serial),
    algorithm,
    name,
    sequence(time(NOT_BEFORE), time(NOT_AFTER)),
    name,
    createPublicKey(privateKey).export({ type: 'spki', format: 'der' }),
    explicit(3, sequence(
      extension(BASIC_CONSTRAINTS, true, sequence()),
      // digitalSignature (bit 0): ECDHE key exchange signs with the certificate's key.
      extension(KEY_USAGE, true, bitString(Buffer.from([0x80]), 7)),
      extension(EXTENDED_KEY_USAGE, false, sequence(objectIdentifier(SERVER_AUTH))),
      extension(SUBJECT_ALT_NAME, false, sequence(...subject.dnsNames.map((dns) => implicit(2, Buffer.from(dns, 'ascii'))))),
    )),
  );
  const signature = sign('sha256', tbs, { key: privateKey, dsaEncoding: 'der' });
  const der = sequence(tbs, algorithm, bitString(signature));
  return `-----BEGIN CERTIFICATE-----\n${der.toString('base64').match(/.{1,64}/g)!.join('\n')}\n-----END CERTIFICATE-----\n`;
}
