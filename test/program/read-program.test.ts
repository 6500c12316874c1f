import test from 'ava';
import { readProgram } from '../../daemon/program/read-program.ts';
import { buildProgram } from '../helpers/program-builder.ts';
import { fixture } from '../helpers/programs.ts';

// What the inspector extracts. The fixtures are described in test/fixtures/pte/README.md.

const scalarTensor = (shape: number[]) => ({ kind: 'tensor', scalarType: 'float32', dynamism: 'static', shape });

test('add.pte: one method forward, aten::add.out, 48 bytes of planned memory, one empty segment', (t) => {
  t.deepEqual(readProgram(fixture('add.pte')), {
    identifier: 'ET12',
    schemaVersion: 0,
    programBytes: 1072,
    extendedHeader: false,
    methods: [{
      name: 'forward',
      operators: ['aten::add.out'],
      delegates: [],
      plannedMemory: { bufferSizes: [0, 48], arenaBytes: 48 },
      inputs: [scalarTensor([1]), scalarTensor([1])],
      outputs: [scalarTensor([1])],
    }],
    constantDataBytes: 0,
    segments: { count: 1, sizes: [0] },
    requires: { operators: ['aten::add.out'], delegates: [], arenaBytes: 48 },
  });
});

test('mul.pte: one method forward, aten::mul.out on 3x2 tensors, 96 bytes of planned memory, no segments', (t) => {
  t.deepEqual(readProgram(fixture('mul.pte')), {
    identifier: 'ET12',
    schemaVersion: 0,
    programBytes: 1032,
    extendedHeader: false,
    methods: [{
      name: 'forward',
      operators: ['aten::mul.out'],
      delegates: [],
      plannedMemory: { bufferSizes: [0, 96], arenaBytes: 96 },
      inputs: [scalarTensor([3, 2]), scalarTensor([3, 2])],
      outputs: [scalarTensor([3, 2])],
    }],
    constantDataBytes: 0,
    segments: { count: 0, sizes: [] },
    requires: { operators: ['aten::mul.out'], delegates: [], arenaBytes: 96 },
  });
});

test('several methods, a delegate and a big memory plan: per method, and what the program requires in all', (t) => {
  const program = readProgram(buildProgram({
    version: 3,
    methods: [
      { name: 'forward', operators: ['aten::add.out', 'aten::mul.out', 'aten::add.out'], delegates: ['XnnpackBackend'], bufferSizes: [0, 1000, 24] },
      { name: 'encode', operators: ['aten::mul.out', 'quantized_decomposed::quantize_per_tensor.out'], bufferSizes: [512, 3n * 2n ** 32n] },
      { name: 'reset', operators: [], bufferSizes: [] },
    ],
  }));
  t.is(program.schemaVersion, 3);
  t.deepEqual(program.methods.map((m) => m.name), ['forward', 'encode', 'reset']);
  t.deepEqual(program.methods[0]!.operators, ['aten::add.out', 'aten::mul.out'], 'repeats are dropped, order kept');
  t.deepEqual(program.methods[0]!.delegates, ['XnnpackBackend']);
  t.deepEqual(program.methods[0]!.plannedMemory, { bufferSizes: [0, 1000, 24], arenaBytes: 1024 });
  // Index 0 is reserved: whatever it says is not part of the arena.
  t.deepEqual(program.methods[1]!.plannedMemory, { bufferSizes: [512, 12884901888], arenaBytes: 12884901888 });
  t.deepEqual(program.methods[2]!.plannedMemory, { bufferSizes: [], arenaBytes: 0 });
  t.deepEqual(program.requires, {
    operators: ['aten::add.out', 'aten::mul.out', 'quantized_decomposed::quantize_per_tensor.out'],
    delegates: ['XnnpackBackend'],
    arenaBytes: 12884901888,
  });
});

test('operators without an overload are named without a dot', (t) => {
  const program = readProgram(buildProgram({ methods: [{ name: 'forward', operators: ['aten::relu', 'my_ops::fused.default'] }] }));
  t.deepEqual(program.methods[0]!.operators, ['aten::relu', 'my_ops::fused.default']);
});

test('input and output types and shapes: static, bounded, unbound, other kinds of values', (t) => {
  const program = readProgram(buildProgram({
    methods: [{
      name: 'forward',
      inputs: [{ scalarType: 0, sizes: [1, 16000] }, { scalarType: 4, sizes: [8, 4], dynamism: 1 }, { scalarType: 15, sizes: [9], dynamism: 2 }, 'int', { scalarType: 99, sizes: [] }],
      outputs: [{ scalarType: 11, sizes: [1] }],
    }],
  }));
  t.deepEqual(program.methods[0]!.inputs, [
    { kind: 'tensor', scalarType: 'uint8', dynamism: 'static', shape: [1, 16000] },
    { kind: 'tensor', scalarType: 'int64', dynamism: 'dynamic_bound', shape: [8, 4] },
    { kind: 'tensor', scalarType: 'bfloat16', dynamism: 'dynamic_unbound', shape: null },
    { kind: 'int' },
    { kind: 'tensor', scalarType: 'unknown(99)', dynamism: 'static', shape: [] },
  ]);
  t.deepEqual(program.methods[0]!.outputs, [{ kind: 'tensor', scalarType: 'bool', dynamism: 'static', shape: [1] }]);
});

test('segments behind an extended header, and constant data inline and in the constant segment', (t) => {
  const bytes = buildProgram({
    methods: [{ name: 'forward', operators: ['aten::linear.out'] }],
    constantBuffers: [0, 64, 100],
    segments: [Buffer.alloc(5000, 7), Buffer.alloc(300, 9)],
    constantSegment: 0,
  });
  const program = readProgram(bytes);
  t.true(program.extendedHeader);
  t.is(program.programBytes, bytes.readUInt32LE(16));
  t.deepEqual(program.segments, { count: 2, sizes: [5000, 300] });
  t.is(program.constantDataBytes, 164 + 5000);
});

test('the file identifier is reported as found', (t) => {
  t.is(readProgram(buildProgram({ identifier: 'ET13', methods: [{ name: 'forward' }] })).identifier, 'ET13');
});
