import { createDelta } from 'fossil-delta';

/**
 * The delta that makes `to` from `from`, in Fossil's format (docs/design.md "Deltas"): copies
 * of `from`'s bytes and inserted bytes, in the order of `to`, which a device applies in one
 * forward pass (firmware core/mf_delta.c). Made by the npm package fossil-delta.
 */
export function makeDelta(from: Uint8Array, to: Uint8Array): Buffer {
  const delta = createDelta(from, to);
  return Buffer.from(delta.buffer, delta.byteOffset, delta.byteLength);
}

const SAMPLES = 64;
const WIDTH = 32;

/**
 * About what share of `to` a delta would have to insert: the share of 64 stretches of 32
 * bytes, spread evenly over `to`, found nowhere in `from`. A few milliseconds where making
 * the delta of a retrained model (every weight new) takes seconds of CPU and tens of MiB
 * for nothing worth sending.
 */
export function newShare(from: Buffer, to: Buffer): number {
  if (to.length < WIDTH * SAMPLES) return 1;
  let missing = 0;
  for (let i = 0; i < SAMPLES; i++) {
    const at = Math.floor(((i + 0.5) * (to.length - WIDTH)) / SAMPLES);
    if (from.indexOf(to.subarray(at, at + WIDTH)) < 0) missing++;
  }
  return missing / SAMPLES;
}
