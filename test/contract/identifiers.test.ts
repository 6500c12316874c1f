import test, { type ExecutionContext } from 'ava';
import { ModelferryError, type ErrorCode } from '../../daemon/errors.ts';
import {
  LATEST, isDigest, parseDigest, parseGroupName, parseMac, parseModelName, parseSelector, parseVersion, parseVersionRef, selectorKey,
} from '../../daemon/contract/identifiers.ts';

// docs/design.md "Identifiers": canonical forms, and what is accepted on input.

function refusedAs(t: ExecutionContext, code: ErrorCode, run: () => unknown, label: string): void {
  const error = t.throws(run, { instanceOf: ModelferryError }, label);
  t.is(error?.code, code, label);
  t.is(error?.status, 400, label);
}

const DIGEST = 'c9608ddefe472e0ebd8d4a900dc0957d893381c928dd1c648a439a6e88470b18';

test('a MAC with colons, dashes or no separator, in any case, is canonicalised to lower-case colon form', (t) => {
  for (const input of [
    'aa:bb:cc:dd:ee:ff', 'AA:BB:CC:DD:EE:FF', 'Aa:bB:cc:DD:ee:Ff',
    'aa-bb-cc-dd-ee-ff', 'AA-BB-CC-DD-EE-FF',
    'aabbccddeeff', 'AABBCCDDEEFF', 'AaBbCcDdEeFf',
  ]) {
    t.is(parseMac(input), 'aa:bb:cc:dd:ee:ff', input);
  }
  t.is(parseMac('00-1A-2b-3C-4d-5E'), '00:1a:2b:3c:4d:5e');
  t.is(parseMac('0123456789ab'), '01:23:45:67:89:ab');
});

test('a MAC with mixed separators is refused as invalid_mac', (t) => {
  for (const input of ['aa:bb-cc:dd:ee:ff', 'aa-bb-cc-dd-ee:ff', 'aabb:cc:dd:ee:ff', 'aa:bbccddeeff', 'aa.bb.cc.dd.ee.ff', 'aa bb cc dd ee ff', 'aa::bb:cc:dd:ee']) {
    refusedAs(t, 'invalid_mac', () => parseMac(input), input);
  }
});

test('a MAC of the wrong length is refused as invalid_mac', (t) => {
  for (const input of ['', 'aa:bb:cc:dd:ee', 'aa:bb:cc:dd:ee:ff:00', 'aabbccddeef', 'aabbccddeeff0', 'a:bb:cc:dd:ee:ff', 'aaa:bb:cc:dd:ee:ff', 'aa:bb:cc:dd:ee:f']) {
    refusedAs(t, 'invalid_mac', () => parseMac(input), input);
  }
});

test('a MAC with non-hex characters or surrounding text is refused as invalid_mac', (t) => {
  for (const input of ['gg:bb:cc:dd:ee:ff', 'aa:bb:cc:dd:ee:fz', ' aa:bb:cc:dd:ee:ff', 'aa:bb:cc:dd:ee:ff ', 'aa:bb:cc:dd:ee:ff\n', 'aa:bb:cc:dd:ee:ff/..', '0x:bb:cc:dd:ee:ff']) {
    refusedAs(t, 'invalid_mac', () => parseMac(input), JSON.stringify(input));
  }
});

test('the invalid_mac message shows the value and the expected form', (t) => {
  const error = t.throws(() => parseMac('nope'), { instanceOf: ModelferryError });
  t.is(error?.message, '"nope" is not a MAC address; expected six hex pairs such as aa:bb:cc:dd:ee:ff');
});

test('a digest is exactly 64 lower-case hex characters; anything else is invalid_digest', (t) => {
  t.is(parseDigest(DIGEST), DIGEST);
  t.true(isDigest(DIGEST));
  for (const input of ['', DIGEST.toUpperCase(), DIGEST.slice(1), `${DIGEST}0`, `${DIGEST.slice(0, 63)}g`, `sha256:${DIGEST}`, ` ${DIGEST}`, `${DIGEST}\n`, `../${DIGEST.slice(3)}`]) {
    t.false(isDigest(input), JSON.stringify(input));
    refusedAs(t, 'invalid_digest', () => parseDigest(input), JSON.stringify(input));
  }
});

