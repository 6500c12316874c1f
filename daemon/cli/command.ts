import type { Args, ArgsSpec, FlagSpec, OperandSpec } from './args.ts';

/**
 * A `modelferry` verb, declared in one place: what it takes and what it does. Parsing
 * (unknown options refused with the closest known one), `--help` and the one-line entry in
 * `modelferry --help` all come from this declaration. Add a verb to `commands.ts`.
 */
export interface Command extends ArgsSpec {
  name: string;
  /** One line for the command list of `modelferry --help`. */
  summary: string;
  /** Paragraphs after the usage line of `modelferry <name> --help`. */
  description: string;
  /** Client commands get --gateway and --token. */
  client?: boolean;
  run(args: Args): Promise<number>;
}

export interface CommandDeclaration extends Omit<Command, 'operands' | 'flags'> {
  operands?: readonly OperandSpec[];
  flags?: Readonly<Record<string, FlagSpec>>;
}

export const CLIENT_FLAGS: Readonly<Record<string, FlagSpec>> = {
  gateway: { placeholder: 'URL', help: 'the gateway (or MODELFERRY_GATEWAY; default http://localhost:8080; http:// may be left out)' },
  token: { placeholder: 'TOKEN', help: 'a bearer token from the gateway\'s auth.tokens (or MODELFERRY_TOKEN)' },
};

export function defineCommand(declaration: CommandDeclaration): Command {
  return {
    ...declaration,
    operands: declaration.operands ?? [],
    flags: { ...declaration.flags, ...(declaration.client ? CLIENT_FLAGS : {}) },
  };
}

function operandsText(operands: readonly OperandSpec[]): string {
  return operands.map((o) => {
    const text = o.repeated ? `${o.name} [${o.name} ...]` : o.name;
    return o.optional ? `[${text}]` : text;
  }).join(' ');
}

function flagText(name: string, flag: FlagSpec): string {
  const kind = flag.kind ?? 'value';
  return kind === 'boolean' ? `--${name}` : `--${name} ${flag.placeholder ?? 'VALUE'}`;
}

function synopsis(command: Command): string {
  const flags = Object.entries(command.flags);
  const required = flags.filter(([, flag]) => flag.required).map(([name, flag]) => flagText(name, flag));
  const parts = ['modelferry', command.name, operandsText(command.operands), ...required];
  if (flags.some(([, flag]) => !flag.required)) parts.push('[options]');
  return `usage: ${parts.filter(Boolean).join(' ')}`;
}

/** The text of `modelferry <name> --help`. */
export function commandHelp(command: Command): string {
  const flags = Object.entries(command.flags);
  const lines = [synopsis(command), '', command.description.trim()];
  if (flags.length > 0) {
    lines.push('', 'options:');
    const rows = flags.map(([name, flag]) => [flagText(name, flag), flag.help + (flag.kind === 'list' ? ' (repeatable)' : '') + (flag.required ? ' (required)' : '')] as const);
    const width = Math.max(...rows.map(([left]) => left.length)) + 2;
    for (const [left, right] of rows) lines.push(`  ${left.padEnd(width)}${right}`);
  }
  return lines.join('\n');
}

/** The usage line shown with a usage error. */
export function commandUsageLine(command: Command): string {
  return synopsis(command);
}

/** The text of `modelferry --help`. */
export function topLevelHelp(commands: readonly Command[], version: string): string {
  const width = Math.max(...commands.map((c) => c.name.length)) + 2;
  return [
    `modelferry ${version}: delivers ExecuTorch models to ESP32-S3 devices through a gateway on their LAN`,
    '',
    'usage: modelferry <command> [arguments] [options]',
    '       modelferry <command> --help     what a command takes',
    '       modelferry --version',
    '',
    'commands:',
    ...commands.map((c) => `  ${c.name.padEnd(width)}${c.summary}`),
    '',
    'Client commands talk to the gateway over HTTP: --gateway URL (or MODELFERRY_GATEWAY,',
    'default http://localhost:8080) and --token TOKEN (or MODELFERRY_TOKEN).',
    'Exit codes: 0 done, 1 refused or unreachable, 2 usage, 78 invalid configuration.',
  ].join('\n');
}
