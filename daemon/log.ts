import { fstatSync } from 'node:fs';
import { pino, type DestinationStream, type Logger } from 'pino';

export type { Logger };

/**
 * Where a secret may sit in a logged object: tokens (config, headers), private keys.
 * pino replaces them wherever these paths match, so a careless `log.info({ config })`
 * still writes no secret.
 */
export const REDACTED_PATHS = [
  'token', '*.token', '*.*.token', 'tokens[*].token', '*.tokens[*].token', '*.*.tokens[*].token',
  'authorization', '*.authorization', '*.*.authorization', '*.headers.cookie',
  'privateKey', '*.privateKey', 'secret', '*.secret', 'password', '*.password',
];

/** Syslog priority of each pino level: what journald files a line under. */
export const SYSLOG_PRIORITY: Record<number, number> = {
  10: 7, // trace → debug
  20: 7, // debug → debug
  30: 6, // info → info
  40: 4, // warn → warning
  50: 3, // error → err
  60: 2, // fatal → crit
};

export interface LoggerOptions {
  /**
   * Start each line with `<N>`, its syslog priority, which journald strips and records
   * (systemd's SyslogLevelPrefix). Default: when stdout is the journal (JOURNAL_STREAM).
   */
  priorityPrefix?: boolean;
}

// Structured JSON on stdout: journald keeps it under systemd, and `jq` reads it by hand.
export function createLogger(level: string, destination?: DestinationStream, options: LoggerOptions = {}): Logger {
  const stream = destination ?? pino.destination({ fd: 1, sync: false });
  const prefix = options.priorityPrefix ?? (destination === undefined && stdoutIsJournal());
  return pino(
    {
      level,
      base: { service: 'modelferry' },
      redact: { paths: REDACTED_PATHS, censor: '[redacted]' },
    },
    prefix ? new PriorityPrefix(stream) : stream,
  );
}

/**
 * systemd sets JOURNAL_STREAM to the device and inode of the journal stream it connected;
 * stdout is that stream only when they match (not when the output was redirected).
 */
export function stdoutIsJournal(env: NodeJS.ProcessEnv = process.env): boolean {
  const [device, inode] = (env.JOURNAL_STREAM ?? '').split(':');
  if (!device || !inode) return false;
  try {
    const stat = fstatSync(1, { bigint: true });
    return String(stat.dev) === device && String(stat.ino) === inode;
  } catch {
    return false;
  }
}

/** Prefixes each pino line with `<priority>`; passes flushing through to the real stream. */
class PriorityPrefix implements DestinationStream {
  readonly #stream: DestinationStream & { flush?: (cb?: (error?: Error) => void) => void; flushSync?: () => void; end?: () => void };

  constructor(stream: DestinationStream) {
    this.#stream = stream;
  }

  write(line: string): void {
    // pino writes the level first: `{"level":30,...`.
    const level = Number(/^\{"level":(\d+)/.exec(line)?.[1]);
    this.#stream.write(`<${SYSLOG_PRIORITY[level] ?? 6}>${line}`);
  }

  flush(callback?: (error?: Error) => void): void {
    if (this.#stream.flush) this.#stream.flush(callback);
    else callback?.();
  }

  flushSync(): void {
    this.#stream.flushSync?.();
  }

  end(): void {
    this.#stream.end?.();
  }
}