test('a model name is [a-z0-9][a-z0-9._-] up to 64 characters', (t) => {
  for (const input of ['kws', '0', 'kws-v2.small_int8', 'a'.repeat(64), 'a..b']) t.is(parseModelName(input), input, input);
});

test('a model name with upper case, a leading dot or dash, path tricks, NUL or 65 characters is invalid_name', (t) => {
  for (const input of ['', 'KWS', 'Kws', '.kws', '-kws', '_kws', '..', '.', 'a/b', '../etc', 'a%2fb', 'a\\b', 'a\0b', 'a b', 'kws@1', 'a'.repeat(65), 'kws\n']) {
    refusedAs(t, 'invalid_name', () => parseModelName(input), JSON.stringify(input));
  }
});

test('a version is [A-Za-z0-9][A-Za-z0-9._+-] up to 64 characters', (t) => {
  for (const input of ['1', '2026.11.24-3', 'v1.2.3+build.7', 'RC_1', 'Latest', 'latest2', 'x'.repeat(64)]) t.is(parseVersion(input), input, input);
});

test('latest is reserved and cannot name a stored version', (t) => {
  const error = t.throws(() => parseVersion('latest'), { instanceOf: ModelferryError });
  t.is(error?.code, 'invalid_version');
  t.regex(error?.message ?? '', /"latest" is reserved/);
});

test('a version with path tricks (.., /, %2f, NUL), a leading symbol or 65 characters is invalid_version', (t) => {
  for (const input of ['', '..', '.', '.1', '-1', '+1', '_1', '1/2', '../1', '1%2f2', '%2e%2e', '1\0', '1\\2', '1 2', '1:2', 'x'.repeat(65)]) {
    refusedAs(t, 'invalid_version', () => parseVersion(input), JSON.stringify(input));
  }
});

test('a version reference is a version or latest', (t) => {
  t.is(parseVersionRef('latest'), LATEST);
  t.is(parseVersionRef('1.0'), '1.0');
  refusedAs(t, 'invalid_version', () => parseVersionRef('../1'), '../1');
});

test('a group name follows the model name rule', (t) => {
  t.is(parseGroupName('lab-1'), 'lab-1');
  for (const input of ['Lab', '..', 'a/b', 'a'.repeat(65), '']) refusedAs(t, 'invalid_name', () => parseGroupName(input), JSON.stringify(input));
});

test('a selector is a MAC (canonicalised), group:<name> or default', (t) => {
  t.deepEqual(parseSelector('AA-BB-CC-DD-EE-FF'), { kind: 'device', mac: 'aa:bb:cc:dd:ee:ff' });
  t.deepEqual(parseSelector('aabbccddeeff'), { kind: 'device', mac: 'aa:bb:cc:dd:ee:ff' });
  t.deepEqual(parseSelector('group:lab'), { kind: 'group', group: 'lab' });
  t.deepEqual(parseSelector('default'), { kind: 'default' });
});

test('a selector key is the canonical text form', (t) => {
  t.is(selectorKey(parseSelector('AA-BB-CC-DD-EE-FF')), 'aa:bb:cc:dd:ee:ff');
  t.is(selectorKey(parseSelector('group:lab')), 'group:lab');
  t.is(selectorKey(parseSelector('default')), 'default');
});

test('anything else is invalid_selector: bad group names, other words, broken MACs', (t) => {
  for (const input of ['', 'DEFAULT', 'default ', 'group:', 'group:Lab', 'group:../x', 'group:a/b', `group:${'a'.repeat(65)}`, 'groups:lab', 'lab', 'aa:bb-cc:dd:ee:ff', 'aa:bb:cc:dd:ee']) {
    refusedAs(t, 'invalid_selector', () => parseSelector(input), JSON.stringify(input));
  }
});
