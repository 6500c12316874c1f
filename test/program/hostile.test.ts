import test from 'ava';
import fc from 'fast-check';
import { Builder } from 'flatbuffers';
import { ProgramFormatError } from '../../daemon/program/program-error.ts';
import { readProgram } from '../../daemon/program/read-program.ts';
import { slots } from '../../daemon/program/slots.ts';
import { PROGRAM_LIMITS } from '../../daemon/program/verify.ts';
import { buildProgram } from '../helpers/program-builder.ts';
import { fixture } from '../helpers/programs.ts';

// Hostile and broken flatbuffers: every one is refused with a ProgramFormatError naming the
// problem, never another exception, and always promptly (a hang fails by ava's timeout).

/** Where a field of the table at `table` lives (for crafting damage at known places). */
function field(bytes: Buffer, table: number, slot: number): number {
  const vtable = table - bytes.readInt32LE(table);
  const offset = bytes.readUInt16LE(vtable + 4 + 2 * slot);
  if (offset === 0) throw new Error(`slot ${slot} is absent`);
  return table + offset;
}
const deref = (bytes: Buffer, at: number) => at + bytes.readUInt32LE(at);
const root = (bytes: Buffer) => bytes.readUInt32LE(0);
/** Position of the first execution plan and of its operators vector. */
function firstPlan(bytes: Buffer): number {
  const plans = deref(bytes, field(bytes, root(bytes), slots.Program.execution_plan));
  return deref(bytes, plans + 4);
}

function refusal(t: import('ava').ExecutionContext, bytes: Buffer, pattern: RegExp): void {
  const error = t.throws(() => readProgram(bytes), { instanceOf: ProgramFormatError });
  t.regex(error?.message ?? '', pattern);
}

const sample = () => buildProgram({
  methods: [
    { name: 'forward', operators: ['aten::add.out', 'aten::mul.out'], delegates: ['XnnpackBackend'], bufferSizes: [0, 4096] },
    { name: 'second', operators: ['aten::sub.out'] },
  ],
});

test('every truncation of the fixtures is refused', (t) => {
  for (const name of ['add.pte', 'mul.pte'] as const) {
    const whole = fixture(name);
    for (let length = 0; length < whole.length; length++) {
      t.throws(() => readProgram(whole.subarray(0, length)), { instanceOf: ProgramFormatError }, `${name} cut at ${length}`);
    }
  }
});

test('a root offset outside the buffer is refused', (t) => {
  for (const offset of [0, 4, 0x7fffffff, 0xffffffff, 1069]) {
    const bytes = Buffer.from(fixture('add.pte'));
    bytes.writeUInt32LE(offset, 0);
    t.throws(() => readProgram(bytes), { instanceOf: ProgramFormatError }, `root offset ${offset}`);
  }
});

test('offsets out of range inside tables are refused, naming where', (t) => {
  const bytes = sample();
  const plan = firstPlan(bytes);
  const operators = field(bytes, plan, slots.ExecutionPlan.operators);
  bytes.writeUInt32LE(bytes.length, operators);
  refusal(t, bytes, /^program\.execution_plan\[0\]\.operators: an offset at byte \d+ points to byte \d+, outside/);

  const other = sample();
  const name = field(other, firstPlan(other), slots.ExecutionPlan.name);
  other.writeUInt32LE(0x80000000, name);
  refusal(t, other, /execution_plan\[0\]\.name: an offset .* outside/);
});

test('a field table (vtable) outside the buffer, or of an impossible size, is refused', (t) => {
  const far = sample();
  far.writeInt32LE(-0x10000000, firstPlan(far));
  refusal(t, far, /execution_plan\[0\]: the table at byte \d+ has its field table \(vtable\) outside the buffer/);

  const odd = sample();
  const plan = firstPlan(odd);
  odd.writeUInt16LE(7, plan - odd.readInt32LE(plan));
  refusal(t, odd, /impossible size 7/);

  const wide = sample();
  const plan2 = firstPlan(wide);
  const vtable = plan2 - wide.readInt32LE(plan2);
  wide.writeUInt16LE(wide.readUInt16LE(vtable + 2), vtable + 4 + 2 * slots.ExecutionPlan.operators);
  refusal(t, wide, /field operators of the table at byte \d+ lies outside the table/);
});

