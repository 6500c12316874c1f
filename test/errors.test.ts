import test from 'ava';
import { readdir, readFile } from 'node:fs/promises';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { ModelferryError, errorCatalogue, fail, type ErrorCode } from '../daemon/errors.ts';

// The error catalogue is the contract's list of error codes (docs/http-api.md "Errors").
// Guarded as fastify guards its own: no code is dead, none is missing from the table there,
// each can be thrown without a message at the call site.

const root = fileURLToPath(new URL('..', import.meta.url));
const codes = Object.keys(errorCatalogue) as ErrorCode[];

async function sourcesOf(dir: string): Promise<string[]> {
  const entries = await readdir(dir, { withFileTypes: true, recursive: true });
  return entries.filter((e) => e.isFile() && e.name.endsWith('.ts')).map((e) => path.join(e.parentPath, e.name));
}

test('every code in the catalogue is thrown or answered somewhere in daemon/', async (t) => {
  const texts = await Promise.all((await sourcesOf(path.join(root, 'daemon')))
    .filter((file) => path.basename(file) !== 'errors.ts')
    .map((file) => readFile(file, 'utf8')));
  const unused = codes.filter((code) => !texts.some((text) => text.includes(`'${code}'`)));
  t.deepEqual(unused, [], 'codes that nothing in daemon/ throws: remove them or throw them');
});

test('docs/http-api.md lists every code with its status, and no code the catalogue lacks', async (t) => {
  const table = await readFile(path.join(root, 'docs', 'http-api.md'), 'utf8');
  const listed = new Map([...table.matchAll(/^\| `([a-z_]+)` \| (\d{3}) \|/gm)].map((m) => [m[1]!, Number(m[2])]));
  for (const code of codes) t.is(listed.get(code), errorCatalogue[code].status, `docs/http-api.md row for ${code}`);
  t.deepEqual([...listed.keys()].filter((code) => !(code in errorCatalogue)), [], 'docs/http-api.md rows for codes that do not exist');
});

test('every code has a status in the 4xx or 5xx range and a default message', (t) => {
  for (const code of codes) {
    const { status, message } = errorCatalogue[code];
    t.true(status >= 400 && status <= 599, code);
    t.regex(message, /^\S.{9,}$/, code);
  }
});

test('fail without a message throws the code with its status and default message', (t) => {
  const error = t.throws(() => fail('in_use'), { instanceOf: ModelferryError });
  t.is(error?.code, 'in_use');
  t.is(error?.status, 409);
  t.is(error?.message, errorCatalogue.in_use.message);
});

test('fail with a message and headers keeps both', (t) => {
  const error = t.throws(() => fail('range_not_satisfiable', 'bytes 9-10 of 5', { 'Content-Range': 'bytes */5' }), { instanceOf: ModelferryError });
  t.is(error?.message, 'bytes 9-10 of 5');
  t.deepEqual(error?.headers, { 'Content-Range': 'bytes */5' });
  t.is(error?.status, 416);
});
