import { isKeyId, isSignatureSeq } from '../contract/identifiers.ts';
import { ConfigError, fail } from '../errors.ts';
import { parsePublicKey, verifyModel, type PublicKey, type SignedFields } from './signature.ts';

/** The `trust` settings, as the config names them. */
export interface TrustSettings {
  keys: ReadonlyArray<{ id?: string; publicKey: string }>;
  requireSignatures: boolean;
}

export interface SignatureClaim {
  signature: string | null;
  keyId: string | null;
  /** The sequence of a v2 signature (X-Signature-Seq); null or absent: v1. */
  seq?: string | null;
}

/**
 * The gateway's side of signatures: with trust keys it verifies every signature it is
 * given, with `requireSignatures` it refuses unsigned models, and either way it passes
 * signatures through to devices, which verify again against keys in their firmware.
 */
export class TrustPolicy {
  #keys = new Map<string, PublicKey>();
  #requireSignatures: boolean;

  constructor(config: TrustSettings) {
    config.keys.forEach((entry, index) => {
      let key: PublicKey;
      try {
        key = parsePublicKey(entry.publicKey);
      } catch (error) {
        throw new ConfigError(`config: trust.keys.${index}.publicKey: ${(error as Error).message}`);
      }
      if (entry.id !== undefined && entry.id !== key.keyId) {
        throw new ConfigError(`config: trust.keys.${index}.id = "${entry.id}" does not match its public key, whose key id is ${key.keyId}`);
      }
      this.#keys.set(key.keyId, key);
    });
    if (config.requireSignatures && this.#keys.size === 0) {
      throw new ConfigError('config: trust.requireSignatures = true needs at least one key in trust.keys');
    }
    this.#requireSignatures = config.requireSignatures;
  }

  /** Takes the keys and rule of a policy built from a reloaded config (already validated). */
  adopt(next: TrustPolicy): void {
    this.#keys = next.#keys;
    this.#requireSignatures = next.#requireSignatures;
  }

  get keyIds(): string[] {
    return [...this.#keys.keys()];
  }

  /** Checks what can be checked before the body arrives, so a doomed push fails fast. */
  precheck(claim: SignatureClaim): void {
    const seq = claim.seq ?? null;
    if (claim.signature === null) {
      if (claim.keyId !== null) fail('invalid_signature', 'X-Signature-Key-Id was sent without X-Signature');
      if (seq !== null) fail('invalid_signature', 'X-Signature-Seq was sent without X-Signature: a sequence is part of a signature (modelferry-v2)');
      if (this.#requireSignatures) fail('signature_required', 'this gateway requires signed models (trust.requireSignatures); send X-Signature and X-Signature-Key-Id');
      return;
    }
    const bytes = Buffer.from(claim.signature, 'base64');
    if (bytes.length !== 64 || bytes.toString('base64') !== claim.signature) {
      fail('invalid_signature', 'the signature must be base64 of a 64-byte ed25519 signature');
    }
    if (claim.keyId === null || !isKeyId(claim.keyId)) {
      fail('invalid_signature', 'a signature needs its key id: 16 lower-case hex characters in X-Signature-Key-Id');
    }
    if (seq !== null && !isSignatureSeq(seq)) {
      fail('invalid_signature', `X-Signature-Seq ${JSON.stringify(seq.slice(0, 40))} is not a sequence: a decimal number from 0 to 18446744073709551615, without sign or leading zeros`);
    }
    if (this.#keys.size > 0 && !this.#keys.has(claim.keyId)) {
      fail('unknown_key', `key id ${claim.keyId} is not among this gateway's trusted keys (trust.keys)`);
    }
  }

  /**
   * Verifies the signature over the received bytes' digest and size, and the sequence it
   * claims (a v2 signature verifies only with the sequence it was made over; a v1 one only
   * without any).
   */
  check(fields: Omit<SignedFields, 'seq'>, claim: SignatureClaim): void {
    this.precheck(claim);
    if (claim.signature === null || claim.keyId === null) return;
    const key = this.#keys.get(claim.keyId);
    if (!key) return;
    const seq = claim.seq ?? null;
    if (!verifyModel(key.key, { ...fields, seq }, Buffer.from(claim.signature, 'base64'))) {
      const over = seq === null ? 'as a v1 signature (no X-Signature-Seq)' : `with sequence ${seq} (X-Signature-Seq)`;
      fail('invalid_signature', `the signature does not verify for ${fields.name}@${fields.version} (sha256 ${fields.sha256}, ${fields.size} bytes) ${over} with key ${claim.keyId}`);
    }
  }
}