test('cycles cannot be expressed: backward and self-pointing offsets are refused', (t) => {
  // An operator entry pointing back at the program's root table (a cycle for a reader that
  // follows int32 offsets as the flatbuffers runtime does), and one pointing at itself.
  const back = sample();
  const operators = deref(back, field(back, firstPlan(back), slots.ExecutionPlan.operators));
  back.writeUInt32LE((root(back) - (operators + 4)) >>> 0, operators + 4);
  refusal(t, back, /operators\[0\]: an offset at byte \d+ points to byte \d+, outside/);

  const self = sample();
  const operators2 = deref(self, field(self, firstPlan(self), slots.ExecutionPlan.operators));
  self.writeUInt32LE(0, operators2 + 4);
  refusal(t, self, /operators\[0\]: an offset at byte \d+ points to byte \d+, outside/);

  // The plan list's second entry pointing back at the first plan's vector.
  const loop = sample();
  const plans = deref(loop, field(loop, root(loop), slots.Program.execution_plan));
  loop.writeUInt32LE((plans - (plans + 8)) >>> 0, plans + 8);
  refusal(t, loop, /execution_plan\[1\]: an offset .* outside/);
});

test('huge vector lengths and strings are refused before anything is allocated', (t) => {
  for (const length of [0xffffffff, 0x40000000, 5000]) {
    const bytes = sample();
    const operators = deref(bytes, field(bytes, firstPlan(bytes), slots.ExecutionPlan.operators));
    bytes.writeUInt32LE(length, operators);
    refusal(t, bytes, length > PROGRAM_LIMITS.operatorsPerMethod ? /a list of \d+ elements is more than the 4096 allowed/ : /runs past the end/);
  }
  const values = sample();
  const valueVector = deref(values, field(values, firstPlan(values), slots.ExecutionPlan.values));
  values.writeUInt32LE(100_000, valueVector);
  refusal(t, values, /values: a list of 100000 elements at byte \d+ runs past the end/);

  const text = sample();
  const name = deref(text, field(text, firstPlan(text), slots.ExecutionPlan.name));
  text.writeUInt32LE(0xfffffff0, name);
  refusal(t, text, /name: a string of 4294967280 bytes is longer than the 1024 allowed/);
  text.writeUInt32LE(200, name);
  refusal(t, text, /name: a string of 200 bytes at byte \d+ (runs past the end|is not terminated)|not terminated/);
});

test('more methods or operators than the limits allow are refused', (t) => {
  const methods = Array.from({ length: PROGRAM_LIMITS.methods + 1 }, (_, i) => ({ name: `m${i}` }));
  refusal(t, buildProgram({ methods }), /^program\.execution_plan: a list of 65 elements is more than the 64 allowed/);
  const operators = Array.from({ length: PROGRAM_LIMITS.operatorsPerMethod + 1 }, (_, i) => `x::op${i}.out`);
  refusal(t, buildProgram({ methods: [{ name: 'forward', operators }] }), /operators: a list of 4097 elements is more than the 4096 allowed/);
  t.notThrows(() => readProgram(buildProgram({ methods: [{ name: 'forward', operators: operators.slice(1) }] })));
});

