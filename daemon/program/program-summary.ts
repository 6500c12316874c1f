// What the gateway knows of an ExecuTorch program: kept in the model record as `program`,
// shown by the admin API, `modelferry inspect` and the status page, and compared with
// device capabilities.

export type ValueSummary =
  | {
      kind: 'tensor';
      scalarType: string;
      /** `static`: `shape` is the shape; `dynamic_bound`: an upper bound; `dynamic_unbound`: null. */
      dynamism: 'static' | 'dynamic_bound' | 'dynamic_unbound' | 'unknown';
      shape: number[] | null;
    }
  | { kind: string };

export interface MethodSummary {
  name: string;
  /** Kernel operators as `name.overload`, in program order, without repeats. */
  operators: string[];
  /** Backend ids of the delegates this method calls, without repeats. */
  delegates: string[];
  plannedMemory: {
    /** `non_const_buffer_sizes` as stored; index 0 is reserved by ExecuTorch. */
    bufferSizes: number[];
    /** The arena this method needs: the sum of every buffer but the first. */
    arenaBytes: number;
  };
  inputs: ValueSummary[];
  outputs: ValueSummary[];
}

export interface ProgramSummary {
  /** The file identifier, e.g. `ET12`. */
  identifier: string;
  /** `Program.version`. */
  schemaVersion: number;
  /** Bytes of the flatbuffer itself (the whole file, or up to the segments). */
  programBytes: number;
  extendedHeader: boolean;
  methods: MethodSummary[];
  /** Constant tensor data: inline buffers plus the constant segment. */
  constantDataBytes: number;
  segments: { count: number; sizes: number[] };
  /** What a device needs to run any method of it: see devices/compatibility. */
  requires: { operators: string[]; delegates: string[]; arenaBytes: number };
}
