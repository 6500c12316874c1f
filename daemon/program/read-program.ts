import { ByteBuffer } from 'flatbuffers';
import { readExtendedHeader } from './extended-header.ts';
import { ProgramFormatError } from './program-error.ts';
import type { MethodSummary, ProgramSummary, ValueSummary } from './program-summary.ts';
import { scalarTypes, shapeDynamism, slots, TENSOR_VALUE, valueKinds } from './slots.ts';
import { TableView } from './table-view.ts';
import { verifyProgramBuffer } from './verify.ts';

const IDENTIFIER = /^ET\d\d$/;

/** True when the bytes claim to be an ExecuTorch program: `ET` + two digits at byte 4. */
export function claimsExecuTorch(head: Buffer): boolean {
  return head.length >= 8 && IDENTIFIER.test(head.toString('latin1', 4, 8));
}

/**
 * Bytes of the file's start that readProgram needs: the flatbuffer region, which is the
 * whole file unless an extended header says where the segments begin.
 */
export function programRegionBytes(head: Buffer, fileSize: number): number {
  return readExtendedHeader(head, fileSize)?.programSize ?? fileSize;
}

/**
 * Reads a .pte file (`bytes`: the whole file, or at least its first programRegionBytes):
 * identifier, extended header, then the flatbuffer, verified before any accessor touches
 * it. Throws ProgramFormatError naming what is wrong.
 */
export function readProgram(bytes: Buffer, fileSize = bytes.length): ProgramSummary {
  if (bytes.length < 8 || fileSize < 8) throw new ProgramFormatError('it is shorter than an ExecuTorch header');
  if (!claimsExecuTorch(bytes)) throw new ProgramFormatError('it has no ExecuTorch file identifier (ET + two digits at byte 4)');
  const identifier = bytes.toString('latin1', 4, 8);
  const header = readExtendedHeader(bytes, fileSize);
  const regionSize = header?.programSize ?? fileSize;
  if (bytes.length < regionSize) throw new ProgramFormatError(`the file ends after ${bytes.length} of the program's ${regionSize} bytes`);
  const region = bytes.subarray(0, regionSize);
  verifyProgramBuffer(region);

  const program = TableView.root(new ByteBuffer(region));
  const P = slots.Program;
  const methods = program.tables(P.execution_plan).map((plan, i) => readMethod(plan, `execution_plan[${i}]`));

  const segments = program.tables(P.segments).map((segment, i) => {
    const offset = program64(segment.uint64(slots.DataSegment.offset), `segments[${i}].offset`);
    const size = program64(segment.uint64(slots.DataSegment.size), `segments[${i}].size`);
    if (size > 0) checkSegment(header, offset, size, i, fileSize);
    return size;
  });

  let constantDataBytes = 0;
  for (const buffer of program.tables(P.constant_buffer)) constantDataBytes += buffer.length(slots.Buffer.storage);
  const constantSegment = program.table(P.constant_segment);
  if (constantSegment) {
    const index = constantSegment.uint32(slots.SubsegmentOffsets.segment_index);
    const hasOffsets = constantSegment.length(slots.SubsegmentOffsets.offsets) > 0;
    if (index < segments.length) constantDataBytes += segments[index]!;
    else if (hasOffsets) throw new ProgramFormatError(`program.constant_segment: names segment ${index}, but the program has ${segments.length}`);
  }

  return {
    identifier,
    schemaVersion: program.uint32(P.version),
    programBytes: region.length,
    extendedHeader: header !== null,
    methods,
    constantDataBytes,
    segments: { count: segments.length, sizes: segments },
    requires: {
      operators: unique(methods.flatMap((m) => m.operators)).sort(),
      delegates: unique(methods.flatMap((m) => m.delegates)).sort(),
      // A device loads one method at a time (ExecuTorch plans memory per method).
      arenaBytes: Math.max(0, ...methods.map((m) => m.plannedMemory.arenaBytes)),
    },
  };
}

function readMethod(plan: TableView, where: string): MethodSummary {
  const E = slots.ExecutionPlan;
  const operators = plan.tables(E.operators).map((op, i) => {
    const name = op.string(slots.Operator.name);
    if (!name) throw new ProgramFormatError(`${where}.operators[${i}]: the operator has no name`);
    const overload = op.string(slots.Operator.overload);
    // The identity the runtime's kernel registry uses, and what devices report.
    return overload ? `${name}.${overload}` : name;
  });
  const delegates = plan.tables(E.delegates).map((delegate, i) => {
    const id = delegate.string(slots.BackendDelegate.id);
    if (!id) throw new ProgramFormatError(`${where}.delegates[${i}]: the delegate has no backend id`);
    return id;
  });
  const bufferSizes = plan.int64s(E.non_const_buffer_sizes).map((size, i) => {
    if (size < 0n) throw new ProgramFormatError(`${where}.non_const_buffer_sizes[${i}]: a negative size ${size}`);
    return program64(size, `${where}.non_const_buffer_sizes[${i}]`);
  });
  const arenaBytes = bufferSizes.slice(1).reduce((sum, size) => sum + size, 0);
  if (!Number.isSafeInteger(arenaBytes)) throw new ProgramFormatError(`${where}.non_const_buffer_sizes: the planned memory does not fit in 2^53 bytes`);

  const valueCount = plan.length(E.values);
  const values = (slot: number, list: string) => plan.int32s(slot).map((index, i) => {
    if (index < 0 || index >= valueCount) {
      throw new ProgramFormatError(`${where}.${list}[${i}]: value index ${index} is outside the method's ${valueCount} values`);
    }
    return readValue(plan.tableAt(E.values, index));
  });

  return {
    name: plan.string(E.name) ?? '',
    operators: unique(operators),
    delegates: unique(delegates),
    plannedMemory: { bufferSizes, arenaBytes },
    inputs: values(E.inputs, 'inputs'),
    outputs: values(E.outputs, 'outputs'),
  };
}

function readValue(value: TableView): ValueSummary {
  const type = value.uint8(slots.EValue.val_type);
  if (type !== TENSOR_VALUE) return { kind: valueKinds[type] ?? 'unknown' };
  const tensor = value.table(slots.EValue.val)!;
  const code = tensor.uint8(slots.Tensor.scalar_type);
  const dynamism = shapeDynamism[tensor.uint8(slots.Tensor.shape_dynamism)] ?? 'unknown';
  return {
    kind: 'tensor',
    scalarType: scalarTypes[code] ?? `unknown(${code})`,
    dynamism,
    shape: dynamism === 'static' || dynamism === 'dynamic_bound' ? tensor.int32s(slots.Tensor.sizes) : null,
  };
}

/** Segment data must lie inside the file, after the base the extended header gives. */
function checkSegment(header: ReturnType<typeof readExtendedHeader>, offset: number, size: number, i: number, fileSize: number): void {
  if (!header || header.segmentBase === 0) {
    throw new ProgramFormatError(`program.segments[${i}]: ${size} bytes of segment data, but no extended header says where segments start`);
  }
  const limit = header.segmentDataSize ?? fileSize - header.segmentBase;
  if (offset + size > limit || header.segmentBase + offset + size > fileSize) {
    throw new ProgramFormatError(`program.segments[${i}]: ${size} bytes at offset ${offset} run past the end of the file's ${limit} bytes of segment data`);
  }
}

function program64(value: bigint, where: string): number {
  if (value > BigInt(Number.MAX_SAFE_INTEGER)) throw new ProgramFormatError(`${where}: ${value} is beyond any real size`);
  return Number(value);
}

function unique(items: string[]): string[] {
  return [...new Set(items)];
}
