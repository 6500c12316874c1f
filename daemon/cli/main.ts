#!/usr/bin/env node
import { ConfigError } from '../config/config-error.ts';
import { isModelferryError } from '../errors.ts';
import { UsageError, parseArgs } from './args.ts';
import { ClientError } from './gateway-client.ts';
import { EXIT_CONFIG, serve, serveHelp } from './serve.ts';
import * as catalog from './catalog-commands.ts';
import * as keys from './key-commands.ts';
import * as backups from './backup-commands.ts';
import { doctor, doctorHelp } from './doctor-command.ts';
import * as program from './program-commands.ts';
import * as store from './store-commands.ts';

interface Command {
  help: string;
  run: (args: ReturnType<typeof parseArgs>) => Promise<number>;
}

const commands: Record<string, Command> = {
  serve: { help: serveHelp, run: serve },
  push: { help: catalog.pushHelp, run: catalog.push },
  assign: { help: catalog.assignHelp, run: catalog.assign },
  unassign: { help: catalog.unassignHelp, run: catalog.unassign },
  group: { help: catalog.groupHelp, run: catalog.group },
  models: { help: catalog.modelsHelp, run: catalog.models },
  delete: { help: catalog.deleteHelp, run: catalog.deleteModel },
  devices: { help: catalog.devicesHelp, run: catalog.devices },
  check: { help: catalog.checkHelp, run: catalog.check },
  inspect: { help: program.inspectHelp, run: program.inspect },
  rollout: { help: program.rolloutHelp, run: program.rollout },
  sync: { help: store.syncHelp, run: store.sync },
  publish: { help: store.publishHelp, run: store.publish },
  keygen: { help: keys.keygenHelp, run: keys.keygen },
  sign: { help: keys.signHelp, run: keys.sign },
  doctor: { help: doctorHelp, run: doctor },
  backup: { help: backups.backupHelp, run: (args) => backups.backup(args) },
  restore: { help: backups.restoreHelp, run: backups.restore },
};

const usage = `usage: modelferry <command> [options]   (modelferry <command> --help for more)
commands: ${Object.keys(commands).join(', ')}`;

async function main(argv: string[]): Promise<number> {
  const [name, ...rest] = argv;
  if (name === undefined || name === '--help' || name === '-h' || name === 'help') {
    console.log(usage);
    return name === undefined ? 2 : 0;
  }
  const command = commands[name];
  if (!command) {
    console.error(`modelferry: unknown command ${name}\n${usage}`);
    return 2;
  }
  try {
    const args = parseArgs(rest);
    if (args.flags.has('help')) {
      console.log(command.help);
      return 0;
    }
    return await command.run(args);
  } catch (error) {
    if (error instanceof UsageError) {
      console.error(`modelferry ${name}: ${error.message}\n${command.help}`);
      return 2;
    }
    if (error instanceof ConfigError) {
      console.error(`modelferry: ${error.message}`);
      return EXIT_CONFIG;
    }
    if (error instanceof ClientError) {
      console.error(`modelferry ${name}: ${error.message}`);
      return 1;
    }
    if (isModelferryError(error)) {
      console.error(`modelferry ${name}: ${error.code}: ${error.message}`);
      return 1;
    }
    console.error(`modelferry ${name}: ${(error as Error).message}`);
    return 1;
  }
}

process.exitCode = await main(process.argv.slice(2));
