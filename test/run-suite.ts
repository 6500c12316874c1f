import { spawn } from 'node:child_process';
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';

// `npm test` after the type check and the build: every test through ava, then one line
// saying what was skipped for want of a system tool and the one command that installs
// them all. ava's own exit status is the run's.

const dir = mkdtempSync(path.join(tmpdir(), 'modelferry-skips-'));
const log = path.join(dir, 'skips.jsonl');
writeFileSync(log, '');

const ava = spawn(process.execPath, [path.join('node_modules', 'ava', 'entrypoints', 'cli.mjs'), ...process.argv.slice(2)], {
  stdio: 'inherit',
  env: { ...process.env, MODELFERRY_SKIP_LOG: log },
});
const code = await new Promise<number>((resolve) => ava.on('close', (status, signal) => resolve(status ?? (signal ? 1 : 0))));

type Need = { name: string; packages: string[] };
const skips = readFileSync(log, 'utf8').split('\n').filter(Boolean).map((line) => JSON.parse(line) as { title: string; needs: Need[] });
rmSync(dir, { recursive: true, force: true });
if (skips.length > 0) {
  // Per missing requirement: how many tests it held back, and what brings it.
  const held = new Map<string, { tests: number; packages: string[] }>();
  for (const { needs } of skips) {
    for (const { name, packages } of needs) {
      const entry = held.get(name) ?? { tests: 0, packages };
      entry.tests++;
      held.set(name, entry);
    }
  }
  const parts = [...held].sort((a, b) => b[1].tests - a[1].tests)
    .map(([name, { tests, packages }]) => `${name} ${tests} (${packages.length > 0 ? packages.join(' ') : 'run as root'})`);
  console.log(`\nskipped ${skips.length} tests whose tools are missing here, by what each lacks: ${parts.join(', ')}`);
  console.log('install them all with: sudo scripts/install-system-deps.sh');
}
process.exit(code);
