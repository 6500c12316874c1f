import { fstatSync } from 'node:fs';
import { pino, type DestinationStream, type Logger } from 'pino';

export type { Logger };

const CENSOR = '[redacted]';

/**
 * Names of fields that hold a secret, compared without case, `-` or `_`: tokens of every
 * kind (`token`, `devicesToken`, `sessionToken`), secrets (`secretAccessKey`, `secret`),
 * passwords, private keys, and the headers that carry credentials.
 */
const SECRET_NAME = /(token|secret|secretaccesskey|password|privatekey|^authorization|^proxyauthorization|^cookie|^setcookie)$/;

/** How deep a logged object is searched; deeper than any object the gateway logs. */
const MAX_DEPTH = 12;

/**
 * `value` with every field named like a secret replaced by `[redacted]`, at any depth of
 * plain objects and arrays (request headers, configs, nested options), so a careless
 * `log.info({ config })` or `log.warn({ req })` writes no secret. Unchanged parts are shared,
 * not copied, and the caller's objects are never modified. Other objects (errors, buffers)
 * are left to pino's serializers.
 */
export function redactSecrets<T>(value: T, depth = 0, seen = new Set<object>()): T {
  if (value === null || typeof value !== 'object' || depth > MAX_DEPTH || seen.has(value)) return value;
  const prototype = Object.getPrototypeOf(value);
  const isArray = Array.isArray(value);
  if (!isArray && prototype !== Object.prototype && prototype !== null) return value;
  seen.add(value);
  let copy: Record<string, unknown> | unknown[] | undefined;
  for (const [key, field] of Object.entries(value)) {
    const secret = !isArray && field !== undefined && SECRET_NAME.test(key.toLowerCase().replace(/[-_]/g, ''));
    const next = secret ? CENSOR : redactSecrets(field, depth + 1, seen);
    if (next !== field) {
      copy ??= isArray ? [...(value as unknown[])] : { ...(value as Record<string, unknown>) };
      (copy as Record<string, unknown>)[key] = next;
    }
  }
  seen.delete(value);
  return (copy ?? value) as T;
}

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
      formatters: { log: (object) => redactSecrets(object) },
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
