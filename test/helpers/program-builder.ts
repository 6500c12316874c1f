import { Builder } from 'flatbuffers';
import { slots, TENSOR_VALUE, valueKinds } from '../../daemon/program/slots.ts';

// ExecuTorch programs built from the schema with the flatbuffers Builder, for tests that
// need programs the fixtures do not cover: several methods, delegates, big memory plans,
// segments behind an extended header.

export interface TensorSpec {
  /** ScalarType code as published (6 = float32). */
  scalarType?: number;
  sizes?: number[];
  /** 0 static, 1 dynamic with a bound, 2 unbound. */
  dynamism?: number;
}

export interface MethodSpec {
  name: string;
  /** `name.overload` or a bare name. */
  operators?: string[];
  delegates?: string[];
  bufferSizes?: Array<number | bigint>;
  inputs?: Array<TensorSpec | 'int'>;
  outputs?: TensorSpec[];
}

export interface ProgramSpec {
  version?: number;
  methods: MethodSpec[];
  /** Byte lengths of inline constant buffers (the deprecated constant_buffer). */
  constantBuffers?: number[];
  /** Data of each segment, stored after the flatbuffer behind an extended header. */
  segments?: Buffer[];
  /** Index into segments of the constant segment. */
  constantSegment?: number;
  identifier?: string;
}

const S = slots;

/** The flatbuffer alone, or with an eh00 header and segment data when `segments` is given. */
export function buildProgram(spec: ProgramSpec): Buffer {
  const b = new Builder(1024);
  const plans = spec.methods.map((method) => buildMethod(b, method));
  const planVector = tables(b, plans);
  const constantBuffers = spec.constantBuffers
    ? tables(b, spec.constantBuffers.map((length) => {
        const storage = b.createByteVector(new Uint8Array(length));
        b.startObject(1);
        b.addFieldOffset(S.Buffer.storage, storage, 0);
        return b.endObject();
      }))
    : 0;
  let offset = 0n;
  const segmentTables = (spec.segments ?? []).map((data) => {
    b.startObject(2);
    b.addFieldInt64(S.DataSegment.offset, offset, 0n);
    b.addFieldInt64(S.DataSegment.size, BigInt(data.length), 0n);
    offset += BigInt(align(data.length, 16));
    return b.endObject();
  });
  const segmentVector = spec.segments ? tables(b, segmentTables) : 0;
  let constantSegment = 0;
  if (spec.constantSegment !== undefined) {
    b.startVector(8, 1, 8);
    b.addInt64(0n);
    const offsets = b.endVector();
    b.startObject(2);
    b.addFieldInt32(S.SubsegmentOffsets.segment_index, spec.constantSegment, 0);
    b.addFieldOffset(S.SubsegmentOffsets.offsets, offsets, 0);
    constantSegment = b.endObject();
  }
  b.startObject(6);
  b.addFieldInt32(S.Program.version, spec.version ?? 0, 0);
  b.addFieldOffset(S.Program.execution_plan, planVector, 0);
  if (constantBuffers) b.addFieldOffset(S.Program.constant_buffer, constantBuffers, 0);
  if (segmentVector) b.addFieldOffset(S.Program.segments, segmentVector, 0);
  if (constantSegment) b.addFieldOffset(S.Program.constant_segment, constantSegment, 0);
  b.finish(b.endObject(), spec.identifier ?? 'ET12');
  const flatbuffer = Buffer.from(b.asUint8Array());
  return spec.segments ? withSegments(flatbuffer, spec.segments) : flatbuffer;
}

