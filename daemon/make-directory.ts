import { mkdir, stat } from 'node:fs/promises';
import path from 'node:path';

/**
 * `mkdir -p` that always ends. Node's `mkdir(dir, { recursive: true })` never returns when
 * a parent exists but the child still cannot be found (a path under /proc, a dangling
 * symbolic link): it answers ENOENT by creating the parent, which "succeeds" with EEXIST,
 * and retries the child forever at 100 % CPU. Here each missing folder is created once,
 * top-down, and the first failure is final. The error carries the path that failed.
 */
export async function makeDirectory(dir: string, mode = 0o755): Promise<void> {
  const missing: string[] = [];
  let current = path.resolve(dir);
  for (;;) {
    try {
      const info = await stat(current);
      if (!info.isDirectory()) throw Object.assign(new Error(`${current} is not a directory`), { code: 'ENOTDIR', path: current });
      break;
    } catch (error) {
      if ((error as NodeJS.ErrnoException).code !== 'ENOENT') throw error;
      const parent = path.dirname(current);
      if (parent === current) throw error;
      missing.push(current);
      current = parent;
    }
  }
  for (const folder of missing.reverse()) {
    try {
      await mkdir(folder, { mode });
    } catch (error) {
      if ((error as NodeJS.ErrnoException).code !== 'EEXIST') throw error;
    }
  }
}
