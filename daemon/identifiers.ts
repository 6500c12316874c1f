import { fail } from './errors.ts';

// Canonical forms of the identifiers in the wire contract (DESIGN.md section 1). Every value
// that enters from a URL, a header or a body passes through one of these before it is used.

const MAC_INPUT = /^[0-9a-f]{2}([:-]?)[0-9a-f]{2}(?:\1[0-9a-f]{2}){4}$/i;
const DIGEST = /^[0-9a-f]{64}$/;
const MODEL_NAME = /^[a-z0-9][a-z0-9._-]{0,63}$/;
const VERSION = /^[A-Za-z0-9][A-Za-z0-9._+-]{0,63}$/;

export const LATEST = 'latest';

/** Shown in messages so that a person can correct the value without reading the docs. */
function shown(value: string): string {
  return JSON.stringify(value.length > 80 ? `${value.slice(0, 80)}…` : value);
}

export function parseMac(input: string): string {
  if (!MAC_INPUT.test(input)) {
    fail('invalid_mac', `${shown(input)} is not a MAC address; expected six hex pairs such as aa:bb:cc:dd:ee:ff`);
  }
  const hex = input.replace(/[:-]/g, '').toLowerCase();
  return hex.match(/../g)!.join(':');
}

export function isDigest(input: string): boolean {
  return DIGEST.test(input);
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
