import test from 'ava';
import { checkCompatibility } from '../../daemon/devices/compatibility.ts';
import { capabilitiesSchema } from '../../daemon/contract/device-report.ts';
import { readProgram } from '../../daemon/program/read-program.ts';
import { buildProgram } from '../helpers/program-builder.ts';

// What a device needs to run a model against what its firmware reported.

const bytes = buildProgram({ methods: [
  { name: 'forward', operators: ['aten::conv2d.out', 'aten::relu.out'], delegates: ['XnnpackBackend'], bufferSizes: [0, 4000, 96] },
  { name: 'warmup', operators: ['aten::zeros.out'], bufferSizes: [0, 8000] },
] });
const model = { size: bytes.length, program: readProgram(bytes) };
const all = { operators: ['aten::conv2d.out', 'aten::relu.out', 'aten::zeros.out', 'aten::extra.out'], delegates: ['XnnpackBackend'] };

test('a device with every operator, delegate, arena byte and slot byte can run the model', (t) => {
  t.deepEqual(checkCompatibility(model, { ...all, arenaBytes: 8000, slotBytes: bytes.length }), { status: 'compatible' });
  // No arena or slot size reported: those are not judged.
  t.deepEqual(checkCompatibility(model, all), { status: 'compatible' });
});

test('each missing item is named; the arena is the largest method, not the sum', (t) => {
  const check = checkCompatibility(model, { operators: ['aten::relu.out'], delegates: [], arenaBytes: 7999, slotBytes: 10 });
  t.deepEqual(check, {
    status: 'incompatible',
    missing: {
      operators: ['aten::conv2d.out', 'aten::zeros.out'],
      delegates: ['XnnpackBackend'],
      arenaBytes: { needed: 8000, available: 7999 },
      slotBytes: { needed: bytes.length, available: 10 },
    },
    reasons: [
      'missing operator aten::conv2d.out',
      'missing operator aten::zeros.out',
      'missing delegate XnnpackBackend',
      'needs 8000 bytes of planned memory, the arena has 7999',
      `is ${bytes.length} bytes, the model slot holds 10`,
    ],
  });
});

test('unknown when the device never reported, or the model was never inspected (then only its size is judged)', (t) => {
  t.deepEqual(checkCompatibility(model, undefined), { status: 'unknown', reason: 'no capabilities reported' });
  t.deepEqual(checkCompatibility({ size: 100, program: null }, all), { status: 'unknown', reason: 'program not inspected' });
  t.like(checkCompatibility({ size: 100 }, { ...all, slotBytes: 99 }), { status: 'incompatible', reasons: ['is 100 bytes, the model slot holds 99'] });
});

test('an empty operator list and arenaBytes 0 are "not stated" and not judged; an empty delegate list is', (t) => {
  const check = checkCompatibility(model, { operators: [], delegates: [], arenaBytes: 0, slotBytes: 1 << 20 });
  t.like(check, { status: 'incompatible', reasons: ['missing delegate XnnpackBackend'] });
  t.deepEqual(checkCompatibility(model, { operators: [], delegates: ['XnnpackBackend'], arenaBytes: 0 }), { status: 'compatible' });
});

test('every capabilities field may be left out of a report: absent is judged exactly as an empty list or 0', (t) => {
  const cases: Array<[object, { operators: string[]; delegates: string[]; arenaBytes?: number }]> = [
    [{}, { operators: [], delegates: [] }],
    [{ operators: ['aten::relu.out'] }, { operators: ['aten::relu.out'], delegates: [] }],
    [{ delegates: ['XnnpackBackend'] }, { operators: [], delegates: ['XnnpackBackend'] }],
    [{ operators: all.operators, delegates: all.delegates }, { ...all, arenaBytes: 0 }],
  ];
  for (const [stated, explicit] of cases) {
    const parsed = capabilitiesSchema.safeParse(stated);
    t.true(parsed.success, JSON.stringify(stated));
    t.deepEqual(checkCompatibility(model, parsed.data), checkCompatibility(model, explicit), JSON.stringify(stated));
  }
});