test('shared structure that multiplies the work runs out of budget', (t) => {
  // Every reference points forward, as the format allows, but one operator table is listed
  // 4,000 times by one method, and that method 64 times by the program: 768,000 visits
  // from a file of about 17 KB. Refused by the budget, not walked.
  const b = new Builder(1024);
  const name = b.createString('aten::add');
  const overload = b.createString('out');
  b.startObject(2);
  b.addFieldOffset(slots.Operator.name, name, 0);
  b.addFieldOffset(slots.Operator.overload, overload, 0);
  const operator = b.endObject();
  b.startVector(4, 4000, 4);
  for (let i = 0; i < 4000; i++) b.addOffset(operator);
  const operators = b.endVector();
  b.startObject(9);
  b.addFieldOffset(slots.ExecutionPlan.operators, operators, 0);
  const plan = b.endObject();
  b.startVector(4, 64, 4);
  for (let i = 0; i < 64; i++) b.addOffset(plan);
  const plans = b.endVector();
  b.startObject(6);
  b.addFieldOffset(slots.Program.execution_plan, plans, 0);
  b.finish(b.endObject(), 'ET12');
  const bytes = Buffer.from(b.asUint8Array());
  t.true(bytes.length < 20_000);
  refusal(t, bytes, /refers to more objects than its size allows/);
});

test('values, sizes and segments that make no sense are refused', (t) => {
  refusal(t, buildProgram({ methods: [{ name: 'forward', bufferSizes: [0, -5n] }] }), /non_const_buffer_sizes\[1\]: a negative size -5/);
  refusal(t, buildProgram({ methods: [{ name: 'forward', bufferSizes: [0, 2n ** 62n] }] }), /non_const_buffer_sizes\[1\]: 4611686018427387904 is beyond any real size/);
  refusal(t, buildProgram({ methods: [{ name: 'forward', bufferSizes: [0, 2n ** 52n, 2n ** 52n] }] }), /planned memory does not fit/);

  const bytes = sample();
  const inputs = deref(bytes, field(bytes, firstPlan(bytes), slots.ExecutionPlan.inputs));
  bytes.writeInt32LE(1000, inputs + 4);
  refusal(t, bytes, /execution_plan\[0\]\.inputs\[0\]: value index 1000 is outside the method's 2 values/);
  bytes.writeInt32LE(-1, inputs + 4);
  refusal(t, bytes, /value index -1/);

  // Segment data needs an extended header saying where segments start.
  const segmented = buildProgram({ methods: [{ name: 'forward' }], segments: [Buffer.alloc(64)] });
  const withoutHeader = Buffer.from(segmented);
  withoutHeader.write('xxxx', 8, 'latin1');
  refusal(t, withoutHeader, /segments\[0\]: 64 bytes of segment data, but no extended header/);
  refusal(t, segmented.subarray(0, segmented.length - 16), /eh00|segments\[0\]/);
});

test('random damage to real and built programs is refused or read, never anything else', (t) => {
  const originals = [fixture('add.pte'), fixture('mul.pte'), sample(), buildProgram({ methods: [{ name: 'forward' }], segments: [Buffer.alloc(40)], constantSegment: 0 })];
  fc.assert(fc.property(
    fc.integer({ min: 0, max: originals.length - 1 }),
    fc.array(fc.tuple(fc.nat(), fc.integer({ min: 0, max: 255 })), { minLength: 1, maxLength: 8 }),
    (which, edits) => {
      const bytes = Buffer.from(originals[which]!);
      for (const [at, value] of edits) bytes[at % bytes.length] = value;
      try {
        const program = readProgram(bytes);
        return Array.isArray(program.methods) && Number.isSafeInteger(program.requires.arenaBytes);
      } catch (error) {
        return error instanceof ProgramFormatError;
      }
    },
  ), { numRuns: 3000, seed: 9 });
  t.pass();
});

test('random bytes after a valid identifier are refused or read, never anything else', (t) => {
  fc.assert(fc.property(fc.uint8Array({ minLength: 8, maxLength: 600 }), (random) => {
    const bytes = Buffer.from(random);
    bytes.write('ET12', 4, 'latin1');
    try {
      readProgram(bytes);
      return true;
    } catch (error) {
      return error instanceof ProgramFormatError;
    }
  }), { numRuns: 3000, seed: 11 });
  t.pass();
});
