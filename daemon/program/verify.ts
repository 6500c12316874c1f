import { ProgramFormatError } from './program-error.ts';
import { slots, TENSOR_VALUE, valueKinds, vtableOffset, type TableName } from './slots.ts';

// The flatbuffers runtime follows offsets without checking them: a hostile file could make
// it read out of bounds, loop, or allocate without end. This pass walks every table, vector
// and string the reader will touch and proves it lies inside the buffer before the reader
// runs. Two properties make it terminate, in time linear in the file, on any input:
//  - every reference (uoffset) must point strictly forward, so no walk can return to a
//    position it came from (no cycles, whatever the bytes say), and nesting depth is capped;
//  - every visit of a table, vector or string counts against a budget of half the buffer's
//    size. A real program is a tree in which each object has a 4-byte offset of its own, so
//    it needs at most a quarter; a crafted file that shares sub-objects to multiply the
//    work (a thousand methods all pointing at one huge method) runs out. The reader walks
//    a subset of what was verified, so its work is bounded by the same budget.

type Field =
  | { kind: 'scalar'; slot: number; bytes: 1 | 2 | 4 | 8 }
  | { kind: 'string'; slot: number }
  | { kind: 'table'; slot: number; table: TableName }
  | { kind: 'scalars'; slot: number; bytes: 1 | 4 | 8; max: number }
  | { kind: 'tables'; slot: number; table: TableName; max: number }
  | { kind: 'value'; slot: number };

/** Upper bounds on element counts: far above real programs, far below what exhausts memory. */
export const PROGRAM_LIMITS = {
  methods: 64,
  valuesPerMethod: 1_000_000,
  inputsPerMethod: 4096,
  operatorsPerMethod: 4096,
  delegatesPerMethod: 1024,
  memoryBuffers: 256,
  tensorRank: 64,
  segments: 65_536,
  constantBuffers: 1_000_000,
  constantOffsets: 1_000_000,
  /** Operator names, overloads, delegate ids and method names, in bytes. */
  stringBytes: 1024,
  depth: 16,
} as const;

const L = PROGRAM_LIMITS;
const s = slots;

const schema: Record<TableName, Record<string, Field>> = {
  Program: {
    version: { kind: 'scalar', slot: s.Program.version, bytes: 4 },
    execution_plan: { kind: 'tables', slot: s.Program.execution_plan, table: 'ExecutionPlan', max: L.methods },
    constant_buffer: { kind: 'tables', slot: s.Program.constant_buffer, table: 'Buffer', max: L.constantBuffers },
    segments: { kind: 'tables', slot: s.Program.segments, table: 'DataSegment', max: L.segments },
    constant_segment: { kind: 'table', slot: s.Program.constant_segment, table: 'SubsegmentOffsets' },
  },
  ExecutionPlan: {
    name: { kind: 'string', slot: s.ExecutionPlan.name },
    values: { kind: 'tables', slot: s.ExecutionPlan.values, table: 'EValue', max: L.valuesPerMethod },
    inputs: { kind: 'scalars', slot: s.ExecutionPlan.inputs, bytes: 4, max: L.inputsPerMethod },
    outputs: { kind: 'scalars', slot: s.ExecutionPlan.outputs, bytes: 4, max: L.inputsPerMethod },
    operators: { kind: 'tables', slot: s.ExecutionPlan.operators, table: 'Operator', max: L.operatorsPerMethod },
    delegates: { kind: 'tables', slot: s.ExecutionPlan.delegates, table: 'BackendDelegate', max: L.delegatesPerMethod },
    non_const_buffer_sizes: { kind: 'scalars', slot: s.ExecutionPlan.non_const_buffer_sizes, bytes: 8, max: L.memoryBuffers },
  },
  EValue: {
    val: { kind: 'value', slot: s.EValue.val_type },
  },
  Tensor: {
    scalar_type: { kind: 'scalar', slot: s.Tensor.scalar_type, bytes: 1 },
    sizes: { kind: 'scalars', slot: s.Tensor.sizes, bytes: 4, max: L.tensorRank },
    shape_dynamism: { kind: 'scalar', slot: s.Tensor.shape_dynamism, bytes: 1 },
  },
  Operator: {
    name: { kind: 'string', slot: s.Operator.name },
    overload: { kind: 'string', slot: s.Operator.overload },
  },
  BackendDelegate: {
    id: { kind: 'string', slot: s.BackendDelegate.id },
  },
  Buffer: {
    storage: { kind: 'scalars', slot: s.Buffer.storage, bytes: 1, max: Number.MAX_SAFE_INTEGER },
  },
  DataSegment: {
    offset: { kind: 'scalar', slot: s.DataSegment.offset, bytes: 8 },
    size: { kind: 'scalar', slot: s.DataSegment.size, bytes: 8 },
  },
  SubsegmentOffsets: {
    segment_index: { kind: 'scalar', slot: s.SubsegmentOffsets.segment_index, bytes: 4 },
    offsets: { kind: 'scalars', slot: s.SubsegmentOffsets.offsets, bytes: 8, max: L.constantOffsets },
  },
};

