/**
 * One run of a TAP input: plans a window, waits for the rate budget, sends the window's request,
 * delivers its answer as batches, and handles what goes wrong as sources/tap/retry.ts says. It
 * never writes state: positions advance in memory (sources/tap/positions.ts) and reach the store
 * only as the cursors of batches the pipeline commits.
 *
 * Backpressure is the iterator: nothing is fetched while the pipeline is not asking for batches,
 * except, with `prefetch_next_window`, the one next window of a catch-up, asked for once the current
 * window's headers are in (its body waits unread on its connection; its errors are handled on
 * the next turn like any other request's; it is dropped when the current body turns out
 * unreadable, since it was planned from positions that no longer hold).
 */
import type { Logger } from 'pino';
import type { Dispatcher } from 'undici';
import type { Batch, SourceContext } from '../source.ts';
import type { SidecarError } from '../../errors.ts';
import { Backoff } from '../../util/backoff.ts';
import { BackfillProgress } from '../../telemetry/progress.ts';
import { formatUtc } from '../../util/time.ts';
import { assertStartTimes } from '../start-time.ts';
import { tapStartTimes, type TapInputConfig, type TapServiceName } from './config.ts';
import { tapClientFor, type TapClient, type WindowBody } from './client.ts';
import { RateBudget, TAP_POOLS, poolOf, type TapPool } from './budget.ts';
import type { TapCursor } from './cursor.ts';
import { windowBatches } from './deliver.ts';
import { TapPositions } from './positions.ts';
import { tapErrorPolicy } from './retry.ts';
import { CycleStats } from './stats.ts';
import { LOOKBACK_MARGIN_MS, MIN_WINDOW_MS, formatInterval, planNext, windowProblem, type Plan, type Window } from './window.ts';

/** One window's answer (or the error that came instead), with the time its request was sent. */
type Fetched = { w: Window; sentAt: number; answer: WindowBody } | { w: Window; sentAt: number; error: unknown };

export interface TapRunOptions {
  cfg: TapInputConfig;
  id: string;
  names: readonly TapServiceName[];
  /** The endpoint every window is asked of. */
  path: string;
  dispatcher?: Dispatcher;
  /** A pulling id for a window sent at `now`, unique for the source. */
  nextPullingId: (now: number) => number;
}

/** Each "too far into the past" answer adds this much room to the 7-day clamp, up to the cap. */
const MARGIN_STEP_MS = 5 * 60_000;
const MARGIN_CAP_MS = 60 * 60_000;
/** Each "still current" answer adds this much lag (our clock is ahead of the API's), up to the cap. */
const EXTRA_LAG_STEP_MS = 30_000;
const EXTRA_LAG_CAP_MS = 10 * 60_000;

export class TapRun {
  readonly #ctx: SourceContext;
  readonly #o: TapRunOptions;
  readonly #log: Logger;
  readonly #pool: TapPool;
  readonly #budget: RateBudget;
  readonly #positions: TapPositions;
  readonly #client: TapClient;
  readonly #retry: Backoff;
  readonly #periodMs: number;
  readonly #progress: Map<TapServiceName, BackfillProgress>;
  #marginMs = LOOKBACK_MARGIN_MS;
  #extraLagMs = 0;
  /** The next window's request, sent while the current window's body is read and delivered. */
  #ahead: Promise<Fetched> | undefined;
  /** Requests made for the window being fetched, retries included (for the cycle's statistics). */
  #attempts = 0;
  #firstAttemptAt: number | undefined;

  /** Checks the start times, reads the rate budget and the committed positions. */
  static async start(ctx: SourceContext, o: TapRunOptions): Promise<TapRun> {
    checkStartTimes(ctx, o);
    const budget = rateBudgetFor(ctx, o.cfg);
    await budget.load(TAP_POOLS);
    const positions = await TapPositions.load(ctx, o.cfg, o.names, { path: o.path, pool: poolOf(o.path) });
    return new TapRun(ctx, o, budget, positions);
  }

