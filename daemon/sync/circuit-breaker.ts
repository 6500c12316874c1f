import type { CircuitState } from '../metrics.ts';

export type BreakerState = CircuitState;

/**
 * Stops scheduled syncs from hammering a store that keeps failing: after `threshold`
 * failures in a row it opens for `cooldownMs`, then lets one attempt through (half_open);
 * a success closes it, a failure opens it again.
 */
export class CircuitBreaker {
  readonly #threshold: number;
  readonly #cooldownMs: number;
  #failures = 0;
  #openUntil = 0;

  constructor(threshold: number, cooldownMs: number) {
    this.#threshold = threshold;
    this.#cooldownMs = cooldownMs;
  }

  state(now: number): BreakerState {
    if (this.#failures < this.#threshold) return 'closed';
    return now < this.#openUntil ? 'open' : 'half_open';
  }

  allows(now: number): boolean {
    return this.state(now) !== 'open';
  }

  get failures(): number {
    return this.#failures;
  }

  /** When an open breaker lets the next attempt through (ms since the epoch), else null. */
  get openUntil(): number | null {
    return this.#failures >= this.#threshold ? this.#openUntil : null;
  }

  success(): void {
    this.#failures = 0;
    this.#openUntil = 0;
  }

  failure(now: number): void {
    this.#failures++;
    if (this.#failures >= this.#threshold) this.#openUntil = now + this.#cooldownMs;
  }
}
