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
