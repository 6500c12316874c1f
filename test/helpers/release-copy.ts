import { execFile } from 'node:child_process';
import { existsSync } from 'node:fs';
import { chmod, cp, mkdir, readFile, readdir, stat } from 'node:fs/promises';
import path from 'node:path';
import { promisify } from 'node:util';
import { ROOT, cleanEnv } from './daemon-process.ts';

const run = promisify(execFile);

// The built gateway (dist/, config/, package.json and the production dependencies, as install.sh puts
// them in /opt/modelferry) copied into `dir`, readable and searchable by every user. Tests
// that run the gateway as an unprivileged user need it: the checkout itself may sit under a
// folder only its owner can enter (a CI clone in a mkdtemp folder, a home folder), where such
// a user cannot even load the program.

export async function releaseCopy(dir: string): Promise<string> {
  if (!existsSync(path.join(ROOT, 'dist', 'cli', 'main.js'))) throw new Error('dist/ is not built: run npm run build (npm test does)');
  const target = path.join(dir, 'release');
  await mkdir(path.join(target, 'node_modules'), { recursive: true });
  for (const item of ['package.json', 'dist', 'config']) await cp(path.join(ROOT, item), path.join(target, item), { recursive: true });
  // Only what `npm ci --omit=dev` installs: top-level packages the lock does not mark dev
  // (nested ones travel inside them).
  const lock = JSON.parse(await readFile(path.join(ROOT, 'package-lock.json'), 'utf8')) as { packages: Record<string, { dev?: boolean }> };
  for (const [where, entry] of Object.entries(lock.packages)) {
    if (where === '' || entry.dev === true || where.split('node_modules/').length !== 2) continue;
    await cp(path.join(ROOT, where), path.join(target, where), { recursive: true, verbatimSymlinks: true });
  }
  await readable(dir);
  return target;
}

/** u+rwX,go+rX on everything under (and including) `dir`, like `chmod -R a+rX`. */
async function readable(dir: string): Promise<void> {
  const info = await stat(dir);
  await chmod(dir, (info.mode & 0o7777) | 0o555);
  for (const entry of await readdir(dir, { withFileTypes: true })) {
    const full = path.join(dir, entry.name);
    if (entry.isDirectory()) await readable(full);
    else if (entry.isFile()) await chmod(full, ((await stat(full)).mode & 0o7777) | 0o444);
  }
}

/**
 * The release as `npm pack` makes it (what install.sh --tarball takes), packed in `dir` from
 * a copy so the checkout is left alone. dist/ must be built.
 */
export async function packedRelease(dir: string): Promise<string> {
  if (!existsSync(path.join(ROOT, 'dist', 'cli', 'main.js'))) throw new Error('dist/ is not built: run npm run build (npm test does)');
  const source = path.join(dir, 'source');
  await mkdir(source);
  for (const item of ['package.json', 'package-lock.json', 'README.md', 'docs', 'dist', 'config', 'systemd']) {
    await cp(path.join(ROOT, item), path.join(source, item), { recursive: true });
  }
  const npm = (...args: string[]) => run('npm', args, { cwd: source, env: cleanEnv() });
  // The package's own prepack/postpack, around a pack that does not rebuild dist/.
  await npm('run', 'prepack');
  const { stdout } = await npm('pack', '--ignore-scripts', '--json', '--pack-destination', dir);
  await npm('run', 'postpack');
  return path.join(dir, (JSON.parse(stdout) as Array<{ filename: string }>)[0]!.filename);
}
