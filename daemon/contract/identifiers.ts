import { z } from 'zod';
import { fail } from '../errors.ts';

// Canonical forms of the identifiers in the wire contract (docs/design.md "Identifiers"). Every value
// that enters from a URL, a header, a body or the config passes through one of these before
// it is used: the patterns below are the only copy of each rule. The parse functions throw
// the catalogue's 400 codes (for routes); the zod schemas carry the same patterns into
// body, report, manifest and config schemas.

const MAC_INPUT = /^[0-9a-f]{2}([:-]?)[0-9a-f]{2}(?:\1[0-9a-f]{2}){4}$/i;
const MAC_CANONICAL = /^[0-9a-f]{2}(?::[0-9a-f]{2}){5}$/;
const DIGEST = /^[0-9a-f]{64}$/;
const MODEL_NAME = /^[a-z0-9][a-z0-9._-]{0,63}$/;
const VERSION = /^[A-Za-z0-9][A-Za-z0-9._+-]{0,63}$/;
const KEY_ID = /^[0-9a-f]{16}$/;
/** Decimal, no sign, no leading zero; at most 20 digits (the range is checked apart). */
const SIGNATURE_SEQ = /^(0|[1-9][0-9]{0,19})$/;
const MAX_SIGNATURE_SEQ = 2n ** 64n - 1n;

export const LATEST = 'latest';

/** A sha256 as the contract writes it: 64 lower-case hex characters. */
export const digestSchema = z.string().regex(DIGEST, 'must be 64 lower-case hex characters');
/** A model (or group) name. */
export const modelNameSchema = z.string().regex(MODEL_NAME, 'must be a model name');
/** The version pattern alone; `latest` passes (a report or a reference may carry it). */
export const versionTextSchema = z.string().regex(VERSION, 'must be a version');
/** A concrete version: one that can name a stored artifact. */
export const versionSchema = versionTextSchema.refine((value) => value !== LATEST, '"latest" is reserved and cannot name a stored version');
/** An ed25519 key id: the first 16 hex characters of the sha256 of the raw public key. */
export const keyIdSchema = z.string().regex(KEY_ID, 'must be 16 lower-case hex characters');
/**
 * The sequence a v2 signature covers: an unsigned 64-bit number in decimal, carried as a
 * string everywhere (JSON numbers lose integers past 2^53). Devices refuse a model whose
 * sequence is below one they already accepted for the same name.
 */
export const signatureSeqSchema = z.string().refine(isSignatureSeq, 'must be a decimal number from 0 to 18446744073709551615, without sign or leading zeros');
/** A MAC as the gateway answers with it (lower case, colons). */
export const canonicalMacSchema = z.string().regex(MAC_CANONICAL, 'must be a MAC address in the form aa:bb:cc:dd:ee:ff');

export type Digest = z.infer<typeof digestSchema>;
export type KeyId = z.infer<typeof keyIdSchema>;

/** Shown in messages so that a person can correct the value without reading the docs. */
function shown(value: string): string {
  return JSON.stringify(value.length > 80 ? `${value.slice(0, 80)}…` : value);
}

export function isMac(input: string): boolean {
  return MAC_INPUT.test(input);
}

export function parseMac(input: string): string {
  // Devices send the canonical form they were answered with: no rewriting needed.
  if (MAC_CANONICAL.test(input)) return input;
  if (!MAC_INPUT.test(input)) {
    fail('invalid_mac', `${shown(input)} is not a MAC address; expected six hex pairs such as aa:bb:cc:dd:ee:ff`);
  }
  const hex = input.replace(/[:-]/g, '').toLowerCase();
  return hex.match(/../g)!.join(':');
}

export function isDigest(input: string): boolean {
  return DIGEST.test(input);
}

export function isKeyId(input: string): boolean {
  return KEY_ID.test(input);
}

export function isSignatureSeq(input: string): boolean {
  return SIGNATURE_SEQ.test(input) && BigInt(input) <= MAX_SIGNATURE_SEQ;
}

/** Orders two sequences (canonical decimals) as numbers; null (a v1 signature, or none) counts as 0. */
export function compareSignatureSeq(a: string | null | undefined, b: string | null | undefined): number {
  const x = BigInt(a ?? 0);
  const y = BigInt(b ?? 0);
  return x < y ? -1 : x > y ? 1 : 0;
}

export function parseDigest(input: string): string {
  if (!DIGEST.test(input)) {
    fail('invalid_digest', `${shown(input)} is not a sha256 digest; expected 64 lower-case hex characters`);
  }
  return input;
}

export function parseModelName(input: string): string {
  if (!MODEL_NAME.test(input)) {
    fail('invalid_name', `${shown(input)} is not a model name; expected [a-z0-9][a-z0-9._-], at most 64 characters`);
  }
  return input;
}

/** A concrete version: `latest` is refused because it cannot name a stored artifact. */
export function parseVersion(input: string): string {
  if (!VERSION.test(input) || input === LATEST) {
    const why = input === LATEST ? '"latest" is reserved and cannot name a stored version' : 'expected [A-Za-z0-9][A-Za-z0-9._+-], at most 64 characters';
    fail('invalid_version', `${shown(input)} is not a version; ${why}`);
  }
  return input;
}

/** A version or `latest`, as an assignment may name it. */
export function parseVersionRef(input: string): string {
  return input === LATEST ? LATEST : parseVersion(input);
}

export type Selector =
  | { kind: 'device'; mac: string }
  | { kind: 'group'; group: string }
  | { kind: 'default' };

export function parseGroupName(input: string): string {
  if (!MODEL_NAME.test(input)) {
    fail('invalid_name', `${shown(input)} is not a group name; expected [a-z0-9][a-z0-9._-], at most 64 characters`);
  }
  return input;
}

export function parseSelector(input: string): Selector {
  if (input === 'default') return { kind: 'default' };
  if (input.startsWith('group:')) {
    const group = input.slice('group:'.length);
    if (!MODEL_NAME.test(group)) {
      fail('invalid_selector', `${shown(input)} names no valid group; expected group:<name> with [a-z0-9][a-z0-9._-]`);
    }
    return { kind: 'group', group };
  }
  if (MAC_INPUT.test(input)) return { kind: 'device', mac: parseMac(input) };
  fail('invalid_selector', `${shown(input)} is not a selector; expected a MAC address, group:<name> or default`);
}

/** A selector in canonical text form: what assignments are keyed by and manifests carry. */
export const selectorSchema = z.string().refine(
  (value) => value === 'default' || (value.startsWith('group:') && MODEL_NAME.test(value.slice('group:'.length))) || MAC_CANONICAL.test(value),
  'must be a canonical MAC address, group:<name> or default',
);

export function selectorKey(selector: Selector): string {
  switch (selector.kind) {
    case 'device':
      return selector.mac;
    case 'group':
      return `group:${selector.group}`;
    case 'default':
      return 'default';
  }
}