function buildMethod(b: Builder, method: MethodSpec): number {
  const operators = tables(b, (method.operators ?? []).map((op) => {
    const dot = op.lastIndexOf('.');
    const name = b.createString(dot > op.indexOf('::') ? op.slice(0, dot) : op);
    const overload = b.createString(dot > op.indexOf('::') ? op.slice(dot + 1) : '');
    b.startObject(2);
    b.addFieldOffset(S.Operator.name, name, 0);
    b.addFieldOffset(S.Operator.overload, overload, 0);
    return b.endObject();
  }));
  const delegates = tables(b, (method.delegates ?? []).map((id) => {
    const text = b.createString(id);
    b.startObject(1);
    b.addFieldOffset(S.BackendDelegate.id, text, 0);
    return b.endObject();
  }));
  const inputs = method.inputs ?? [{ sizes: [1] }];
  const outputs = method.outputs ?? [{ sizes: [1] }];
  const values = tables(b, [...inputs, ...outputs].map((value) => value === 'int' ? intValue(b) : tensorValue(b, value)));
  const indices = (from: number, count: number) => int32s(b, Array.from({ length: count }, (_, i) => from + i));
  const inputVector = indices(0, inputs.length);
  const outputVector = indices(inputs.length, outputs.length);
  const sizes = method.bufferSizes ?? [0, 64];
  b.startVector(8, sizes.length, 8);
  for (const size of [...sizes].reverse()) b.addInt64(BigInt(size));
  const sizeVector = b.endVector();
  const name = b.createString(method.name);
  b.startObject(9);
  b.addFieldOffset(S.ExecutionPlan.name, name, 0);
  b.addFieldOffset(S.ExecutionPlan.values, values, 0);
  b.addFieldOffset(S.ExecutionPlan.inputs, inputVector, 0);
  b.addFieldOffset(S.ExecutionPlan.outputs, outputVector, 0);
  b.addFieldOffset(S.ExecutionPlan.operators, operators, 0);
  b.addFieldOffset(S.ExecutionPlan.delegates, delegates, 0);
  b.addFieldOffset(S.ExecutionPlan.non_const_buffer_sizes, sizeVector, 0);
  return b.endObject();
}

function tensorValue(b: Builder, tensor: TensorSpec): number {
  const sizes = int32s(b, tensor.sizes ?? [1]);
  b.startObject(9);
  b.addFieldInt8(S.Tensor.scalar_type, tensor.scalarType ?? 6, 0);
  b.addFieldOffset(S.Tensor.sizes, sizes, 0);
  b.addFieldInt8(S.Tensor.shape_dynamism, tensor.dynamism ?? 0, 0);
  const table = b.endObject();
  return evalue(b, TENSOR_VALUE, table);
}

function intValue(b: Builder): number {
  b.startObject(1);
  return evalue(b, valueKinds.indexOf('int'), b.endObject());
}

function evalue(b: Builder, type: number, table: number): number {
  b.startObject(2);
  b.addFieldInt8(S.EValue.val_type, type, 0);
  b.addFieldOffset(S.EValue.val, table, 0);
  return b.endObject();
}

function tables(b: Builder, offsets: number[]): number {
  b.startVector(4, offsets.length, 4);
  for (const offset of [...offsets].reverse()) b.addOffset(offset);
  return b.endVector();
}

function int32s(b: Builder, items: number[]): number {
  b.startVector(4, items.length, 4);
  for (const item of [...items].reverse()) b.addInt32(item);
  return b.endVector();
}

const HEADER_LENGTH = 32;

/**
 * Inserts an eh00 header after the first 8 bytes (moving the root offset past it, as the
 * exporter does; every other offset is relative and unaffected) and appends the segments.
 */
function withSegments(flatbuffer: Buffer, segments: Buffer[]): Buffer {
  const header = Buffer.alloc(HEADER_LENGTH);
  const programSize = flatbuffer.length + HEADER_LENGTH;
  const segmentBase = align(programSize, 16);
  const data = Buffer.concat(segments.map((segment) => Buffer.concat([segment, Buffer.alloc(align(segment.length, 16) - segment.length)])));
  header.write('eh00', 0, 'latin1');
  header.writeUInt32LE(HEADER_LENGTH, 4);
  header.writeBigUInt64LE(BigInt(programSize), 8);
  header.writeBigUInt64LE(BigInt(segmentBase), 16);
  header.writeBigUInt64LE(BigInt(data.length), 24);
  const start = Buffer.from(flatbuffer.subarray(0, 8));
  start.writeUInt32LE(start.readUInt32LE(0) + HEADER_LENGTH, 0);
  return Buffer.concat([start, header, flatbuffer.subarray(8), Buffer.alloc(segmentBase - programSize), data]);
}

function align(n: number, to: number): number {
  return Math.ceil(n / to) * to;
}
