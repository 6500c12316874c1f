// What the gateway checks of an ExecuTorch program before it accepts one. The layout is
// from the ExecuTorch schema: bytes 0..3 are the flatbuffer root offset, bytes 4..7 the file
// identifier `ET` + two digits, and an optional extended header `eh00` may follow at byte 8.
// A device runs this file from flash; refusing a broken one here is cheaper than a device
// that fails to load it in the field.

/** How many leading bytes `inspectProgram` needs. */
export const PROGRAM_HEAD_BYTES = 48;

const EXTENDED_MAGIC = 'eh00';
const MIN_EXTENDED_LENGTH = 24;
const EXTENDED_LENGTH_WITH_SEGMENT_SIZE = 32;

export type ProgramCheck =
  | { format: 'executorch'; identifier: string }
  | { format: 'unknown'; reason: string };

export function inspectProgram(head: Buffer, fileSize: number): ProgramCheck {
  if (fileSize < 8 || head.length < 8) return { format: 'unknown', reason: 'it is shorter than an ExecuTorch header' };
  const identifier = head.toString('latin1', 4, 8);
  if (!/^ET\d\d$/.test(identifier)) {
    return { format: 'unknown', reason: 'it has no ExecuTorch file identifier (ET + two digits at byte 4)' };
  }
  if (head.length >= 12 && head.toString('latin1', 8, 12) === EXTENDED_MAGIC) {
    const problem = checkExtendedHeader(head, fileSize);
    if (problem) return { format: 'unknown', reason: `its extended header (eh00) is inconsistent: ${problem}` };
  }
  return { format: 'executorch', identifier };
}

function checkExtendedHeader(head: Buffer, fileSize: number): string | undefined {
  if (head.length < 8 + MIN_EXTENDED_LENGTH) return 'the file ends inside the header';
  const length = head.readUInt32LE(12);
  if (length < MIN_EXTENDED_LENGTH) return `header length ${length} is below ${MIN_EXTENDED_LENGTH}`;
  if (8 + length > fileSize) return `header length ${length} runs past the end of the file`;
  const programSize = head.readBigUInt64LE(16);
  const segmentBase = head.readBigUInt64LE(24);
  const size = BigInt(fileSize);
  if (programSize < BigInt(8 + length) || programSize > size) {
    return `program size ${programSize} does not fit a file of ${fileSize} bytes`;
  }
  if (segmentBase !== 0n && (segmentBase < programSize || segmentBase > size)) {
    return `segment base offset ${segmentBase} does not fit a program of ${programSize} bytes in a file of ${fileSize}`;
  }
  if (length >= EXTENDED_LENGTH_WITH_SEGMENT_SIZE) {
    if (head.length < 8 + EXTENDED_LENGTH_WITH_SEGMENT_SIZE) return 'the file ends inside the header';
    const segmentSize = head.readBigUInt64LE(32);
    if (segmentBase + segmentSize > size) {
      return `segments of ${segmentSize} bytes at offset ${segmentBase} run past the end of a file of ${fileSize} bytes`;
    }
  }
  return undefined;
}
