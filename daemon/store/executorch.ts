import { open } from 'node:fs/promises';
import { fail } from '../errors.ts';
import { ProgramFormatError } from '../program/program-error.ts';
import type { ProgramSummary } from '../program/program-summary.ts';
import { claimsExecuTorch, programRegionBytes, readProgram } from '../program/read-program.ts';

// The format check every way into the catalog goes through (push, sync, inbox). A device
// runs this file from flash; refusing a broken one here is cheaper than a device that
// fails to load it in the field, and reading it tells compatibility what it needs.

/** How many leading bytes decide whether a file claims to be a program (with its eh00 header). */
export const PROGRAM_HEAD_BYTES = 48;

export type ProgramCheck =
  /** A program that reads cleanly. */
  | { format: 'executorch'; identifier: string; program: ProgramSummary }
  /** No ExecuTorch identifier: other bytes, acceptable only when artifacts.formats has `any`. */
  | { format: 'unknown'; reason: string }
  /** Claims to be a program (`ET` + two digits) but is not a readable one: never accepted. */
  | { format: 'invalid'; reason: string };

/** `bytes`: the whole file, or at least its program region (see inspectProgramFile). */
export function inspectProgram(bytes: Buffer, fileSize = bytes.length): ProgramCheck {
  if (fileSize < 8 || bytes.length < 8) return { format: 'unknown', reason: 'it is shorter than an ExecuTorch header' };
  if (!claimsExecuTorch(bytes)) return { format: 'unknown', reason: 'it has no ExecuTorch file identifier (ET + two digits at byte 4)' };
  try {
    const program = readProgram(bytes, fileSize);
    return { format: 'executorch', identifier: program.identifier, program };
  } catch (error) {
    if (error instanceof ProgramFormatError) return { format: 'invalid', reason: error.message };
    throw error;
  }
}

/** Reads only what inspectProgram needs of a file: the program region, not the segments. */
export async function inspectProgramFile(path: string, fileSize: number): Promise<ProgramCheck> {
  const file = await open(path, 'r');
  try {
    const head = await readAt(file, 0, Math.min(PROGRAM_HEAD_BYTES, fileSize));
    if (!claimsExecuTorch(head)) return inspectProgram(head, fileSize);
    let regionSize: number;
    try {
      regionSize = programRegionBytes(head, fileSize);
    } catch (error) {
      if (error instanceof ProgramFormatError) return { format: 'invalid', reason: error.message };
      throw error;
    }
    return inspectProgram(await readAt(file, 0, regionSize), fileSize);
  } finally {
    await file.close();
  }
}

/**
 * The decision the catalog needs: the program summary (null for other bytes let in by
 * `artifacts.formats: [any]`), or `415 unsupported_format` naming what is wrong.
 */
export function acceptFormat(check: ProgramCheck, formats: readonly string[]): { format: 'executorch' | 'unknown'; program: ProgramSummary | null } {
  if (check.format === 'executorch') return { format: 'executorch', program: check.program };
  if (check.format === 'invalid') fail('unsupported_format', `the body claims to be an ExecuTorch program but cannot be read as one: ${check.reason}; nothing was stored`);
  if (!formats.includes('any')) {
    fail('unsupported_format', `the body is not an ExecuTorch program: ${check.reason}; artifacts.formats allows ${formats.join(', ')}`);
  }
  return { format: 'unknown', program: null };
}

async function readAt(file: import('node:fs/promises').FileHandle, position: number, length: number): Promise<Buffer> {
  const buffer = Buffer.alloc(length);
  let done = 0;
  while (done < length) {
    const { bytesRead } = await file.read(buffer, done, length - done, position + done);
    if (bytesRead === 0) break;
    done += bytesRead;
  }
  return buffer.subarray(0, done);
}
