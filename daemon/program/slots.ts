// Field slots of the tables modelferry reads, as declared in program.fbs (a slot is the
// field's position in its table; a union takes two: its type, then its value). The reader
// and the verifier use these numbers; test/program/schema.test.ts checks them against what
// flatc makes of program.fbs.

export const slots = {
  Program: { version: 0, execution_plan: 1, constant_buffer: 2, segments: 4, constant_segment: 5 },
  ExecutionPlan: { name: 0, values: 2, inputs: 3, outputs: 4, operators: 6, delegates: 7, non_const_buffer_sizes: 8 },
  EValue: { val_type: 0, val: 1 },
  Tensor: { scalar_type: 0, sizes: 2, shape_dynamism: 8 },
  Operator: { name: 0, overload: 1 },
  BackendDelegate: { id: 0 },
  Buffer: { storage: 0 },
  DataSegment: { offset: 0, size: 1 },
  SubsegmentOffsets: { segment_index: 0, offsets: 1 },
} as const;

export type TableName = keyof typeof slots;

/** Members of the `Value` union in published order; index 0 is "no value". */
export const valueKinds = [
  'unset', 'none', 'int', 'bool', 'double', 'tensor', 'string', 'int_list', 'double_list',
  'bool_list', 'tensor_list', 'optional_tensor_list',
] as const;
export const TENSOR_VALUE = valueKinds.indexOf('tensor');

/** ScalarType values as published, with our names. */
export const scalarTypes: Record<number, string> = {
  0: 'uint8', 1: 'int8', 2: 'int16', 3: 'int32', 4: 'int64', 5: 'float16', 6: 'float32',
  7: 'float64', 8: 'complex32', 9: 'complex64', 10: 'complex128', 11: 'bool', 12: 'qint8',
  13: 'quint8', 14: 'qint32', 15: 'bfloat16', 16: 'quint4x2', 17: 'quint2x4',
};

export const shapeDynamism = ['static', 'dynamic_bound', 'dynamic_unbound'] as const;

/** Byte offset of a slot's entry in a vtable. */
export function vtableOffset(slot: number): number {
  return 4 + 2 * slot;
}
