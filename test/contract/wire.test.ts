import test from 'ava';
import { deviceReportSchema } from '../../daemon/contract/device-report.ts';
import { keyIdSchema, selectorSchema, versionSchema } from '../../daemon/contract/identifiers.ts';
import { artifactPath, pollAnswerSchema, wireModel } from '../../daemon/contract/model-wire.ts';

// The wire forms of docs/design.md ("Identifiers", "Device poll", "Device reports",
// "Central store format"), as the schemas other parts are written from.

const DIGEST = 'c9608ddefe472e0ebd8d4a900dc0957d893381c928dd1c648a439a6e88470b18';
const stored = {
  name: 'kws', version: '2026.11.24-3', sha256: DIGEST, size: 1234, format: 'executorch', signature: null, keyId: null, createdAt: '2026-11-24T12:00:00Z',
};

test('a model\'s wire form has the contract\'s fields in the contract\'s order, nothing stored beside them', (t) => {
  const wire = wireModel(stored, artifactPath(DIGEST));
  t.deepEqual(Object.keys(wire), ['name', 'version', 'sha256', 'size', 'url', 'signature', 'keyId', 'signatureSeq']);
  t.is(wire.url, `/v1/artifacts/${DIGEST}`);
});

test('a poll answer body parses with the poll answer schema; a non-canonical device MAC does not', (t) => {
  const body = { device: 'aa:bb:cc:dd:ee:ff', model: wireModel(stored, artifactPath(DIGEST)), poll: { intervalSeconds: 300, jitterSeconds: 30 } };
  t.deepEqual(pollAnswerSchema.parse(body), body);
  t.false(pollAnswerSchema.safeParse({ ...body, device: 'AA-BB-CC-DD-EE-FF' }).success);
});

test('a device report needs a known state; unknown fields are refused; known ones must be valid', (t) => {
  t.deepEqual(deviceReportSchema.parse({ state: 'installed', sha256: DIGEST }), { state: 'installed', sha256: DIGEST });
  for (const bad of [{ state: 'installed', newerFirmwareField: 1 }, {}, { state: 'sleeping' }, { state: 'idle', sha256: DIGEST.toUpperCase() }, { state: 'idle', progress: 1.5 }, { state: 'idle', rssi: 3 }, { state: 'idle', model: 'KWS' }]) {
    t.false(deviceReportSchema.safeParse(bad).success, JSON.stringify(bad));
  }
});

test('the identifier schemas carry the same rules as the parse functions', (t) => {
  t.true(keyIdSchema.safeParse('0123456789abcdef').success);
  t.false(keyIdSchema.safeParse('0123456789ABCDEF').success);
  t.false(versionSchema.safeParse('latest').success);
  t.true(versionSchema.safeParse('1.0.0+build.7').success);
  for (const ok of ['default', 'group:lab', 'aa:bb:cc:dd:ee:ff']) t.true(selectorSchema.safeParse(ok).success, ok);
  for (const bad of ['group:', 'group:Lab', 'AA:BB:CC:DD:EE:FF', 'aabbccddeeff', 'everyone']) t.false(selectorSchema.safeParse(bad).success, bad);
});
