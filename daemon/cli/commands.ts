import * as backups from './backup-commands.ts';
import * as catalog from './catalog-commands.ts';
import { doctorCommand } from './doctor-command.ts';
import { fleet } from './fleet-command.ts';
import type { Command } from './command.ts';
import * as keys from './key-commands.ts';
import * as program from './program-commands.ts';
import { rollback } from './rollback-command.ts';
import { serve } from './serve.ts';
import * as store from './store-commands.ts';

/**
 * Every `modelferry` verb, in the order `modelferry --help` lists them. A new verb is a
 * defineCommand() in its own file and one line here.
 */
export const commands: readonly Command[] = [
  serve,
  catalog.push,
  catalog.assign,
  catalog.unassign,
  catalog.assignments,
  catalog.group,
  catalog.ungroup,
  catalog.groups,
  catalog.models,
  catalog.deleteModel,
  catalog.devices,
  catalog.check,
  rollback,
  program.inspect,
  program.rollout,
  store.sync,
  store.publish,
  fleet,
  keys.keygen,
  keys.sign,
  doctorCommand,
  backups.backupCommand,
  backups.restoreCommand,
];
