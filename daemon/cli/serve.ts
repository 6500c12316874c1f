import { ConfigError } from '../config/config-error.ts';
import { loadConfig } from '../config/load.ts';
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
  // The daemon is loaded only here, so that client commands start quickly.
  const [{ Gateway }, { createLogger }] = await Promise.all([import('../gateway.ts'), import('../log.ts')]);
  const log = createLogger(config.log.level);
  log.info({ files }, 'configuration loaded');
  // files[0] is the embedded default; a file after it is the one backups carry.
  const gateway = new Gateway(config, log, { configFile: files.length > 1 ? files.at(-1)! : null });

  // Handlers go in before start, so a SIGTERM during start-up still stops cleanly, and stay
  // for the whole run, so a second signal while draining cannot kill the process before
  // the database is closed.
  let signalled: (signal: NodeJS.Signals) => void = () => {};
  const stopRequested = new Promise<NodeJS.Signals>((resolve) => { signalled = resolve; });
  const onSignal = (signal: NodeJS.Signals) => {
    log.info({ signal }, 'stopping');
    signalled(signal);
  };
  process.on('SIGTERM', onSignal);
  process.on('SIGINT', onSignal);
  try {
    await gateway.start();
    await stopRequested;
    await gateway.stop();
    log.info('stopped');
    return 0;
  } catch (error) {
    await gateway.stop();
    throw error;
  } finally {
    log.flush();
    process.off('SIGTERM', onSignal);
    process.off('SIGINT', onSignal);
  }
}
