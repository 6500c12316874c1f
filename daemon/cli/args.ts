/** Parsed command line: positionals, `--key value` options, boolean flags, repeatable options. */
export interface Args {
  positionals: string[];
  options: Map<string, string>;
  flags: Set<string>;
  lists: Map<string, string[]>;
}

const BOOLEAN_FLAGS = new Set(['help', 'no-mdns', 'json', 'force', 'strict']);
const REPEATABLE = new Set(['set']);

export class UsageError extends Error {
  constructor(message: string) {
    super(message);
    this.name = 'UsageError';
  }
}

export function parseArgs(argv: string[]): Args {
  const args: Args = { positionals: [], options: new Map(), flags: new Set(), lists: new Map() };
  for (let i = 0; i < argv.length; i++) {
    const arg = argv[i]!;
    if (arg === '-h') {
      args.flags.add('help');
      continue;
    }
    if (!arg.startsWith('--') || arg === '--') {
      args.positionals.push(arg);
      continue;
    }
    const eq = arg.indexOf('=');
    const name = arg.slice(2, eq < 0 ? undefined : eq);
    if (BOOLEAN_FLAGS.has(name)) {
      if (eq >= 0) throw new UsageError(`--${name} takes no value`);
      args.flags.add(name);
      continue;
    }
    let value: string | undefined = eq < 0 ? undefined : arg.slice(eq + 1);
    if (value === undefined) {
      value = argv[++i];
      if (value === undefined) throw new UsageError(`--${name} needs a value`);
    }
    if (REPEATABLE.has(name)) args.lists.set(name, [...(args.lists.get(name) ?? []), value]);
    else args.options.set(name, value);
  }
  return args;
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
