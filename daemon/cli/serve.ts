import { ConfigError } from '../errors.ts';
import { loadConfig } from '../config/load.ts';
import { listenError, preflight } from '../config/preflight.ts';
import { errnoOf } from '../fs-errors.ts';
import { option } from './args.ts';
import { defineCommand } from './command.ts';
import { npmLauncher, watchLauncher } from './npm-launcher.ts';

/** sysexits EX_CONFIG: systemd is told not to restart on it (RestartPreventExitStatus). */
export const EXIT_CONFIG = 78;

/** Flags that set one configuration key each; messages name the flag as typed. */
const FLAG_KEYS: Record<string, string> = {
  host: 'http.host',
  port: 'http.port',
  'state-dir': 'paths.state',
  'cache-dir': 'paths.cache',
  'log-level': 'log.level',
};

export const serve = defineCommand({
  name: 'serve',
  summary: 'run the gateway',
  description: `Runs the gateway. Without --config it reads /etc/modelferry/config.yaml when present, else
runs on the embedded default (config/default.yaml). MODELFERRY_<SECTION>_<KEY> variables
override the file; flags override both. Folders and the listen address are checked before
anything is opened; a configuration that cannot work exits 78. Started by npm (npx, npm
exec, npm start), it stops when that npm process does, as on SIGTERM: stopping the job stops
the gateway.`,
  flags: {
    config: { placeholder: 'FILE', help: 'YAML or JSON config file (default /etc/modelferry/config.yaml when present)' },
    host: { placeholder: 'ADDRESS', help: 'listen address (http.host)' },
    port: { placeholder: 'PORT', help: 'listen port (http.port)' },
    'state-dir': { placeholder: 'DIR', help: 'database folder (paths.state)' },
    'cache-dir': { placeholder: 'DIR', help: 'model blob folder (paths.cache)' },
    'log-level': { placeholder: 'LEVEL', help: 'fatal, error, warn, info, debug, trace or silent (log.level)' },
    'no-mdns': { kind: 'boolean', help: 'do not advertise on the LAN (mdns.enabled=false)' },
    set: { kind: 'list', placeholder: 'SECTION.KEY=VALUE', help: 'any other configuration key' },
  },
  async run(args) {
    // SIGHUP's default action ends the process, which systemd counts as a clean stop (no
    // restart): a `systemctl reload` while the gateway starts must not take it down. One
    // that comes before the config reloader listens is passed on to it once it does (a
    // start that fails exits anyway).
    let hangupDuringStart = false;
    const onEarlyHangup = () => { hangupDuringStart = true; };
    process.on('SIGHUP', onEarlyHangup);
    const flags: Record<string, string> = {};
    const flagNames: Record<string, string> = {};
    for (const [flag, key] of Object.entries(FLAG_KEYS)) {
      const value = option(args, flag);
      if (value !== undefined) {
        flags[key] = value;
        flagNames[key] = `--${flag}`;
      }
    }
    if (args.flags.has('no-mdns')) {
      flags['mdns.enabled'] = 'false';
      flagNames['mdns.enabled'] = '--no-mdns';
    }
    for (const assignment of args.lists.get('set') ?? []) {
      const eq = assignment.indexOf('=');
      if (eq < 1) throw new ConfigError(`--set takes section.key=value, got ${assignment}`);
      const key = assignment.slice(0, eq);
      flags[key] = assignment.slice(eq + 1);
      flagNames[key] = `--set ${key}`;
    }
    const sources = { file: option(args, 'config'), flags, flagNames };
    const loaded = loadConfig(sources);
    const { config, files, origin } = loaded;
    await preflight(loaded);
    // The daemon is loaded only here, so that client commands start quickly.
    const [{ Gateway }, { createLogger }] = await Promise.all([import('../gateway.ts'), import('../log.ts')]);
    const log = createLogger(config.log.level);
    log.info({
      files,
      state: config.paths.state,
      stateFrom: origin('paths.state'),
      cache: config.paths.cache,
      cacheFrom: origin('paths.cache'),
    }, 'configuration loaded');
    // files[0] is the embedded default; a file after it is the one backups carry.
    // A changed config file or SIGHUP reloads from the same file, environment and flags.
    const gateway = new Gateway(config, log, { configFile: files.length > 1 ? files.at(-1)! : null, reload: () => loadConfig(sources) });

    // Handlers go in before start, so a SIGTERM during start-up still stops cleanly, and stay
    // for the whole run, so a second signal while draining cannot kill the process before
    // the database is closed.
    let stop: (why: string) => void = () => {};
    const stopRequested = new Promise<string>((resolve) => { stop = resolve; });
    const onSignal = (signal: NodeJS.Signals) => {
      log.info({ signal }, 'stopping');
      stop(signal);
    };
    process.on('SIGTERM', onSignal);
    process.on('SIGINT', onSignal);
    // Started by npx or npm start: stop with the job that npm is (see npm-launcher.ts).
    const launcher = npmLauncher();
    const stopWatching = launcher.length === 0 ? () => {} : watchLauncher(launcher, (gone) => {
      log.info({ launcher: gone }, `stopping: ${gone === launcher.at(-1) ? 'npm' : 'the shell npm ran'} (pid ${gone.pid}), which started the gateway, has exited`);
      stop('npm exiting');
    });
    if (launcher.length > 0) log.info({ launcher: launcher.at(-1) }, 'started by npm: the gateway stops when npm does');
    try {
      await startOrGiveUp(gateway.start(), stopRequested, config.http.shutdownGraceSeconds);
      process.off('SIGHUP', onEarlyHangup);
      if (hangupDuringStart && process.listenerCount('SIGHUP') > 0) process.kill(process.pid, 'SIGHUP');
      await stopRequested;
      await gateway.stop();
      log.info('stopped');
      return 0;
    } catch (error) {
      await gateway.stop();
      if (['EADDRINUSE', 'EACCES', 'EADDRNOTAVAIL'].includes(errnoOf(error) ?? '') && (error as { syscall?: string }).syscall === 'listen') {
        const tls = config.tls.enabled && (error as { port?: number }).port === config.tls.port;
        throw listenError(error, config.http.host, tls ? config.tls.port : config.http.port, origin, tls ? 'tls.port' : 'http.port');
      }
      throw error;
    } finally {
      stopWatching();
      log.flush();
      process.off('SIGTERM', onSignal);
      process.off('SIGINT', onSignal);
      process.off('SIGHUP', onEarlyHangup);
    }
  },
});

/**
 * A start-up stuck on something outside the process (a hung network file system) must
 * not make the daemon unkillable: once asked to stop, it waits the grace period, then
 * gives up with an error.
 */
async function startOrGiveUp(start: Promise<void>, stopRequested: Promise<string>, graceSeconds: number): Promise<void> {
  let timer: NodeJS.Timeout | undefined;
  const givenUp = stopRequested.then((why) => new Promise<never>((_, reject) => {
    timer = setTimeout(() => reject(new Error(`start-up did not finish within ${graceSeconds} s of ${why} (http.shutdownGraceSeconds); giving up`)), graceSeconds * 1000);
    timer.unref();
  }));
  try {
    await Promise.race([start, givenUp]);
  } finally {
    clearTimeout(timer);
  }
}
