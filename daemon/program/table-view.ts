import type { ByteBuffer } from 'flatbuffers';
import { vtableOffset } from './slots.ts';

/**
 * Hand-written accessors on the flatbuffers ByteBuffer: one table at `pos`, its fields by
 * slot. They follow offsets as the flatbuffers runtime does, without checks, so they may
 * only be used on a buffer that verify.ts has accepted.
 */
export class TableView {
  readonly #bb: ByteBuffer;
  readonly #pos: number;

  constructor(bb: ByteBuffer, pos: number) {
    this.#bb = bb;
    this.#pos = pos;
  }

  static root(bb: ByteBuffer): TableView {
    return new TableView(bb, bb.readUint32(0));
  }

  #field(slot: number): number {
    return this.#bb.__offset(this.#pos, vtableOffset(slot));
  }

  uint8(slot: number): number {
    const at = this.#field(slot);
    return at === 0 ? 0 : this.#bb.readUint8(this.#pos + at);
  }

  uint32(slot: number): number {
    const at = this.#field(slot);
    return at === 0 ? 0 : this.#bb.readUint32(this.#pos + at);
  }

  uint64(slot: number): bigint {
    const at = this.#field(slot);
    return at === 0 ? 0n : this.#bb.readUint64(this.#pos + at);
  }

  string(slot: number): string | null {
    const at = this.#field(slot);
    return at === 0 ? null : this.#bb.__string(this.#pos + at) as string;
  }

  table(slot: number): TableView | null {
    const at = this.#field(slot);
    return at === 0 ? null : new TableView(this.#bb, this.#bb.__indirect(this.#pos + at));
  }

  /** The element count of a vector field (0 when absent). */
  length(slot: number): number {
    const at = this.#field(slot);
    return at === 0 ? 0 : this.#bb.__vector_len(this.#pos + at);
  }

  tables(slot: number): TableView[] {
    const at = this.#field(slot);
    if (at === 0) return [];
    const start = this.#bb.__vector(this.#pos + at);
    return Array.from({ length: this.#bb.__vector_len(this.#pos + at) }, (_, i) =>
      new TableView(this.#bb, this.#bb.__indirect(start + 4 * i)));
  }

  /** The table at index `i` of a vector of tables (the caller checked the index). */
  tableAt(slot: number, i: number): TableView {
    const start = this.#bb.__vector(this.#pos + this.#field(slot));
    return new TableView(this.#bb, this.#bb.__indirect(start + 4 * i));
  }

  int32s(slot: number): number[] {
    return this.#scalars(slot, 4, (at) => this.#bb.readInt32(at));
  }

  int64s(slot: number): bigint[] {
    return this.#scalars(slot, 8, (at) => this.#bb.readInt64(at));
  }

  #scalars<T>(slot: number, bytes: number, read: (at: number) => T): T[] {
    const at = this.#field(slot);
    if (at === 0) return [];
    const start = this.#bb.__vector(this.#pos + at);
    return Array.from({ length: this.#bb.__vector_len(this.#pos + at) }, (_, i) => read(start + bytes * i));
  }
}
