import { createHash, randomBytes } from 'node:crypto';
import { readFileSync } from 'node:fs';
import { fileURLToPath } from 'node:url';
import { buildProgram } from './program-builder.ts';

// Real ExecuTorch programs from test/fixtures/pte (see its README), and bigger ones built from the
// schema, for Range and streaming tests.

const FIXTURES = fileURLToPath(new URL('../fixtures/pte/', import.meta.url));

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
 * A real program of `size` bytes: a one-method flatbuffer (`forward`, `aten::add.out`)
 * behind an `eh00` extended header, then random bytes as segment data (so every call
 * differs). `header` overrides fields of the extended header, for tests of inconsistent
 * ones; a `size` below the flatbuffer's own gives a truncated file.
 */
export function makeProgram(size: number, header: Partial<{ length: number; programSize: bigint; segmentBase: bigint; segmentSize: bigint }> = {}): Buffer {
  const withHeader = buildProgram({ methods: [{ name: 'forward', operators: ['aten::add.out'], inputs: [], outputs: [] }], segments: [] });
  const flatbufferEnd = Number(withHeader.readBigUInt64LE(16));
  const bytes = Buffer.concat([withHeader.subarray(0, flatbufferEnd), randomBytes(Math.max(0, size - flatbufferEnd))]).subarray(0, size);
  const programSize = header.programSize ?? BigInt(Math.min(flatbufferEnd, size));
  const segmentBase = header.segmentBase ?? programSize;
  if (size >= 12) bytes.writeUInt32LE(header.length ?? 32, 12);
  if (size >= 24) bytes.writeBigUInt64LE(programSize, 16);
  if (size >= 32) bytes.writeBigUInt64LE(segmentBase, 24);
  if (size >= 40) bytes.writeBigUInt64LE(header.segmentSize ?? BigInt(size) - segmentBase, 32);
  return bytes;
}
