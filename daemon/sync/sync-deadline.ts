import { ModelferryError } from '../errors.ts';

/**
 * The time a download may add to a sync's deadline: one second per this many bytes, so a
 * large first sync over a slow link still ends, while a store that drips a byte now and then
 * (which no idle timeout catches) cannot hold a run past its deadline.
 */
export const DEADLINE_BYTES_PER_SECOND = 32 * 1024;

export interface SyncDeadline {
  /** Aborted, with an `upstream_timeout` as its reason, when the deadline passes. */
  readonly signal: AbortSignal;
  /** The run knows now how many bytes it must download: the deadline moves accordingly. */
  allowFor(bytes: number): void;
  /** The run is over: no more timer. */
  clear(): void;
}

/** A run's overall deadline: `upstream.syncTimeoutSeconds` from now, plus what allowFor() adds. */
export function startDeadline(seconds: number): SyncDeadline {
  const controller = new AbortController();
  const startedAt = Date.now();
  let bytes = 0;
  let timer: NodeJS.Timeout | undefined;
  const arm = () => {
    clearTimeout(timer);
    const limitSeconds = seconds + bytes / DEADLINE_BYTES_PER_SECOND;
    const reason = new ModelferryError('upstream_timeout', `the sync did not finish within its deadline of ${Math.round(limitSeconds)} s `
      + `(upstream.syncTimeoutSeconds ${seconds} s${bytes > 0 ? `, plus 1 s per ${DEADLINE_BYTES_PER_SECOND / 1024} KiB of the ${bytes} bytes to download` : ''}): `
      + 'the store sends too slowly; devices keep what they have, and the next sync resumes the downloads');
    timer = setTimeout(() => controller.abort(reason), Math.max(0, startedAt + limitSeconds * 1000 - Date.now()));
    timer.unref();
  };
  arm();
  return {
    signal: controller.signal,
    allowFor(more) {
      bytes = more;
      arm();
    },
    clear: () => clearTimeout(timer),
  };
}
