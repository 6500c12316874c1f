import { createCipheriv, createHash } from 'node:crypto';
import { buildProgram } from './program-builder.ts';

// Two versions of one model as a pipeline makes them, for delta tests and benchmarks: an
// ExecuTorch program (program-builder.ts) whose constant segment holds the weights, and the
// next version after one kind of change. Weights are seeded noise: as incompressible as
// trained float weights, and the same bytes on every run.

export const MODEL_CHANGES = ['fine-tuned head', 'two regions', 'full retrain', 're-export'] as const;
export type ModelChange = (typeof MODEL_CHANGES)[number];

const OPERATORS = ['aten::convolution.out', 'aten::relu.out', 'aten::linear.out', 'aten::add.out', 'aten::_softmax.out'];
/** What a re-export with a newer exporter adds: an operator early in the program, which shifts everything after it. */
const INSERTED_OPERATOR = 'quantized_decomposed::quantize_per_tensor.out';

/** `n` bytes of noise, the same for the same seed. */
export function seededBytes(n: number, seed: string): Buffer {
  const key = createHash('sha256').update(seed).digest().subarray(0, 16);
  return createCipheriv('aes-128-ctr', key, Buffer.alloc(16)).update(Buffer.alloc(n));
}

function program(weights: Buffer, operators: string[]): Buffer {
  return buildProgram({
    methods: [{ name: 'forward', operators, inputs: [{ sizes: [1, 16000] }], outputs: [{ sizes: [1, 12] }], bufferSizes: [0, 65536] }],
    segments: [weights],
    constantSegment: 0,
  });
}

/**
 * A program of about `size` bytes, and its next version after `change`:
 * - fine-tuned head: the last 2 % of the program (the weights of its last layer) are new;
 * - two regions: two stretches of 1 % each, at 30 % and 70 %, are new;
 * - full retrain: every weight is new;
 * - re-export: the same weights, behind a program that names one more operator early on,
 *   so every byte after it moves.
 */
export function modelVersions(size: number, change: ModelChange, seed = 'model'): { before: Buffer; after: Buffer } {
  const overhead = program(Buffer.alloc(0), OPERATORS).length;
  const weights = seededBytes(Math.max(16, size - overhead), `${seed} weights`);
  const before = program(weights, OPERATORS);
  const changed = Buffer.from(weights);
  const renew = (at: number, length: number, tag: string) => seededBytes(length, `${seed} ${tag}`).copy(changed, at);
  switch (change) {
    case 'fine-tuned head':
      renew(changed.length - Math.round(0.02 * size), Math.round(0.02 * size), 'head');
      return { before, after: program(changed, OPERATORS) };
    case 'two regions':
      renew(Math.round(0.3 * changed.length), Math.round(0.01 * size), 'first region');
      renew(Math.round(0.7 * changed.length), Math.round(0.01 * size), 'second region');
      return { before, after: program(changed, OPERATORS) };
    case 'full retrain':
      return { before, after: program(seededBytes(weights.length, `${seed} retrained`), OPERATORS) };
    case 're-export':
      return { before, after: program(weights, [INSERTED_OPERATOR, ...OPERATORS]) };
  }
}
