#!/usr/bin/env node
import { readFileSync } from 'node:fs';
import { ConfigError, isModelferryError } from '../errors.ts';
import { UsageError, editDistance, parseArgs } from './args.ts';
import { CliError } from './cli-error.ts';
import { commandHelp, commandUsageLine, topLevelHelp, type Command } from './command.ts';
import { commands } from './commands.ts';
import { ClientError } from './gateway-client.ts';
import { EXIT_CONFIG } from './serve.ts';

const EXIT_USAGE = 2;

const { version } = JSON.parse(readFileSync(new URL('../../package.json', import.meta.url), 'utf8')) as { version: string };

async function main(argv: string[]): Promise<number> {
  const [name, ...rest] = argv;
  const help = topLevelHelp(commands, version);
  if (name === undefined) {
    console.error(help);
    return EXIT_USAGE;
  }
  if (name === '--help' || name === '-h' || name === 'help') {
    const about = name === 'help' ? commands.find((c) => c.name === rest[0]) : undefined;
    console.log(about ? commandHelp(about) : help);
    return 0;
  }
  if (name === '--version' || name === '-V' || name === 'version') {
    console.log(`modelferry ${version}`);
    return 0;
  }
  const command = commands.find((c) => c.name === name);
  if (!command) {
    const close = commands.map((c) => c.name).filter((c) => editDistance(name, c) <= 2);
    const what = name.startsWith('-') ? `unknown option ${name} (options go after the command)` : `unknown command ${name}`;
    console.error(`modelferry: ${what}${close.length ? `; did you mean ${close.join(' or ')}?` : ''}\nusage: modelferry <command> [arguments] [options]   ("modelferry --help" lists the commands)`);
    return EXIT_USAGE;
  }
  return run(command, rest);
}

async function run(command: Command, argv: string[]): Promise<number> {
  const prefix = `modelferry ${command.name}`;
  try {
    const args = parseArgs(argv, command);
    if (args.flags.has('help')) {
      console.log(commandHelp(command));
      return 0;
    }
    return await command.run(args);
  } catch (error) {
    if (error instanceof UsageError) {
      console.error(`${prefix}: ${error.message}\n${commandUsageLine(command)}   ("${prefix} --help" explains)`);
      return EXIT_USAGE;
    }
    if (error instanceof ConfigError) {
      console.error(`${prefix}: ${error.message}`);
      return EXIT_CONFIG;
    }
    if (error instanceof CliError) {
      console.error(`${prefix}: ${error.message}`);
      return error.exitCode;
    }
    if (error instanceof ClientError) {
      console.error(`${prefix}: ${error.message}`);
      return 1;
    }
    if (isModelferryError(error)) {
      console.error(`${prefix}: ${error.code}: ${error.message}`);
      return 1;
    }
    console.error(`${prefix}: ${(error as Error).message}`);
    return 1;
  }
}

process.exitCode = await main(process.argv.slice(2));
// Whatever might still hold the event loop (a file system call that never returns, a
// keep-alive socket) must not keep a finished command alive; output is flushed by then.
setTimeout(() => process.exit(), 2000).unref();
