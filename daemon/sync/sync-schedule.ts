import type { ScheduledTask } from 'node-cron';
import type { Logger } from '../log.ts';

/**
 * Runs `run` on a cron schedule, each start delayed by up to `maxRandomDelaySeconds` (so a
 * fleet of gateways does not hit the store at the same second), never two at once.
 */
export async function scheduleSync(timing: { schedule: string; maxRandomDelaySeconds: number }, run: () => Promise<unknown>, log: Logger): Promise<ScheduledTask> {
  // Loaded only by gateways with an upstream: most sites have none, and it costs memory.
  const { createTask } = await import('node-cron');
  const task = createTask(timing.schedule, run, {
    name: 'upstream-sync',
    noOverlap: true,
    maxRandomDelay: timing.maxRandomDelaySeconds * 1000,
    unref: true,
    logger: {
      info: (message) => log.debug(message),
      warn: (message) => log.warn(message),
      error: (message, err) => log.error({ err: err ?? message }, 'scheduled sync failed'),
      debug: (message) => log.debug({ detail: String(message) }, 'scheduler'),
    },
  });
  await task.start();
  return task;
}
