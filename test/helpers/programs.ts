import { createHash, randomBytes } from 'node:crypto';
import { readFileSync } from 'node:fs';
import { fileURLToPath } from 'node:url';

// Real ExecuTorch programs from ../shared/fixtures/pte, and bigger ones made from the
// format facts, for Range and streaming tests.

const FIXTURES = fileURLToPath(new URL('../../../shared/fixtures/pte/', import.meta.url));

export const ADD_SHA256 = 'c9608ddefe472e0ebd8d4a900dc0957d893381c928dd1c648a439a6e88470b18';
export const MUL_SHA256 = 'fa143f48550cdbf7ca7a161d9a6c7f79604284a3fe004f8710dc18b728f40a6e';

export function fixture(name: 'add.pte' | 'mul.pte'): Buffer {
  return readFileSync(`${FIXTURES}${name}`);
}

export function fixturePath(name: 'add.pte' | 'mul.pte'): string {
  return `${FIXTURES}${name}`;
}

export function sha256(bytes: Buffer): string {
  return createHash('sha256').update(bytes).digest('hex');
}

/**
 * A program of `size` bytes: the ET12 identifier, an `eh00` extended header describing a
 * flatbuffer region and a trailing segment region, and random bytes (so every call differs).
 */
export function makeProgram(size: number, header: Partial<{ length: number; programSize: bigint; segmentBase: bigint; segmentSize: bigint }> = {}): Buffer {
  const bytes = randomBytes(size);
  bytes.writeUInt32LE(56, 0);
  bytes.write('ET12', 4, 'latin1');
  bytes.write('eh00', 8, 'latin1');
  const programSize = header.programSize ?? BigInt(Math.floor(size / 2));
  const segmentBase = header.segmentBase ?? programSize;
  bytes.writeUInt32LE(header.length ?? 32, 12);
  bytes.writeBigUInt64LE(programSize, 16);
  bytes.writeBigUInt64LE(segmentBase, 24);
  bytes.writeBigUInt64LE(header.segmentSize ?? BigInt(size) - segmentBase, 32);
  return bytes;
}
