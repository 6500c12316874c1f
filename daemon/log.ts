import { pino, type Logger } from 'pino';

export type { Logger };

// Structured JSON on stdout: journald keeps it under systemd, and `jq` reads it by hand.
// Secrets never reach a log line: the paths below are redacted wherever they appear.
export function createLogger(level: string, destination?: NodeJS.WritableStream): Logger {
  return pino(
    {
      level,
      base: { service: 'modelferry' },
      redact: ['token', '*.token', 'authorization', '*.authorization', 'headers.authorization'],
    },
    destination ?? pino.destination({ fd: 1, sync: false }),
  );
}
