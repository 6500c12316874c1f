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

const skips = readFileSync(log, 'utf8').split('\n').filter(Boolean).map((line) => JSON.parse(line) as { reason: string; packages: string[] });
rmSync(dir, { recursive: true, force: true });
if (skips.length > 0) {
  const packages = [...new Set(skips.flatMap((skip) => skip.packages))].sort();
  const reasons = [...new Set(skips.map((skip) => skip.reason))];
  console.log(`\nskipped ${skips.length} tests for want of system tools: ${reasons.join('; ')}`);
  console.log(`install them all with: sudo scripts/install-system-deps.sh${packages.length > 0 ? ` (${packages.join(' ')})` : ''}`);
}
process.exit(code);