  private constructor(ctx: SourceContext, o: TapRunOptions, budget: RateBudget, positions: TapPositions) {
    const cfg = o.cfg;
    // The pipeline's logger already names the source and input (source, input_id).
    const log = (this.#log = ctx.logger);
    this.#ctx = ctx;
    this.#o = o;
    this.#pool = poolOf(o.path);
    this.#budget = budget;
    this.#positions = positions;
    this.#client = tapClientFor(cfg, { dispatcher: o.dispatcher, userAgent: ctx.userAgent });
    this.#retry = new Backoff({ minMs: cfg.retry_initial_secs * 1000, maxMs: cfg.retry_max_secs * 1000 });
    this.#periodMs = Math.min(...o.names.map((s) => (cfg.services[s]?.request_period_in_seconds ?? 60) * 1000));
    if (this.#periodMs < MIN_WINDOW_MS) {
      log.warn(
        { request_period_in_seconds: this.#periodMs / 1000, polling_every_secs: MIN_WINDOW_MS / 1000 },
        `TAP: request_period_in_seconds ${this.#periodMs / 1000} is below the API's smallest window (${MIN_WINDOW_MS / 1000} s): polling every ${MIN_WINDOW_MS / 1000} s`,
      );
    }
    this.#progress = new Map(
      o.names.map((svc) => [svc, new BackfillProgress({ metrics: ctx.metrics, logger: log, clock: ctx.clock, service: svc, label: `TAP ${svc} backfill` })]),
    );
    this.#reportProgress();
  }

  /** The batches of window after window, until shutdown or an error that stops the input. */
  async *batches(): AsyncGenerator<Batch<TapCursor>> {
    try {
      while (!this.#ctx.signal.aborted) {
        const fetched = await this.#nextAnswer();
        if (fetched === 'stop') return;
        if (fetched === 'again') continue;
        this.#attempts++;
        this.#firstAttemptAt ??= fetched.sentAt;
        if ('error' in fetched) {
          if (!(await this.#recover(fetched.error, fetched.w))) return;
          continue;
        }
        this.#budget.succeeded(this.#pool);
        if (!(yield* this.#deliver(fetched.w, fetched.sentAt, fetched.answer))) return;
      }
    } finally {
      this.#dropAhead();
      await this.#client.close();
    }
  }

  /**
   * The answer looked ahead, or the next window's once it is due and the budget allows it.
   * 'again': plan again (the wait is over, or the budget's wait moved the plan); 'stop': shutdown.
   */
  async #nextAnswer(): Promise<Fetched | 'again' | 'stop'> {
    const { clock, signal } = this.#ctx;
    if (this.#ahead !== undefined) {
      const fetched = await this.#ahead;
      this.#ahead = undefined;
      return fetched;
    }
    const plan = this.#planAt(clock.now());
    if ('waitUntil' in plan) return (await this.#pause(plan.waitUntil - clock.now())) ? 'again' : 'stop';
    try {
      await this.#budget.acquire(this.#pool, signal);
    } catch {
      return 'stop'; // shutdown while waiting for the budget
    }
    // The budget may have made us wait: plan again with the time the request is really sent.
    const sentAt = clock.now();
    const ready = this.#planAt(sentAt);
    if ('waitUntil' in ready) return 'again';
    const problem = windowProblem(ready.window, sentAt);
    if (problem !== undefined) {
      throw new Error(`TAP window ${formatInterval(ready.window)} would be refused (${problem}); this is a bug in the window planner`);
    }
    return this.#send(ready.window, sentAt);
  }

  /**
   * Yields a window's batches. False: shutdown came while waiting after an unreadable body.
   * An unreadable body puts the positions back and the window is asked again: batches already
   * delivered carry no cursor, and their keys drop them on the next answer.
   */
  async *#deliver(w: Window, sentAt: number, answer: WindowBody): AsyncGenerator<Batch<TapCursor>, boolean> {
    const { clock } = this.#ctx;
    const cycle = new CycleStats({
      pullingId: this.#o.nextPullingId(sentAt),
      window: w,
      started: this.#firstAttemptAt ?? sentAt,
      requests: this.#attempts,
      clock,
      logger: this.#log,
      requestsLeft: () => Object.fromEntries(TAP_POOLS.map((p) => [p, this.#budget.remaining(p)])),
      // Delivered through this window's end (a window fetched ahead is not yet).
      onFinished: (c) => {
        if (c.window.kind === 'fresh') this.#reportProgress(c.window.end);
      },
    });
    const receivedAt = clock.now();
    const routed = this.#positions.route(w, sentAt);
    this.#lookAhead();
    try {
      yield* windowBatches(answer, routed, cycle, receivedAt, this.#o.cfg.max_events_per_batch);
    } catch (err) {
      // The window looked ahead was planned from positions that do not hold: dropped unread
      // (its request is spent; it is not this window's error).
      this.#positions.restore(routed);
      this.#dropAhead(`the window before it, ${formatInterval(w)}, is asked again`);
      return this.#recover(err, w);
    }
    this.#attempts = 0;
    this.#firstAttemptAt = undefined;
    this.#retry.reset();
    this.#setHealth('ok');
    return true;
  }

  /**
   * Catching up, the next window is due at once: asks for it as soon as this one's headers are in
   * (the positions have advanced already), so the API works on it while this body is read and its
   * batches delivered. At most one window ahead, only when the budget allows it without waiting.
   * Its body waits unread on its connection (undici reads no further while nobody asks for it).
   */
  #lookAhead(): void {
    const { clock, signal } = this.#ctx;
    if (!this.#o.cfg.prefetch_next_window || signal.aborted) return;
    const now = clock.now();
    const next = this.#planAt(now);
    if ('window' in next && this.#budget.nextAllowedAt(this.#pool) <= now && windowProblem(next.window, now) === undefined) {
      const nw = next.window;
      this.#ahead = this.#budget.acquire(this.#pool, this.#ctx.signal).then(
        () => this.#send(nw, clock.now()),
        (error: unknown) => ({ w: nw, sentAt: now, error }),
      );
    }
  }

  /** Sends one window's request, up to its headers; never rejects (an error comes back as `error`). */
  #send(w: Window, sentAt: number): Promise<Fetched> {
    return this.#client.openWindow(this.#o.path, w, this.#ctx.signal).then(
      (answer) => ({ w, sentAt, answer }),
      (error: unknown) => ({ w, sentAt, error }),
    );
  }

  /** Forgets the window looked ahead, closing its connection once its headers are in. */
  #dropAhead(why?: string): void {
    const dropped = this.#ahead;
    this.#ahead = undefined;
    void dropped?.then((f) => {
      if (!('answer' in f)) return;
      f.answer.cancel();
      if (why) this.#log.info({ window: formatInterval(f.w) }, `TAP window ${formatInterval(f.w)} looked ahead is dropped unread: ${why}`);
    });
  }

  /**
   * Handles a failed request or an unreadable answer for window `w` as the policy says, waiting
   * as the error asks. False: shutdown came (or had come) while waiting. Throws what stops the input.
   */
  async #recover(err: unknown, w: Window): Promise<boolean> {
    if (this.#ctx.signal.aborted) return false;
    const policy = tapErrorPolicy(err);
    if (policy.countsMalformed) this.#ctx.metrics.inc('tap_malformed_answers_total', { pool: this.#pool });
    switch (policy.action) {
      case 'fail_input':
        return this.#failInput(err as SidecarError);
      case 'move_window_start':
        this.#moveWindowStart(w);
        return true;
      case 'wait_lag':
        return this.#waitLag(w);
      case 'throttle_backoff':
        this.#throttle(w);
        return true;
      case 'retry_with_backoff':
        return this.#retryLater(err as SidecarError);
      case 'rethrow':
        throw err;
    }
  }

  #failInput(err: SidecarError): never {
    this.#log.error({ err: { code: err.code, message: err.message } }, `${err.message}; input ${this.#o.id} is stopped (error ${err.code}), other inputs go on`);
    for (const s of this.#o.names) this.#ctx.health.set(s, 'failed', `error ${err.code}: ${err.message}`);
    throw err;
  }

  #moveWindowStart(w: Window): void {
    this.#marginMs = Math.min(MARGIN_CAP_MS, this.#marginMs + MARGIN_STEP_MS);
    this.#log.warn(
      { window: formatInterval(w), margin_minutes: this.#marginMs / 60_000 },
      `TAP refused ${formatInterval(w)} as too far into the past (the API keeps 7 days); moving the window start forward`,
    );
  }

  async #waitLag(w: Window): Promise<boolean> {
    this.#extraLagMs = Math.min(EXTRA_LAG_CAP_MS, this.#extraLagMs + EXTRA_LAG_STEP_MS);
    const waitMs = this.#o.cfg.window_lag_secs * 1000 + this.#extraLagMs;
    this.#log.warn(
      { window: formatInterval(w), lag_secs: waitMs / 1000 },
      `TAP says ${formatInterval(w)} is still current (its clock is behind ours); waiting ${waitMs / 1000} s and keeping windows further behind`,
    );
    return this.#pause(waitMs);
  }

  #throttle(w: Window): void {
    const pool = this.#pool;
    const until = this.#budget.throttled(pool);
    this.#log.warn(
      { pool, window: formatInterval(w), next_request_at: formatUtc(until) },
      `TAP answered 429 for pool ${pool} (its 24 h budget is spent, maybe by another client of the same credential); next request at ${formatUtc(until)}`,
    );
    this.#setHealth('degraded', `HTTP 429, pool ${pool} throttled until ${formatUtc(until)}`);
  }

  async #retryLater(err: SidecarError): Promise<boolean> {
    const waitMs = this.#retry.next();
    this.#log.warn(
      { err: { code: err.code, message: err.message }, retry_in_ms: waitMs, attempt: this.#retry.attempt },
      `${err.message} (error ${err.code}); retrying in ${Math.round(waitMs / 1000)} s`,
    );
    this.#setHealth('degraded', `error ${err.code}: ${err.message}`);
    return this.#pause(waitMs);
  }

  /** The next window, after moving positions older than the API's 7 days up to its limit. */
  #planAt(now: number): Plan {
    const cfg = this.#o.cfg;
    this.#positions.clamp(now, this.#marginMs);
    return planNext(this.#positions.min(), now, {
      lagMs: cfg.window_lag_secs * 1000 + this.#extraLagMs,
      periodMs: this.#periodMs,
      settleEnabled: cfg.settle_requery_enabled,
      settleDelayMs: cfg.settle_delay_secs * 1000,
      settleWindowMs: cfg.settle_window_secs * 1000,
    });
  }

  /**
   * Backfill progress per service: behind while the API could be asked for more than two periods
   * (and a minute) past its position.
   */
  #reportProgress(upTo = Infinity): void {
    const target = this.#ctx.clock.now() - this.#o.cfg.window_lag_secs * 1000;
    for (const [svc, p] of this.#progress) {
      const at = Math.min(this.#positions.get(svc).collectedTo, upTo);
      if (target - at > 2 * this.#periodMs + 60_000) p.update(at, target);
      else p.live(at);
    }
  }

  #setHealth(status: 'ok' | 'degraded', reason?: string): void {
    for (const s of this.#o.names) this.#ctx.health.set(s, status, reason);
  }

  /** Sleeps on the injected clock; false when shutdown interrupted it. */
  async #pause(ms: number): Promise<boolean> {
    try {
      await this.#ctx.clock.sleep(ms, this.#ctx.signal);
      return true;
    } catch {
      return false;
    }
  }
}

/** Throws StartTimeError (101) for a start time in the future, with every service failed. */
function checkStartTimes(ctx: SourceContext, o: TapRunOptions): void {
  try {
    assertStartTimes(tapStartTimes(o.cfg), ctx.clock.now());
  } catch (err) {
    for (const s of o.names) ctx.health.set(s, 'failed', (err as Error).message);
    throw err;
  }
}

function rateBudgetFor(ctx: SourceContext, cfg: TapInputConfig): RateBudget {
  return new RateBudget({
    log: ctx.requestLog,
    clock: ctx.clock,
    logger: ctx.logger,
    limit: cfg.max_requests_per_day,
    throttleInitialMs: cfg.throttle_backoff_initial_secs * 1000,
    throttleMaxMs: cfg.throttle_backoff_max_secs * 1000,
    metrics: ctx.metrics,
  });
}
