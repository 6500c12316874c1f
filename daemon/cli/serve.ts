import { ConfigError, loadConfig } from '../config/load.ts';
import { Gateway } from '../gateway.ts';
import { createLogger } from '../log.ts';
import { option, type Args } from './args.ts';

/** sysexits EX_CONFIG: systemd is told not to restart on it (RestartPreventExitStatus). */
export const EXIT_CONFIG = 78;

const FLAG_KEYS: Record<string, string> = {
  host: 'http.host',
  port: 'http.port',
  'state-dir': 'paths.state',
  'cache-dir': 'paths.cache',
  'log-level': 'log.level',
};

export const serveHelp = `modelferry serve [--config FILE] [--host H] [--port P] [--state-dir DIR] [--cache-dir DIR]
                 [--log-level L] [--no-mdns] [--set section.key=value ...]
Runs the gateway. Without --config it reads /etc/modelferry/config.yaml when present, else
runs on the embedded default (config/default.yaml). MODELFERRY_<SECTION>_<KEY> variables
override the file; flags override both.`;

export async function serve(args: Args): Promise<number> {
  const flags: Record<string, string> = {};
  for (const [flag, key] of Object.entries(FLAG_KEYS)) {
    const value = option(args, flag);
    if (value !== undefined) flags[key] = value;
  }
  if (args.flags.has('no-mdns')) flags['mdns.enabled'] = 'false';
  for (const assignment of args.lists.get('set') ?? []) {
    const eq = assignment.indexOf('=');
    if (eq < 1) throw new ConfigError(`--set takes section.key=value, got ${assignment}`);
    flags[assignment.slice(0, eq)] = assignment.slice(eq + 1);
  }
  const { config, files } = loadConfig({ file: option(args, 'config'), flags });
  const log = createLogger(config.log.level);
  log.info({ files }, 'configuration loaded');
  const gateway = new Gateway(config, log);
  await gateway.start();

  return new Promise((resolve) => {
    let stopping = false;
    const stop = (signal: NodeJS.Signals) => {
      if (stopping) return;
      stopping = true;
      log.info({ signal }, 'stopping');
      gateway.stop().then(() => {
        log.info('stopped');
        log.flush();
        resolve(0);
      }, (error: unknown) => {
        log.error({ err: error }, 'stop failed');
        log.flush();
        resolve(1);
      });
    };
    process.once('SIGTERM', stop);
    process.once('SIGINT', stop);
  });
}