/**
 * Proves that the flatbuffer in `bytes` (the program region of the file) is safe for the
 * reader: throws ProgramFormatError naming the first problem found.
 */
export function verifyProgramBuffer(bytes: Uint8Array): void {
  new Verifier(bytes).run();
}

class Verifier {
  readonly #bytes: Uint8Array;
  readonly #view: DataView;
  readonly #length: number;
  readonly #path: string[] = [];
  #budget: number;

  constructor(bytes: Uint8Array) {
    this.#bytes = bytes;
    this.#view = new DataView(bytes.buffer, bytes.byteOffset, bytes.byteLength);
    this.#length = bytes.length;
    this.#budget = Math.floor(bytes.length / 2) + 64;
  }

  run(): void {
    if (this.#length < 8) this.#fail('the program is shorter than a flatbuffer header');
    this.#path.push('program');
    const root = this.#view.getUint32(0, true);
    this.#table(this.#target(0, root, 'the root offset'), 'Program', 0);
  }

  #table(pos: number, table: TableName, depth: number): void {
    this.#visit(depth);
    if (pos + 4 > this.#length) this.#fail(`the table at byte ${pos} runs past the end`);
    const vtable = pos - this.#view.getInt32(pos, true);
    if (vtable < 0 || vtable + 4 > this.#length) this.#fail(`the table at byte ${pos} has its field table (vtable) outside the buffer, at ${vtable}`);
    const vtableSize = this.#view.getUint16(vtable, true);
    const tableSize = this.#view.getUint16(vtable + 2, true);
    if (vtableSize < 4 || vtableSize % 2 !== 0 || vtable + vtableSize > this.#length) {
      this.#fail(`the field table (vtable) at byte ${vtable} has an impossible size ${vtableSize}`);
    }
    if (tableSize < 4 || pos + tableSize > this.#length) this.#fail(`the table at byte ${pos} claims ${tableSize} bytes, past the end`);

    for (const [name, field] of Object.entries(schema[table])) {
      const at = this.#fieldPosition(pos, vtable, vtableSize, tableSize, field.slot, field.kind === 'scalar' ? field.bytes : field.kind === 'value' ? 1 : 4, name);
      if (at === 0) continue;
      this.#path.push(name);
      switch (field.kind) {
        case 'scalar':
          break;
        case 'string':
          this.#string(this.#follow(at), depth + 1);
          break;
        case 'table':
          this.#table(this.#follow(at), field.table, depth + 1);
          break;
        case 'scalars':
          this.#vector(this.#follow(at), field.bytes, field.max, depth + 1);
          break;
        case 'tables': {
          const start = this.#follow(at);
          const count = this.#vector(start, 4, field.max, depth + 1);
          for (let i = 0; i < count; i++) {
            this.#path.push(`[${i}]`);
            const element = start + 4 + 4 * i;
            this.#table(this.#follow(element), field.table, depth + 2);
            this.#path.pop();
          }
          break;
        }
        case 'value':
          this.#value(pos, vtable, vtableSize, tableSize, at, depth + 1);
          break;
      }
      this.#path.pop();
    }
  }

  /** A union: its type byte, then (in the next slot) the member table. */
  #value(pos: number, vtable: number, vtableSize: number, tableSize: number, typeAt: number, depth: number): void {
    const type = this.#bytes[typeAt]!;
    if (type === 0) return;
    const valueAt = this.#fieldPosition(pos, vtable, vtableSize, tableSize, slots.EValue.val, 4, 'val');
    if (valueAt === 0) this.#fail(`a value of kind ${valueKinds[type] ?? type} has no content`);
    // Members other than tensors are only named, never read; a newer member is an unknown kind.
    if (type === TENSOR_VALUE) this.#table(this.#follow(valueAt), 'Tensor', depth);
  }

  /** Where a field lives, or 0 when absent; checks it lies inside its table. */
  #fieldPosition(pos: number, vtable: number, vtableSize: number, tableSize: number, slot: number, bytes: number, name: string): number {
    const entry = vtableOffset(slot);
    if (entry + 2 > vtableSize) return 0;
    const offset = this.#view.getUint16(vtable + entry, true);
    if (offset === 0) return 0;
    if (offset < 4 || offset + bytes > tableSize) this.#fail(`field ${name} of the table at byte ${pos} lies outside the table`);
    return pos + offset;
  }

  /** Follows the uoffset stored at `at`. */
  #follow(at: number): number {
    if (at + 4 > this.#length) this.#fail(`an offset at byte ${at} runs past the end`);
    return this.#target(at, this.#view.getUint32(at, true), 'an offset');
  }

  #target(at: number, offset: number, what: string): number {
    const target = at + offset;
    // Strictly forward and inside the buffer: this is what rules out cycles.
    if (offset === 0 || target + 4 > this.#length) {
      this.#fail(`${what} at byte ${at} points to byte ${target}, outside the ${this.#length}-byte program`);
    }
    return target;
  }

