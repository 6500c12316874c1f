// Filesystem errors as sentences for the person who has to fix them: what was being done,
// to which setting or argument, which value, and what to do about it. Node's own messages
// ("EACCES: permission denied, mkdir '/x'") name none of that.

const REASONS: Record<string, { why: string; fix: string }> = {
  ENOENT: { why: 'does not exist', fix: 'check the path' },
  EACCES: { why: 'is not accessible to this user (permission denied)', fix: 'run as a user that may use it or change its permissions' },
  EPERM: { why: 'may not be changed by this user (operation not permitted)', fix: 'run as a user that may use it or change its permissions' },
  ENOTDIR: { why: 'goes through a file where a folder is needed', fix: 'choose a path whose parents are folders' },
  EISDIR: { why: 'is a folder, not a file', fix: 'name a file' },
  EEXIST: { why: 'already exists', fix: 'choose another name or move the old one away' },
  EROFS: { why: 'is on a read-only file system', fix: 'choose a writable location' },
  ENOSPC: { why: 'is on a full disk', fix: 'free some space' },
  EDQUOT: { why: 'is over the disk quota', fix: 'free some space' },
  ELOOP: { why: 'goes through too many symbolic links', fix: 'check the links on the way' },
  ENAMETOOLONG: { why: 'is too long', fix: 'choose a shorter path' },
  EIO: { why: 'could not be read or written (input/output error: a failing disk or card?)', fix: 'check the disk' },
};

export function errnoOf(error: unknown): string | undefined {
  return (error as NodeJS.ErrnoException | undefined)?.code;
}

/**
 * `<subject> <why>: <fix>`, e.g. `paths.state /srv/x is not accessible to this user
 * (permission denied): run as a user that may use it or change its permissions`.
 * `fix` replaces the generic advice when the caller knows better.
 */
export function describeFsError(error: unknown, subject: string, fix?: string): string {
  const code = errnoOf(error);
  const reason = code ? REASONS[code] : undefined;
  if (!reason) return `${subject}: ${(error as Error).message}`;
  return `${subject} ${reason.why}: ${fix ?? reason.fix}`;
}

/**
 * True for a write refused because the disk (or the quota) is full: ENOSPC or EDQUOT from
 * Node, or LevelDB's "IO error: ...: No space left on device", which carries no errno.
 */
export function isDiskFull(error: unknown): boolean {
  for (let e = error as (Error & { cause?: unknown }) | undefined, depth = 0; e && depth < 5; e = e.cause as typeof e, depth++) {
    const code = errnoOf(e);
    if (code === 'ENOSPC' || code === 'EDQUOT') return true;
    if (typeof e.message === 'string' && /No space left on device|Disk quota exceeded/i.test(e.message)) return true;
  }
  return false;
}
