/**
 * The TAP rate budget, kept on our side so the API never has to say 429.
 *
 * Vendor text (elastic/integrations #9969): "limited by a simple, rolling 24-hour throttle. Once
 * exceeded, the API will start returning 429 HTTP status codes until 24 hours past the oldest
 * request has elapsed. Requests to the clicks/permitted API and requests to other APIs are
 * throttled into different pools." 1800 requests per pool and credential; no Retry-After.
 *
 * Every request, first pass, settle re-query or retry, takes a slot here before it is sent, and the
 * slot is written to the persisted request log (ctx.requestLog) so a restart does not forget it.
 * When a pool is spent the caller waits until its oldest request leaves the 24 h window, and the
 * wait is logged with the time the next request is allowed. A 429 anyway (another collector on the
 * same credential, a lost state directory) blocks the pool for a long backoff: minutes to hours.
 */
import type { Logger } from 'pino';
import type { RequestLog, SourceMetrics } from '../source.ts';
import type { Clock } from '../../util/clock.ts';
import { Backoff } from '../../util/backoff.ts';
import { formatUtc } from '../../util/time.ts';

export type TapPool = 'shared' | 'clicksPermitted';
export const TAP_POOLS: readonly TapPool[] = ['shared', 'clicksPermitted'];

/** `clicks/permitted` has its own pool; `all`, `issues` and the other three share one. */
export function poolOf(path: string): TapPool {
  return /\/clicks\/permitted$/.test(path) ? 'clicksPermitted' : 'shared';
}

export const DAY_MS = 24 * 3600 * 1000;
/** Our clock and the API's differ a little: a freed slot is used this long after it frees. */
const SKEW_MARGIN_MS = 60_000;

export interface RateBudgetOptions {
  log: RequestLog;
  clock: Clock;
  logger: Logger;
  /** Requests per pool per window. */
  limit: number;
  windowMs?: number;
  throttleInitialMs: number;
  throttleMaxMs: number;
  /** For the throttle backoff's jitter; tests pass a constant. */
  random?: () => number;
  /** Requests sent, requests left and 429s per pool, for /metrics. */
  metrics?: SourceMetrics;
}

interface PoolState {
  /** Times (ms, ascending) of requests within the window, mirrored from the persisted log. */
  times: number[];
  /** No request before this time (after a 429). */
  blockedUntil: number;
  throttle: Backoff;
  lastPrune: number;
  /** The persisted log refused the last write. */
  logFailing?: boolean;
}

export class RateBudget {
  readonly #o: Required<Omit<RateBudgetOptions, 'random' | 'metrics'>> & Pick<RateBudgetOptions, 'random' | 'metrics'>;
  readonly #pools = new Map<TapPool, PoolState>();

  constructor(o: RateBudgetOptions) {
    this.#o = { windowMs: DAY_MS, ...o };
  }

