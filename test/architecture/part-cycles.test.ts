import { fileURLToPath } from 'node:url';
import test from 'ava';
import { COMPOSITION_ROOT, SHARED_LEAVES, describeCycle, importsOf, partCycles, partOf, sourcesUnder } from './part-graph.ts';

// Parts get only what they need, and no part imports a part that imports it back, type-only
// imports included: a cycle between parts means neither can be understood, tested or changed
// without the other (madge --circular sees cycles between files only). How the parts are
// wired is the composition root's business (daemon/gateway.ts).

const daemon = fileURLToPath(new URL('../../daemon/', import.meta.url));

test('no part imports a part that imports it back', async (t) => {
  const cycles = partCycles(importsOf(await sourcesUnder(daemon)));
  t.deepEqual(cycles.map(describeCycle), [], `cycles between parts:\n${cycles.map(describeCycle).join('\n')}`);
});

test('every file at the top of daemon/ is the composition root or a shared leaf, and a shared leaf imports no part', async (t) => {
  const sources = await sourcesUnder(daemon);
  const topLevel = [...sources.keys()].filter((file) => !file.includes('/'));
  t.deepEqual(topLevel.filter((file) => !COMPOSITION_ROOT.has(file) && !SHARED_LEAVES.has(file)), [], 'declare it in test/architecture/part-graph.ts, or move it into a part');
  const leafImports = importsOf(sources).filter(({ file, target }) => SHARED_LEAVES.has(file) && !SHARED_LEAVES.has(partOf(target)));
  t.deepEqual(leafImports, [], 'a shared leaf that imports a part is not a leaf');
});

test('the composition root is imported by no part but the command line', async (t) => {
  const importers = importsOf(await sourcesUnder(daemon)).filter(({ file, target }) => COMPOSITION_ROOT.has(target) && partOf(file) !== 'cli');
  t.deepEqual(importers, []);
});

test('the check sees a cycle made of a type-only import and a dynamic one, and names the imports', (t) => {
  const sources = new Map([
    ['store/blobs.ts', "import type { Catalog } from '../catalog/catalog.ts';\n"],
    ['catalog/catalog.ts', "import { x } from './types.ts';\nexport async function f() { return import('../devices/registry.ts'); }\n"],
    ['catalog/types.ts', ''],
    ['devices/registry.ts', "export type B = import('../store/blobs.ts').B;\n"],
    ['signing/trust.ts', "import { errors } from '../errors.ts';\n"],
    // A second cycle in the same group: reported once, with the whole group.
    ['devices/poll.ts', "import { Catalog } from '../catalog/catalog.ts';\n"],
  ]);
  const cycles = partCycles(importsOf(sources));
  t.is(cycles.length, 1);
  t.deepEqual(cycles[0]!.group, ['catalog', 'devices', 'store']);
  t.is(describeCycle(cycles[0]!), [
    'catalog → devices → catalog (one of the cycles among catalog, devices, store)',
    '  daemon/catalog/catalog.ts imports daemon/devices/registry.ts',
    '  daemon/devices/poll.ts imports daemon/catalog/catalog.ts',
  ].join('\n'));
});
