/**
 * Capped exponential backoff with full jitter: attempt n waits a random time in
 * [min, min(max, base * factor^n)]. The random source is injectable for tests.
 */
export interface BackoffOptions {
  minMs: number;
  maxMs: number;
  factor?: number;
  random?: () => number;
}

export class Backoff {
  #attempt = 0;
  readonly #opts: Required<BackoffOptions>;

  constructor(opts: BackoffOptions) {
    this.#opts = { factor: 2, random: Math.random, ...opts };
  }

  get attempt(): number {
    return this.#attempt;
  }

  /** The delay before the next attempt; each call counts one more failure. */
  next(): number {
    const { minMs, maxMs, factor, random } = this.#opts;
    const ceiling = Math.min(maxMs, minMs * factor ** this.#attempt);
    this.#attempt++;
    return Math.round(minMs + random() * Math.max(0, ceiling - minMs));
  }

  reset(): void {
    this.#attempt = 0;
  }
}
