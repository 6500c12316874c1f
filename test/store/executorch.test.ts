import test from 'ava';
import { mkdtemp, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { acceptFormat, inspectProgram, inspectProgramFile, type ProgramCheck } from '../../daemon/store/executorch.ts';
import { isModelferryError } from '../../daemon/errors.ts';
import { fixture, makeProgram } from '../helpers/programs.ts';

// docs/design.md "Admin and pipeline API": an ExecuTorch program has `ET` + two digits at byte
// 4, and a consistent `eh00` extended header when one is present. Bytes that claim the
// identifier must also read as a program (daemon/program; test/program has the reader's own
// tests).

/** The outcome without the program summary, so that format rules read plainly. */
function inspect(bytes: Buffer) {
  const check = inspectProgram(bytes);
  return check.format === 'executorch' ? { format: check.format, identifier: check.identifier } : check;
}

test('the real add.pte and mul.pte fixtures are ExecuTorch programs with identifier ET12', (t) => {
  t.deepEqual(inspect(fixture('add.pte')), { format: 'executorch', identifier: 'ET12' });
  t.deepEqual(inspect(fixture('mul.pte')), { format: 'executorch', identifier: 'ET12' });
});

test('a program with a consistent eh00 header passes', (t) => {
  t.deepEqual(inspect(makeProgram(4096)), { format: 'executorch', identifier: 'ET12' });
  // No segments at all: base 0 and size 0.
  t.deepEqual(inspect(makeProgram(4096, { programSize: 4096n, segmentBase: 0n, segmentSize: 0n })), { format: 'executorch', identifier: 'ET12' });
  // The segments end exactly at the end of the file.
  t.deepEqual(inspect(makeProgram(4096, { programSize: 1000n, segmentBase: 1024n, segmentSize: 3072n })), { format: 'executorch', identifier: 'ET12' });
  // An older 24-byte header has no segment size.
  t.deepEqual(inspect(makeProgram(4096, { length: 24 })), { format: 'executorch', identifier: 'ET12' });
});

test('any two digits after ET are accepted as the identifier', (t) => {
  const bytes = Buffer.from(fixture('add.pte'));
  bytes.write('ET07', 4, 'latin1');
  t.deepEqual(inspect(bytes), { format: 'executorch', identifier: 'ET07' });
});

test('bytes without ET + two digits at byte 4 are refused', (t) => {
  for (const identifier of ['XX12', 'et12', 'ET1x', 'ETAB']) {
    const bytes = Buffer.from(fixture('add.pte'));
    bytes.write(identifier, 4, 'latin1');
    t.deepEqual(inspect(bytes), { format: 'unknown', reason: 'it has no ExecuTorch file identifier (ET + two digits at byte 4)' }, identifier);
  }
  t.deepEqual(inspect(Buffer.from('PK\u0003\u0004 this is a zip file, not a program')), { format: 'unknown', reason: 'it has no ExecuTorch file identifier (ET + two digits at byte 4)' });
});

test('a file shorter than the 8-byte header is refused', (t) => {
  const short = { format: 'unknown', reason: 'it is shorter than an ExecuTorch header' };
  t.deepEqual(inspect(Buffer.alloc(0)), short);
  t.deepEqual(inspect(fixture('add.pte').subarray(0, 7)), short);
  // The bytes at hand are what counts, even when the claimed size is larger.
  t.deepEqual(inspectProgram(fixture('add.pte').subarray(0, 7), 1072), short);
});

test('an eh00 header that the file ends inside is refused', (t) => {
  const bytes = makeProgram(4096).subarray(0, 20);
  t.deepEqual(inspect(bytes), { format: 'invalid', reason: 'its extended header (eh00) is inconsistent: the file ends inside the header' });
});

test('an eh00 header length below 24 is refused', (t) => {
  t.deepEqual(inspect(makeProgram(4096, { length: 16 })), { format: 'invalid', reason: 'its extended header (eh00) is inconsistent: header length 16 is below 24' });
  t.deepEqual(inspect(makeProgram(4096, { length: 0 })), { format: 'invalid', reason: 'its extended header (eh00) is inconsistent: header length 0 is below 24' });
});

test('an eh00 header length past the end of the file is refused', (t) => {
  const bytes = makeProgram(64, { programSize: 40n, segmentBase: 0n, segmentSize: 0n, length: 100 });
  t.deepEqual(inspect(bytes), { format: 'invalid', reason: 'its extended header (eh00) is inconsistent: header length 100 runs past the end of the file' });
});

test('a program size larger than the file is refused', (t) => {
  t.deepEqual(inspect(makeProgram(4096, { programSize: 4097n, segmentBase: 0n, segmentSize: 0n })), {
    format: 'invalid', reason: 'its extended header (eh00) is inconsistent: program size 4097 does not fit a file of 4096 bytes',
  });
});

test('a program size smaller than the header itself is refused', (t) => {
  t.deepEqual(inspect(makeProgram(4096, { programSize: 39n })), {
    format: 'invalid', reason: 'its extended header (eh00) is inconsistent: program size 39 does not fit a file of 4096 bytes',
  });
});

test('a segment base before the end of the program is refused', (t) => {
  t.deepEqual(inspect(makeProgram(4096, { programSize: 2048n, segmentBase: 2047n, segmentSize: 100n })), {
    format: 'invalid', reason: 'its extended header (eh00) is inconsistent: segment base offset 2047 does not fit a program of 2048 bytes in a file of 4096',
  });
});

test('a segment base past the end of the file is refused', (t) => {
  t.deepEqual(inspect(makeProgram(4096, { programSize: 2048n, segmentBase: 4097n, segmentSize: 0n })), {
    format: 'invalid', reason: 'its extended header (eh00) is inconsistent: segment base offset 4097 does not fit a program of 2048 bytes in a file of 4096',
  });
});

test('segments running past the end of the file are refused', (t) => {
  t.deepEqual(inspect(makeProgram(4096, { programSize: 2048n, segmentBase: 2048n, segmentSize: 2049n })), {
    format: 'invalid', reason: 'its extended header (eh00) is inconsistent: segments of 2049 bytes at offset 2048 run past the end of a file of 4096 bytes',
  });
  // A huge size must not wrap around.
  t.deepEqual(inspect(makeProgram(4096, { programSize: 2048n, segmentBase: 2048n, segmentSize: 2n ** 64n - 1n })).format, 'invalid');
});

test('a program truncated after upload (header promises more than the file holds) is refused', (t) => {
  const whole = makeProgram(4096, { programSize: 2048n });
  const truncated = whole.subarray(0, 3000);
  t.deepEqual(inspect(whole).format, 'executorch');
  t.deepEqual(inspect(truncated), {
    format: 'invalid', reason: 'its extended header (eh00) is inconsistent: segments of 2048 bytes at offset 2048 run past the end of a file of 3000 bytes',
  });
});

test('bytes that claim ET12 but are not a readable program are invalid, not unknown', (t) => {
  const bytes = Buffer.from(fixture('add.pte'));
  bytes.writeUInt32LE(0xfffffff0, 0);
  const check = inspect(bytes);
  t.is(check.format, 'invalid');
  t.regex((check as { reason: string }).reason, /root offset at byte 0 points to byte \d+, outside the 1072-byte program/);
});

test('inspectProgramFile reads the program region of a file and gives what inspectProgram gives', async (t) => {
  const dir = await mkdtemp(path.join(tmpdir(), 'mf-format-'));
  t.teardown(() => rm(dir, { recursive: true, force: true }));
  const cases: Array<[string, Buffer]> = [
    ['add.pte', fixture('add.pte')],
    ['segmented.pte', makeProgram(64 * 1024)],
    ['broken-header.pte', makeProgram(4096, { length: 16 })],
    ['truncated.pte', fixture('mul.pte').subarray(0, 600)],
    ['zip', Buffer.from('PK\u0003\u0004 not a program at all')],
    ['tiny', Buffer.from('ET')],
  ];
  for (const [name, bytes] of cases) {
    const file = path.join(dir, name);
    await writeFile(file, bytes);
    t.deepEqual(await inspectProgramFile(file, bytes.length), inspectProgram(bytes), name);
  }
});

test('acceptFormat: programs pass, invalid ones never, other bytes only with formats [any]', (t) => {
  const program = inspectProgram(fixture('add.pte'));
  t.is(acceptFormat(program, ['executorch']).program?.methods[0]?.name, 'forward');
  const refused = (check: ProgramCheck, formats: string[]) => {
    try {
      acceptFormat(check, formats);
      return null;
    } catch (error) {
      return isModelferryError(error) ? `${error.status} ${error.code}` : String(error);
    }
  };
  const invalid = inspectProgram(makeProgram(4096, { length: 16 }));
  const other = inspectProgram(Buffer.from('just some bytes, no identifier'));
  t.is(refused(invalid, ['executorch']), '415 unsupported_format');
  t.is(refused(invalid, ['executorch', 'any']), '415 unsupported_format');
  t.is(refused(other, ['executorch']), '415 unsupported_format');
  t.deepEqual(acceptFormat(other, ['executorch', 'any']), { format: 'unknown', program: null });
});
