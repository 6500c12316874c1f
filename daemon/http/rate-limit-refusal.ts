import { ModelferryError } from '../errors.ts';
import type { SeenOutcome } from '../devices/device-registry.ts';

/**
 * The refusal for a new MAC from an address that introduced too many lately (429 with
 * Retry-After), or undefined when the device may go on. Polls on both paths and reports
 * take it from here.
 */
export function rateLimitRefusal(outcome: SeenOutcome): ModelferryError | undefined {
  if (outcome.kind !== 'rate_limited') return undefined;
  return new ModelferryError('rate_limited', `this address introduced too many new devices lately; try again in ${outcome.retryAfterSeconds} s`, { 'Retry-After': String(outcome.retryAfterSeconds) });
}