  /** Reads the persisted log of each pool (once, at start). */
  async load(pools: readonly TapPool[]): Promise<void> {
    const now = this.#o.clock.now();
    for (const pool of pools) {
      const times = await this.#o.log.list(pool, now - this.#o.windowMs);
      this.#pools.set(pool, {
        times: times.slice().sort((a, b) => a - b),
        blockedUntil: 0,
        // Full jitter would allow a retry after seconds; this keeps every wait within [initial, cap].
        throttle: new Backoff({
          minMs: this.#o.throttleInitialMs,
          maxMs: this.#o.throttleMaxMs,
          ...(this.#o.random ? { random: this.#o.random } : {}),
        }),
        lastPrune: 0,
      });
      this.#o.metrics?.set('tap_requests_left', { pool }, this.remaining(pool));
    }
  }

  #state(pool: TapPool): PoolState {
    const s = this.#pools.get(pool);
    if (!s) throw new Error(`rate budget: pool ${pool} not loaded`);
    return s;
  }

  /** Requests still allowed in the pool at `now` (default: the clock's now). */
  remaining(pool: TapPool, now = this.#o.clock.now()): number {
    const s = this.#pools.get(pool);
    if (!s) return this.#o.limit;
    const since = now - this.#o.windowMs;
    return Math.max(0, this.#o.limit - s.times.filter((t) => t > since).length);
  }

  /** When the next request may be sent (`now`, if allowed at `now`; default: the clock's now). */
  nextAllowedAt(pool: TapPool, now = this.#o.clock.now()): number {
    const s = this.#state(pool);
    this.#trim(s, now);
    let at = Math.max(now, s.blockedUntil);
    if (s.times.length >= this.#o.limit) {
      // The request that must leave the window before one more fits, plus room for clock skew.
      at = Math.max(at, s.times[s.times.length - this.#o.limit]! + this.#o.windowMs + SKEW_MARGIN_MS);
    }
    return at;
  }

  /**
   * Waits until the pool allows a request, then records it (persisted) and returns. Rejects only
   * when `signal` aborts. Each turn decides on one clock reading: with two, a clock that moved
   * between them made an open pool look spent.
   */
  async acquire(pool: TapPool, signal: AbortSignal): Promise<void> {
    const s = this.#state(pool);
    for (;;) {
      const now = this.#o.clock.now();
      const at = this.nextAllowedAt(pool, now);
      if (at <= now) {
        s.times.push(now);
        await this.#persist(pool, s, now);
        this.#o.metrics?.inc('tap_requests_total', { pool });
        this.#o.metrics?.set('tap_requests_left', { pool }, this.remaining(pool, now));
        return;
      }
      const why = s.blockedUntil > now ? 'backing off after HTTP 429' : `${this.#o.limit} requests in the last 24 h`;
      this.#o.logger.info(
        { pool, next_request_at: formatUtc(at), requests_left: this.remaining(pool, now) },
        `TAP rate budget: pool ${pool} is spent (${why}); next request allowed at ${formatUtc(at)}`,
      );
      await this.#o.clock.sleep(at - now, signal);
    }
  }

  /** A 429: the server's count is ahead of ours. Blocks the pool for a long, growing backoff. */
  throttled(pool: TapPool): number {
    const s = this.#state(pool);
    const wait = s.throttle.next();
    s.blockedUntil = this.#o.clock.now() + wait;
    this.#o.metrics?.inc('tap_throttled_total', { pool });
    return s.blockedUntil;
  }

  /** A request of the pool succeeded: the throttle backoff starts over. */
  succeeded(pool: TapPool): void {
    this.#state(pool).throttle.reset();
  }

  #trim(s: PoolState, now: number): void {
    const since = now - this.#o.windowMs;
    let i = 0;
    while (i < s.times.length && s.times[i]! <= since) i++;
    if (i > 0) s.times.splice(0, i);
  }

  /**
   * Writes the request to the persisted log. A log that cannot be written (a full or read-only
   * state disk, a Lease the API refuses) does not hold collection back: the request is counted
   * here all the same, and the worst a restart can then do is under-count and meet a 429, which
   * the throttle handles. Each streak of failures is logged once, its end once.
   */
  async #persist(pool: TapPool, s: PoolState, now: number): Promise<void> {
    try {
      await this.#o.log.record(pool, now);
      if (now - s.lastPrune >= 3600_000) {
        s.lastPrune = now;
        await this.#o.log.prune(pool, now - this.#o.windowMs);
      }
      if (s.logFailing) {
        s.logFailing = false;
        this.#o.logger.info({ pool }, 'TAP request log is written again.');
      }
    } catch (err) {
      if (!s.logFailing) {
        s.logFailing = true;
        this.#o.logger.warn(
          { pool, err: (err as Error).message, code: (err as { code?: unknown }).code },
          'TAP request log cannot be written; requests are still counted in memory (a restart meanwhile may under-count them and meet a 429).',
        );
      }
    }
  }
}
