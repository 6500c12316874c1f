import { ProgramFormatError } from './program-error.ts';

// The optional extended header of a .pte file (ExecuTorch's layout): magic `eh00` at byte
// 8, a u32 header length (>= 24), a u64 program size, a u64 segment base offset and, when
// the length is >= 32, a u64 segment data size.

const MAGIC = 'eh00';
const MIN_LENGTH = 24;
const LENGTH_WITH_SEGMENT_SIZE = 32;

export interface ExtendedHeader {
  /** Bytes of the flatbuffer region at the start of the file. */
  programSize: number;
  /** Where segment offsets count from; 0 when the file has no segments. */
  segmentBase: number;
  segmentDataSize: number | null;
}

/** The header when the file has one, null when not; throws when it is inconsistent. */
export function readExtendedHeader(head: Buffer, fileSize: number): ExtendedHeader | null {
  if (head.length < 12 || head.toString('latin1', 8, 12) !== MAGIC) return null;
  const fail = (problem: string): never => {
    throw new ProgramFormatError(`its extended header (eh00) is inconsistent: ${problem}`);
  };
  if (head.length < 8 + MIN_LENGTH) fail('the file ends inside the header');
  const length = head.readUInt32LE(12);
  if (length < MIN_LENGTH) fail(`header length ${length} is below ${MIN_LENGTH}`);
  if (8 + length > fileSize) fail(`header length ${length} runs past the end of the file`);
  const programSize = head.readBigUInt64LE(16);
  const segmentBase = head.readBigUInt64LE(24);
  const size = BigInt(fileSize);
  if (programSize < BigInt(8 + length) || programSize > size) {
    fail(`program size ${programSize} does not fit a file of ${fileSize} bytes`);
  }
  if (segmentBase !== 0n && (segmentBase < programSize || segmentBase > size)) {
    fail(`segment base offset ${segmentBase} does not fit a program of ${programSize} bytes in a file of ${fileSize}`);
  }
  let segmentDataSize: bigint | null = null;
  if (length >= LENGTH_WITH_SEGMENT_SIZE) {
    if (head.length < 8 + LENGTH_WITH_SEGMENT_SIZE) fail('the file ends inside the header');
    segmentDataSize = head.readBigUInt64LE(32);
    if (segmentBase + segmentDataSize > size) {
      fail(`segments of ${segmentDataSize} bytes at offset ${segmentBase} run past the end of a file of ${fileSize} bytes`);
    }
  }
  // All three are now at most the file size, which is a safe integer.
  return {
    programSize: Number(programSize),
    segmentBase: Number(segmentBase),
    segmentDataSize: segmentDataSize === null ? null : Number(segmentDataSize),
  };
}
