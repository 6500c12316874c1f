/** Past this many addresses tracked at once the oldest are dropped: an attacker with many
 * addresses must not make the limiter itself grow without bound. */
const MAX_ADDRESSES = 10_000;

interface Bucket {
  tokens: number;
  at: number;
}

/**
 * A token bucket per client address: `perMinute` events in a burst, refilled at
 * `perMinute` a minute.
 */
export class AddressRateLimit {
  readonly #perMinute: number;
  readonly #buckets = new Map<string, Bucket>();

  constructor(perMinute: number) {
    this.#perMinute = perMinute;
  }

  /** Takes one token; when none is left, the seconds until there is one. */
  take(address: string, now: number): { ok: true } | { ok: false; retryAfterSeconds: number } {
    const rate = this.#perMinute / 60_000;
    const bucket = this.#buckets.get(address);
    let tokens = this.#perMinute;
    if (bucket) {
      tokens = Math.min(this.#perMinute, bucket.tokens + (now - bucket.at) * rate);
      this.#buckets.delete(address);
    }
    if (tokens < 1) {
      this.#buckets.set(address, { tokens, at: now });
      return { ok: false, retryAfterSeconds: Math.max(1, Math.ceil((1 - tokens) / rate / 1000)) };
    }
    // Re-inserted at the end: the map's order is least recently used first.
    this.#buckets.set(address, { tokens: tokens - 1, at: now });
    if (this.#buckets.size > MAX_ADDRESSES) this.#buckets.delete(this.#buckets.keys().next().value!);
    return { ok: true };
  }
}
