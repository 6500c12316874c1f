import { readFileSync } from 'node:fs';

/**
 * `npx modelferry serve &` makes the gateway npm's grandchild: npm exec runs `sh -c`, which
 * runs node. Ending that job reaches npm and not the gateway: npm forwards SIGTERM and
 * SIGINT to the shell only, which dies of them without passing them on, and npm has no
 * handler for SIGHUP (a closing terminal), which ends npm alone; the SIGHUP that the job's
 * whole process group gets is, to the gateway, a config reload. Either way the gateway was
 * left running with no job to stop it. So `serve` started by npm (npx, npm exec, npm start,
 * npm run) finds npm and the processes between, and stops as on SIGTERM when one is gone.
 * Linux only (it reads /proc); a gateway under systemd has no npm above it.
 */

export interface LauncherProcess {
  pid: number;
  /** Clock ticks after boot (/proc/PID/stat field 22): a reused pid has another. */
  startTime: string;
  command: string;
}

/** Processes between this one and npm, nearest first; how far up npm may be. */
const MAX_DEPTH = 3;

/**
 * npm and the processes between it and this one, nearest first; empty when this process
 * was not started by npm (its environment has no npm_lifecycle_event) or npm is not found.
 */
export function npmLauncher(env: NodeJS.ProcessEnv = process.env, ppid = process.ppid): LauncherProcess[] {
  if (!env.npm_lifecycle_event) return [];
  const chain: LauncherProcess[] = [];
  for (let pid = ppid; pid > 1 && chain.length < MAX_DEPTH;) {
    const stat = statOf(pid);
    if (stat === undefined || stat.state === 'Z') return [];
    const command = commandOf(pid);
    chain.push({ pid, startTime: stat.startTime, command });
    if (isNpm(command)) return chain;
    pid = stat.ppid;
  }
  return [];
}

/**
 * Calls `onGone` once with the first process of `chain` that has ended (or is a zombie),
 * checking every `intervalMs`. Returns what stops the watch. The timer does not keep the
 * process alive.
 */
export function watchLauncher(chain: LauncherProcess[], onGone: (gone: LauncherProcess) => void, intervalMs = 500): () => void {
  const timer = setInterval(() => {
    const gone = chain.find((process) => {
      const stat = statOf(process.pid);
      return stat === undefined || stat.state === 'Z' || stat.startTime !== process.startTime;
    });
    if (gone === undefined) return;
    clearInterval(timer);
    onGone(gone);
  }, intervalMs);
  timer.unref();
  return () => clearInterval(timer);
}

/** npm sets its title to "npm <command> ..."; without a title it is node running npm-cli.js. */
function isNpm(command: string): boolean {
  const [first = '', second = ''] = command.split(' ');
  const npm = /(^|\/)(npm|npx)(-cli\.js)?$/;
  return npm.test(first) || npm.test(second);
}

function statOf(pid: number): { state: string; ppid: number; startTime: string } | undefined {
  let text: string;
  try {
    text = readFileSync(`/proc/${pid}/stat`, 'utf8');
  } catch {
    return undefined;
  }
  // The command name (field 2) is in parentheses and may hold spaces and parentheses itself.
  const fields = text.slice(text.lastIndexOf(')') + 2).split(' ');
  return { state: fields[0]!, ppid: Number(fields[1]), startTime: fields[19]! };
}

function commandOf(pid: number): string {
  try {
    return readFileSync(`/proc/${pid}/cmdline`, 'utf8').split('\0').filter(Boolean).join(' ');
  } catch {
    return '';
  }
}