  /** Checks a vector's header and extent; returns its element count. */
  #vector(pos: number, elementBytes: number, max: number, depth: number): number {
    this.#visit(depth);
    const count = this.#view.getUint32(pos, true);
    if (count > max) this.#fail(`a list of ${count} elements is more than the ${max} allowed`);
    if (pos + 4 + count * elementBytes > this.#length) {
      this.#fail(`a list of ${count} elements at byte ${pos} runs past the end of the ${this.#length}-byte program`);
    }
    return count;
  }

  #string(pos: number, depth: number): void {
    this.#visit(depth);
    const length = this.#view.getUint32(pos, true);
    if (length > PROGRAM_LIMITS.stringBytes) this.#fail(`a string of ${length} bytes is longer than the ${PROGRAM_LIMITS.stringBytes} allowed`);
    if (pos + 4 + length + 1 > this.#length) this.#fail(`a string of ${length} bytes at byte ${pos} runs past the end`);
    if (this.#bytes[pos + 4 + length] !== 0) this.#fail(`the string at byte ${pos} is not terminated`);
  }

  #visit(depth: number): void {
    if (--this.#budget < 0) this.#fail('the program refers to more objects than its size allows (shared or overlapping structure)');
    if (depth > PROGRAM_LIMITS.depth) this.#fail(`objects are nested deeper than ${PROGRAM_LIMITS.depth} levels`);
  }

  #fail(problem: string): never {
    throw new ProgramFormatError(`${this.#path.join('.').replaceAll('.[', '[')}: ${problem}`);
  }
}
