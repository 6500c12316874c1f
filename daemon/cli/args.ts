/** Parsed command line: positionals, `--key value` options, boolean flags, repeatable options. */
export interface Args {
  positionals: string[];
  options: Map<string, string>;
  flags: Set<string>;
  lists: Map<string, string[]>;
}

/**
 * One option of a command. `value` (the default) takes one value, `boolean` none, `list`
 * one value each time it is given.
 */
export interface FlagSpec {
  kind?: 'value' | 'boolean' | 'list';
  /** The placeholder shown in help: `--name NAME`. */
  placeholder?: string;
  /** A value option the command cannot run without; shown in the usage line. */
  required?: boolean;
  help: string;
}

export interface OperandSpec {
  name: string;
  optional?: boolean;
  /** Takes every remaining operand (at least one unless optional). */
  repeated?: boolean;
}

/** What a command accepts; parsing refuses everything else. */
export interface ArgsSpec {
  operands: readonly OperandSpec[];
  flags: Readonly<Record<string, FlagSpec>>;
}

export class UsageError extends Error {
  constructor(message: string) {
    super(message);
    this.name = 'UsageError';
  }
}

/**
 * Parses `argv` against what the command declared: an unknown option, a missing value, an
 * option given twice or an operand too many is a UsageError naming it, so a typo never
 * passes silently (`--prot 8081` does not start on the default port).
 */
export function parseArgs(argv: string[], spec: ArgsSpec): Args {
  const args: Args = { positionals: [], options: new Map(), flags: new Set(), lists: new Map() };
  let operandsOnly = false;
  for (let i = 0; i < argv.length; i++) {
    const arg = argv[i]!;
    if (operandsOnly || arg === '-' || !arg.startsWith('-')) {
      args.positionals.push(arg);
      continue;
    }
    if (arg === '--') {
      operandsOnly = true;
      continue;
    }
    if (arg === '-h') {
      args.flags.add('help');
      continue;
    }
    if (!arg.startsWith('--')) throw new UsageError(`unknown option ${arg}${suggestion(arg.slice(1), spec)}`);
    const eq = arg.indexOf('=');
    const name = arg.slice(2, eq < 0 ? undefined : eq);
    if (name === 'help') {
      args.flags.add('help');
      continue;
    }
    const flag = spec.flags[name];
    if (!flag) throw new UsageError(`unknown option --${name}${suggestion(name, spec)}`);
    const kind = flag.kind ?? 'value';
    if (kind === 'boolean') {
      if (eq >= 0) throw new UsageError(`--${name} takes no value`);
      args.flags.add(name);
      continue;
    }
    let value: string | undefined = eq < 0 ? undefined : arg.slice(eq + 1);
    if (value === undefined) {
      value = argv[++i];
      // `--name --version 1` is a forgotten value, not a name that starts with dashes.
      if (value === undefined || (value.startsWith('--') && value.slice(2).split('=')[0]! in spec.flags)) {
        throw new UsageError(`--${name} needs a value (${flag.placeholder ?? 'VALUE'})`);
      }
    }
    if (kind === 'list') {
      args.lists.set(name, [...(args.lists.get(name) ?? []), value]);
    } else {
      if (args.options.has(name)) throw new UsageError(`--${name} is given twice`);
      args.options.set(name, value);
    }
  }
  if (!args.flags.has('help')) {
    checkOperands(args.positionals, spec.operands);
    for (const [name, flag] of Object.entries(spec.flags)) {
      if (flag.required && !args.options.has(name)) throw new UsageError(`--${name} is required`);
    }
  }
  return args;
}

function checkOperands(given: string[], operands: readonly OperandSpec[]): void {
  const required = operands.filter((o) => !o.optional);
  if (given.length < required.length) {
    throw new UsageError(`missing ${required.slice(given.length).map((o) => o.name).join(' ')}`);
  }
  const repeated = operands.some((o) => o.repeated);
  if (!repeated && given.length > operands.length) {
    const extra = given.slice(operands.length);
    const hint = extra[0]!.startsWith('-') ? '' : ' (options start with --)';
    throw new UsageError(`unexpected argument${extra.length > 1 ? 's' : ''} ${extra.join(' ')}${hint}`);
  }
}

/** `; did you mean --port?` for the closest known option, else the list of them. */
function suggestion(name: string, spec: ArgsSpec): string {
  const known = Object.keys(spec.flags);
  if (known.length === 0) return '; this command takes no options';
  known.push('help');
  let best: string | undefined;
  let bestDistance = Infinity;
  for (const candidate of known) {
    const distance = editDistance(name.toLowerCase(), candidate);
    if (distance < bestDistance) {
      best = candidate;
      bestDistance = distance;
    }
  }
  if (best !== undefined && bestDistance <= Math.max(2, Math.floor(best.length / 3))) return `; did you mean --${best}?`;
  return `; known options: ${known.map((k) => `--${k}`).join(', ')}`;
}

/** Optimal string alignment distance: insertions, deletions, substitutions, adjacent swaps. */
export function editDistance(a: string, b: string): number {
  const d: number[][] = Array.from({ length: a.length + 1 }, (_, i) => [i, ...Array<number>(b.length).fill(0)]);
  for (let j = 1; j <= b.length; j++) d[0]![j] = j;
  for (let i = 1; i <= a.length; i++) {
    for (let j = 1; j <= b.length; j++) {
      const cost = a[i - 1] === b[j - 1] ? 0 : 1;
      let value = Math.min(d[i - 1]![j]! + 1, d[i]![j - 1]! + 1, d[i - 1]![j - 1]! + cost);
      if (i > 1 && j > 1 && a[i - 1] === b[j - 2] && a[i - 2] === b[j - 1]) value = Math.min(value, d[i - 2]![j - 2]! + 1);
      d[i]![j] = value;
    }
  }
  return d[a.length]![b.length]!;
}

export function option(args: Args, name: string): string | undefined {
  return args.options.get(name);
}

export function required(args: Args, name: string): string {
  const value = args.options.get(name);
  if (value === undefined) throw new UsageError(`--${name} is required`);
  return value;
}

export function positional(args: Args, index: number, what: string): string {
  const value = args.positionals[index];
  if (value === undefined) throw new UsageError(`missing ${what}`);
  return value;
}

/** A whole number option within bounds, refused in words when it is not one. */
export function integerOption(args: Args, name: string, min: number, max: number, what: string): number | undefined {
  const text = args.options.get(name);
  if (text === undefined) return undefined;
  if (!/^\s*\d+\s*$/.test(text) || Number(text) < min || Number(text) > max) {
    throw new UsageError(`--${name} takes ${what} from ${min} to ${max}, not "${text}"`);
  }
  return Number(text);
}
