import test from 'ava';
import fc from 'fast-check';
import parseRange from 'range-parser';
import { artifactResponder } from '../../daemon/http/artifact-responder.ts';
import { isModelferryError } from '../../daemon/errors.ts';
import { Metrics } from '../../daemon/metrics.ts';

// The responder reads `bytes=<first>-[<last>]`, the form a resuming device sends for every
// piece, without range-parser; every other Range goes through range-parser. Both must give
// the same answer: the status and the bytes chosen are checked here against range-parser
// itself, for any blob size and any such header, edges included.

const respond = artifactResponder(new Metrics());
const SHA = 'ab'.repeat(32);

function viaResponder(size: number, range: string): { status: number; start?: number; end?: number } {
  try {
    const { head, body } = respond(SHA, size, { method: 'GET', ifNoneMatch: undefined, range, ifRange: undefined });
    return head.status === 206 ? { status: 206, start: body!.start, end: body!.end } : { status: head.status };
  } catch (error) {
    if (isModelferryError(error)) return { status: error.status };
    throw error;
  }
}

function viaRangeParser(size: number, range: string): { status: number; start?: number; end?: number } {
  const ranges = parseRange(size, range, { combine: true });
  if (ranges === -1) return { status: 416 };
  if (ranges === -2 || ranges.length !== 1) return { status: 200 };
  return { status: 206, start: ranges[0]!.start, end: ranges[0]!.end };
}

test('bytes=<first>-[<last>] is answered as range-parser reads it, for any size and any numbers', (t) => {
  const number = fc.oneof(fc.nat(1 << 24), fc.constantFrom(0, 1, 65535, 65536), fc.nat(Number.MAX_SAFE_INTEGER));
  fc.assert(fc.property(fc.nat(1 << 24), number, fc.option(number, { nil: undefined }), (size, first, last) => {
    const range = `bytes=${first}-${last ?? ''}`;
    t.deepEqual(viaResponder(size, range), viaRangeParser(size, range), range);
  }), { numRuns: 5000 });
});

test('the edges: the last byte, one past it, an empty blob, an inverted range', (t) => {
  for (const [size, range, expected] of [
    [100, 'bytes=99-99', { status: 206, start: 99, end: 99 }],
    [100, 'bytes=99-', { status: 206, start: 99, end: 99 }],
    [100, 'bytes=100-', { status: 416 }],
    [100, 'bytes=0-1000', { status: 206, start: 0, end: 99 }],
    [0, 'bytes=0-', { status: 416 }],
    [100, 'bytes=50-10', { status: 416 }],
  ] as const) {
    t.deepEqual(viaResponder(size, range), expected, `${range} of ${size}`);
    t.deepEqual(viaRangeParser(size, range), expected, `range-parser: ${range} of ${size}`);
  }
});
