import { testNeeding } from '../helpers/requirements.ts';
import { execFileSync } from 'node:child_process';
import { mkdtemp, readFile, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { readProgram } from '../../daemon/program/read-program.ts';
import { scalarTypes, slots, valueKinds } from '../../daemon/program/slots.ts';
import { buildProgram } from '../helpers/program-builder.ts';
import { fixture } from '../helpers/programs.ts';

// The hand-written reader against flatc (Debian's flatbuffers-compiler): flatc compiles
// our program.fbs, so the slot numbers the reader uses must be the ones flatc assigns, and
// flatc decodes the fixtures and built programs with it, independently of our reader.

const test = testNeeding('flatc');

const SCHEMA = fileURLToPath(new URL('../../daemon/program/program.fbs', import.meta.url));

async function tempDir(t: import('ava').ExecutionContext): Promise<string> {
  const dir = await mkdtemp(path.join(tmpdir(), 'mf-fbs-'));
  t.teardown(() => rm(dir, { recursive: true, force: true }));
  return dir;
}

const camel = (snake: string) => snake.replace(/(^|_)([a-z])/g, (_, __, c: string) => c.toUpperCase());
const kebab = (name: string) => name.replace(/([a-z])([A-Z])/g, '$1-$2').toLowerCase();

test('the slots in slots.ts are the ones flatc assigns from program.fbs', async (t) => {
  const dir = await tempDir(t);
  execFileSync('flatc', ['--ts', '-o', dir, SCHEMA]);
  const generated = path.join(dir, 'modelferry', 'executorch');
  for (const [table, fields] of Object.entries(slots)) {
    const source = await readFile(path.join(generated, `${kebab(table).replace('e-value', 'evalue')}.ts`), 'utf8');
    for (const [field, slot] of Object.entries(fields)) {
      const match = new RegExp(`static add${camel(field)}\\(builder[^)]*\\) \\{\\s*builder\\.add\\w+\\((\\d+),`).exec(source);
      t.truthy(match, `${table}.${field} has a builder in flatc's output`);
      t.is(Number(match?.[1]), slot, `${table}.${field}`);
    }
  }
  const union = await readFile(path.join(generated, 'value.ts'), 'utf8');
  t.regex(union, new RegExp(`Tensor = ${valueKinds.indexOf('tensor')}`));
  t.regex(union, new RegExp(`OptionalTensorListValue = ${valueKinds.indexOf('optional_tensor_list')}`));
  const scalar = await readFile(path.join(generated, 'scalar-type.ts'), 'utf8');
  for (const [code, name] of Object.entries(scalarTypes)) t.regex(scalar, new RegExp(`${name.toUpperCase()} = ${code}\\b`));
});

/** flatc's own reading of a .pte with our schema. */
async function flatcJson(dir: string, name: string, bytes: Buffer): Promise<any> {
  const file = path.join(dir, `${name}.pte`);
  await writeFile(file, bytes);
  execFileSync('flatc', ['--json', '--strict-json', '--raw-binary', '-o', dir, SCHEMA, '--', file]);
  return JSON.parse(await readFile(path.join(dir, `${name}.json`), 'utf8'));
}

test('flatc and the reader agree on the fixtures and on built programs', async (t) => {
  const dir = await tempDir(t);
  const programs: Record<string, Buffer> = {
    add: fixture('add.pte'),
    mul: fixture('mul.pte'),
    built: buildProgram({
      version: 7,
      methods: [
        { name: 'forward', operators: ['aten::conv2d.out', 'aten::relu.out'], delegates: ['XnnpackBackend'], bufferSizes: [0, 4096, 512], inputs: [{ sizes: [1, 3, 32, 32] }] },
        { name: 'encode', operators: ['aten::linear.out'], bufferSizes: [0, 2n ** 33n], inputs: [{ sizes: [8], scalarType: 4 }] },
      ],
      segments: [Buffer.alloc(100, 1)],
      constantSegment: 0,
    }),
  };
  for (const [name, bytes] of Object.entries(programs)) {
    const theirs = await flatcJson(dir, name, bytes);
    const ours = readProgram(bytes);
    t.is(ours.schemaVersion, theirs.version ?? 0, name);
    t.is(ours.segments.count, (theirs.segments ?? []).length, name);
    t.deepEqual(ours.methods.map((m) => m.name), theirs.execution_plan.map((p: any) => p.name), name);
    theirs.execution_plan.forEach((plan: any, i: number) => {
      const method = ours.methods[i]!;
      t.deepEqual(method.operators, [...new Set((plan.operators ?? []).map((o: any) => o.overload ? `${o.name}.${o.overload}` : o.name))], name);
      t.deepEqual(method.delegates, (plan.delegates ?? []).map((d: any) => d.id), name);
      t.deepEqual(method.plannedMemory.bufferSizes, (plan.non_const_buffer_sizes ?? []).map(Number), name);
      t.deepEqual(method.inputs.map((v: any) => v.shape), plan.inputs.map((index: number) => plan.values[index].val.sizes), name);
      t.deepEqual(method.outputs.map((v: any) => v.shape), plan.outputs.map((index: number) => plan.values[index].val.sizes), name);
    });
  }
});
