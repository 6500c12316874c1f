import { readFileSync } from 'node:fs';
import { fileURLToPath } from 'node:url';
import test from 'ava';
import { allRequiredPackages } from '../helpers/requirements.ts';

// The one command a skip message names installs everything any skip asks for.

const SCRIPT = fileURLToPath(new URL('../../scripts/install-system-deps.sh', import.meta.url));

test('scripts/install-system-deps.sh installs every Debian package a skipped test can name', (t) => {
  const script = readFileSync(SCRIPT, 'utf8');
  const list = /^packages=\(([\s\S]*?)^\)/m.exec(script);
  t.truthy(list, 'the script has one packages=( ... ) list');
  const listed = new Set(list![1]!.split('\n').map((line) => line.replace(/#.*/, '')).join(' ').split(/\s+/).filter(Boolean));
  t.deepEqual(allRequiredPackages().filter((name) => !listed.has(name)), []);
});
