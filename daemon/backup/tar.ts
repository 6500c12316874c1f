import type { FileHandle } from 'node:fs/promises';

// Just enough of POSIX ustar to write and read a backup: regular files, names under 100
// bytes, sizes under 8 GiB. A backup is then a plain .tar an operator can list and unpack
// with `tar`, and no dependency is needed for it.

const BLOCK = 512;

/** The 512-byte header of a regular file member. */
export function tarHeader(name: string, size: number, mtime: Date, mode = 0o600): Buffer {
  const header = Buffer.alloc(BLOCK);
  if (Buffer.byteLength(name) >= 100) throw new Error(`tar member name too long: ${name}`);
  const octal = (value: number, width: number) => value.toString(8).padStart(width - 1, '0');
  header.write(name, 0, 100, 'utf8');
  header.write(octal(mode, 8), 100, 8, 'ascii');
  header.write(octal(0, 8), 108, 8, 'ascii');
  header.write(octal(0, 8), 116, 8, 'ascii');
  header.write(octal(size, 12), 124, 12, 'ascii');
  header.write(octal(Math.floor(mtime.getTime() / 1000), 12), 136, 12, 'ascii');
  header.write(' '.repeat(8), 148, 8, 'ascii');
  header.write('0', 156, 1, 'ascii');
  header.write('ustar\u000000', 257, 8, 'ascii');
  header.write('root', 265, 32, 'ascii');
  header.write('root', 297, 32, 'ascii');
  let sum = 0;
  for (const byte of header) sum += byte;
  header.write(`${sum.toString(8).padStart(6, '0')}\u0000 `, 148, 8, 'ascii');
  return header;
}

/** Zero bytes that pad a member of `size` bytes to a whole block. */
export function tarPadding(size: number): Buffer {
  return Buffer.alloc((BLOCK - (size % BLOCK)) % BLOCK);
}

/** Two zero blocks: the end of the archive. */
export const TAR_END = Buffer.alloc(BLOCK * 2);

export interface TarMember {
  name: string;
  size: number;
  /** Where the member's bytes start in the file. */
  offset: number;
}

/** The regular file members of a tar file, in order, with where their bytes are. */
export async function listTar(file: FileHandle): Promise<TarMember[]> {
  const members: TarMember[] = [];
  const header = Buffer.alloc(BLOCK);
  const { size: total } = await file.stat();
  let offset = 0;
  for (;;) {
    if (offset + BLOCK > total) throw new Error('the archive ends without its end marker (truncated?)');
    await readExactly(file, header, offset);
    if (header.every((byte) => byte === 0)) return members;
    let sum = 0;
    for (let i = 0; i < BLOCK; i++) sum += i >= 148 && i < 156 ? 32 : header[i]!;
    const recorded = Number.parseInt(header.toString('ascii', 148, 156).replace(/\0.*$/s, '').trim(), 8);
    if (sum !== recorded) throw new Error(`not a tar archive (bad header checksum at byte ${offset})`);
    const name = header.toString('utf8', 0, 100).replace(/\0.*$/s, '');
    const size = Number.parseInt(header.toString('ascii', 124, 136).replace(/\0.*$/s, '').trim() || '0', 8);
    const type = String.fromCharCode(header[156]!);
    if (offset + BLOCK + size > total) throw new Error(`the archive is truncated inside ${name}`);
    if (type === '0' || type === '\0') members.push({ name, size, offset: offset + BLOCK });
    offset += BLOCK + size + tarPadding(size).length;
  }
}

async function readExactly(file: FileHandle, buffer: Buffer, position: number): Promise<void> {
  let done = 0;
  while (done < buffer.length) {
    const { bytesRead } = await file.read(buffer, done, buffer.length - done, position + done);
    if (bytesRead === 0) throw new Error('unexpected end of the archive');
    done += bytesRead;
  }
}

/** A member's whole content (for the small ones: manifest, config, database). */
export async function readMember(file: FileHandle, member: TarMember): Promise<Buffer> {
  const buffer = Buffer.alloc(member.size);
  if (member.size > 0) await readExactly(file, buffer, member.offset);
  return buffer;
}
