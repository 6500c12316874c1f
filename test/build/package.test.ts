import { execFile, spawn } from 'node:child_process';
import { builtinModules } from 'node:module';
import { readdir, readFile, stat } from 'node:fs/promises';
import path from 'node:path';
import { promisify } from 'node:util';
import test from 'ava';
import { ROOT, cleanEnv, freePort } from '../helpers/daemon-process.ts';
import { tempDir } from '../helpers/harness.ts';

// The package that runs on a gateway (docs/design.md "Storage and crash safety"): daemon/
// compiled to dist/ by `npm run build` (npm test builds first), run by plain node with
// production dependencies only. The other process-level tests run the sources through tsx;
// this one runs dist/.

const run = promisify(execFile);
const pkg = JSON.parse(await readFile(path.join(ROOT, 'package.json'), 'utf8')) as {
  bin: Record<string, string>; scripts: Record<string, string>; files: string[];
  dependencies: Record<string, string>; devDependencies: Record<string, string>;
};

async function filesUnder(dir: string, ending: string): Promise<string[]> {
  const entries = await readdir(path.join(ROOT, dir), { withFileTypes: true, recursive: true });
  return entries.filter((e) => e.isFile() && e.name.endsWith(ending))
    .map((e) => path.relative(path.join(ROOT, dir), path.join(e.parentPath, e.name))).sort();
}

test('dist/ mirrors daemon/ file for file, and is not older than its sources (else: npm run build)', async (t) => {
  const sources = await filesUnder('daemon', '.ts');
  const built = await filesUnder('dist', '.js');
  t.deepEqual(built, sources.map((file) => file.replace(/\.ts$/, '.js')));
  for (const file of sources) {
    const [source, output] = await Promise.all([stat(path.join(ROOT, 'daemon', file)), stat(path.join(ROOT, 'dist', file.replace(/\.ts$/, '.js')))]);
    t.true(output.mtimeMs >= source.mtimeMs, `dist/${file.replace(/\.ts$/, '.js')} is older than daemon/${file}: run npm run build`);
  }
});

test('at run time the package needs only its dependencies: no .ts import, no devDependency, no tsx', async (t) => {
  const seen = new Set<string>();
  const builtins = new Set([...builtinModules, ...builtinModules.map((name) => `node:${name}`)]);
  for (const file of await filesUnder('dist', '.js')) {
    const text = await readFile(path.join(ROOT, 'dist', file), 'utf8');
    // tsc writes static imports at the start of a line (a rewritten path in double quotes).
    for (const match of text.matchAll(/^(?:import|export)\b[^;]*?\sfrom\s*(["'])([^"']+)\1;|^import\s*(["'])([^"']+)\3;|\bimport\(\s*(["'])([^"']+)\5\s*\)/gm)) {
      const specifier = match[2] ?? match[4] ?? match[6]!;
      if (specifier.startsWith('.')) {
        t.false(specifier.endsWith('.ts'), `dist/${file} imports ${specifier}`);
        continue;
      }
      if (builtins.has(specifier)) continue;
      seen.add(specifier);
      const name = specifier.startsWith('@') ? specifier.split('/').slice(0, 2).join('/') : specifier.split('/')[0]!;
      t.truthy(pkg.dependencies[name], `dist/${file} imports ${name}, which is not in dependencies`);
    }
  }
  t.true(seen.has('koa') && seen.has('level'), 'the import scan finds the bare imports');
  t.falsy(pkg.dependencies.tsx);
  t.falsy(pkg.dependencies.typescript);
});

test('bin, npm start and the systemd unit run node on dist/cli/main.js; installing from a clone builds it', async (t) => {
  t.deepEqual(Object.values(pkg.bin), ['dist/cli/main.js']);
  t.regex(pkg.scripts.start ?? '', /^(exec )?node (--[\w-]+=\S+ )*dist\/cli\/main\.js serve$/);
  t.regex(pkg.scripts.prepare ?? '', /npm run build/);
  t.regex(await readFile(path.join(ROOT, 'systemd', 'modelferry.service'), 'utf8'), /^ExecStart=\S*node \/opt\/modelferry\/dist\/cli\/main\.js serve /m);
  t.regex((await readFile(path.join(ROOT, 'dist', 'cli', 'main.js'), 'utf8')).split('\n')[0]!, /^#!\/usr\/bin\/env node$/);
});

test('npm run build leaves dist/cli/main.js executable, so npx modelferry runs it after a rebuild', async (t) => {
  // npm test builds before it runs the tests: this is the file that build wrote.
  t.is((await stat(path.join(ROOT, 'dist', 'cli', 'main.js'))).mode & 0o755, 0o755);
  const { stdout } = await run(path.join(ROOT, 'dist', 'cli', 'main.js'), ['--version']);
  t.regex(stdout, /^modelferry \d+\.\d+\.\d+/);
});

test('the npm pack tarball holds dist/, the default config, the unit and the docs the README links to, and no sources or tests', async (t) => {
  const { stdout } = await run('npm', ['pack', '--dry-run', '--json', '--ignore-scripts'], { cwd: ROOT, env: cleanEnv() });
  const files = new Set((JSON.parse(stdout) as Array<{ files: Array<{ path: string }> }>)[0]!.files.map((f) => f.path));
  for (const needed of ['dist/cli/main.js', 'dist/gateway.js', 'config/default.yaml', 'systemd/modelferry.service', 'package.json', 'README.md', 'docs/design.md', 'docs/operations.md']) {
    t.true(files.has(needed), needed);
  }
  t.deepEqual([...files].filter((file) => /^(daemon|test|bench)\//.test(file)), []);
});

test('plain node runs the built gateway: it starts on the embedded default and answers', async (t) => {
  const dir = await tempDir(t);
  const port = await freePort();
  const child = spawn(process.execPath, [path.join(ROOT, 'dist', 'cli', 'main.js'), 'serve', '--host', '127.0.0.1', '--port', String(port), '--no-mdns'], {
    cwd: dir, env: cleanEnv(), stdio: ['ignore', 'pipe', 'pipe'],
  });
  const exited = new Promise<number | null>((resolve) => child.once('exit', resolve));
  t.teardown(async () => {
    if (child.exitCode === null) child.kill('SIGKILL');
    await exited;
  });
  let health: Response | undefined;
  for (let i = 0; i < 200 && !health && child.exitCode === null; i++) {
    health = await fetch(`http://127.0.0.1:${port}/healthz`).catch(() => undefined);
    if (!health) await new Promise((resolve) => setTimeout(resolve, 50));
  }
  t.is(health?.status, 200);
  const poll = await fetch(`http://127.0.0.1:${port}/v1/devices/aa:bb:cc:dd:ee:ff/model`);
  t.is(poll.status, 404);
  t.is((await poll.json() as { error: string }).error, 'no_assignment');
  child.kill('SIGTERM');
  t.is(await exited, 0);
});
