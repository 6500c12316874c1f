import { execFileSync } from 'node:child_process';
import { existsSync, readFileSync, readdirSync, statSync } from 'node:fs';
import path from 'node:path';
import test from 'ava';
import { fileURLToPath } from 'node:url';

// A clone documents itself: every relative link in the documents resolves to a file (and a
// section, when it names one) in the checkout, and nothing points outside it or cites the
// tracker instead of saying the thing.

const ROOT = fileURLToPath(new URL('../..', import.meta.url));

const DOCUMENTS = [
  'README.md',
  ...readdirSync(path.join(ROOT, 'docs')).filter((name) => name.endsWith('.md')).map((name) => `docs/${name}`),
  'firmware/README.md',
];

/** The text outside fenced code blocks, with inline code spans blanked (same length). */
function prose(text: string): string {
  return text
    .replace(/^(`{3,}|~{3,})[^\n]*\n[\s\S]*?^\1[^\n]*$/gm, (block) => block.replace(/[^\n]/g, ' '))
    .replace(/`[^`\n]*`/g, (span) => ' '.repeat(span.length));
}

/** Inline links `[text](target)`; the text may span lines. */
function linksOf(text: string): string[] {
  return [...prose(text).matchAll(/\[[^\]]*\]\(([^)\s]+)\)/g)].map((match) => match[1]!);
}

/** Anchors GitHub gives the headings of a Markdown file (headings in code blocks are not). */
function anchorsOf(text: string): Set<string> {
  const anchors = new Set<string>();
  const seen = new Map<string, number>();
  const blanked = prose(text).split('\n');
  text.split('\n').forEach((line, i) => {
    const heading = /^#{1,6} +(.+?) *$/.exec(blanked[i]!.startsWith('#') ? line : '')?.[1];
    if (heading === undefined) return;
    // As rendered: code spans keep their text, links their label; punctuation goes.
    const slug = heading.replace(/\[([^\]]*)\]\([^)]*\)/g, '$1').toLowerCase()
      .replace(/[^\p{L}\p{N}\p{M}\s_-]/gu, '').replace(/\s/g, '-');
    const count = seen.get(slug) ?? 0;
    seen.set(slug, count + 1);
    anchors.add(count === 0 ? slug : `${slug}-${count}`);
  });
  return anchors;
}

const isRelative = (target: string) => !/^[a-z][a-z0-9+.-]*:/i.test(target) && !target.startsWith('//');

test('every relative link in README.md, docs/ and firmware/README.md resolves to a file and section in the checkout', (t) => {
  const broken: string[] = [];
  for (const document of DOCUMENTS) {
    const text = readFileSync(path.join(ROOT, document), 'utf8');
    for (const target of linksOf(text).filter(isRelative)) {
      const [file, anchor] = target.split('#', 2) as [string, string | undefined];
      const resolved = file === '' ? path.join(ROOT, document) : path.resolve(path.dirname(path.join(ROOT, document)), decodeURI(file));
      if (!resolved.startsWith(ROOT) || !existsSync(resolved)) {
        broken.push(`${document}: ${target} (no such file in the checkout)`);
        continue;
      }
      if (anchor && resolved.endsWith('.md') && statSync(resolved).isFile()
        && !anchorsOf(readFileSync(resolved, 'utf8')).has(anchor)) {
        broken.push(`${document}: ${target} (no such section)`);
      }
    }
  }
  t.deepEqual(broken, []);
});

test('the documents cite no issue numbers', (t) => {
  const citing = DOCUMENTS.flatMap((document) => readFileSync(path.join(ROOT, document), 'utf8').split('\n')
    .map((line, i) => ({ line, where: `${document}:${i + 1}` }))
    .filter(({ line }) => /\bissues? #?[0-9]+/i.test(line))
    .map(({ where, line }) => `${where}: ${line.trim()}`));
  t.deepEqual(citing, [], 'say what the issue asked for instead of its number');
});

test('no tracked file refers to the folder beside the checkout', (t) => {
  const outside = ['..', 'shared'].join('/');
  const tracked = execFileSync('git', ['ls-files', '-z'], { cwd: ROOT, encoding: 'utf8' }).split('\0').filter(Boolean);
  const referring = tracked.filter((file) => existsSync(path.join(ROOT, file))
    && readFileSync(path.join(ROOT, file), 'latin1').includes(outside));
  t.deepEqual(referring, [], `users have no ${outside}: the repository must not read or link it`);
});

test('every citation of a section (docs/<file>.md "<title>") in a tracked file names a section that exists', (t) => {
  const tracked = execFileSync('git', ['ls-files', '-z'], { cwd: ROOT, encoding: 'utf8' }).split('\0')
    .filter((file) => /\.(ts|mjs|js|c|h|md|ya?ml|sh|txt)$|^\.ci\/run$/.test(file) && existsSync(path.join(ROOT, file)));
  const anchors = new Map<string, Set<string>>();
  const sectionsOf = (document: string) => {
    if (!anchors.has(document)) anchors.set(document, anchorsOf(readFileSync(path.join(ROOT, document), 'utf8')));
    return anchors.get(document)!;
  };
  const unknown: string[] = [];
  let cited = 0;
  for (const file of tracked) {
    const text = readFileSync(path.join(ROOT, file), 'utf8');
    for (const match of text.matchAll(/(?<![\w/.])((?:docs\/[a-z-]+|firmware\/README|README)\.md),? "([^"]{1,100})"/g)) {
      // A title may wrap onto the next comment line.
      const title = match[2]!.replace(/\s*\n\s*(?:\/\/|\*|#)?\s*/g, ' ');
      const document = match[1]!;
      cited++;
      if (!existsSync(path.join(ROOT, document)) || !sectionsOf(document).has([...anchorsOf(`# ${title}`)][0]!)) {
        unknown.push(`${file}: ${document} "${title}"`);
      }
    }
  }
  t.true(cited > 20, 'citations were found');
  t.deepEqual(unknown, [], 'cite a section by its title as it stands in the document');
});

test('the link checker finds links, sections and code the way GitHub renders them', (t) => {
  const sample = [
    '# Title', '## Where blobs live', '### The service\'s user and its config', '## Host build and tests (what `npm test` runs)',
    '## Title', 'See [a](x.md) and [b\nc](y.md#z), not `[d](e.md)`.', '```sh', '# not a heading [f](g.md)', '```',
  ].join('\n');
  t.deepEqual(linksOf(sample), ['x.md', 'y.md#z']);
  t.deepEqual([...anchorsOf(sample)],
    ['title', 'where-blobs-live', 'the-services-user-and-its-config', 'host-build-and-tests-what-npm-test-runs', 'title-1']);
});
