/**
 * The `proofpoint_tap` source: walks explicit windows over the TAP SIEM API and yields, per
 * service, batches of events with the cursor they advance to (sources/source.ts).
 *
 * One request per window: `/v2/siem/all` when two or more services are enabled (its arrays are
 * routed to their services; one shared-pool request instead of up to four), the service's own
 * endpoint when it is alone. Each window is planned by window.ts from the services' positions:
 * the first pass walks 1 h windows from the cursor until caught up, then polls every period; time
 * that was collected while still recent is re-queried once after it settled, and de-duplication
 * (keys = content hashes, identity.ts) drops what the first pass already delivered.
 *
 * The source never writes state: positions advance in memory when a window's batches are yielded
 * and reach the store only when the pipeline commits them. A window's answer is split into batches
 * of at most `max_events_per_batch`; only the last batch of a service carries its cursor, so a
 * crash mid-window re-queries the window and the committed keys drop what was already delivered.
 *
 * Backpressure is the iterator: nothing is fetched while the pipeline is not asking for batches,
 * except, with `prefetch_next_window`, the one next window of a catch-up, asked for once the current
 * window's headers are in (its body waits unread on its connection; its errors are handled on
 * the next turn like any other request's; it is dropped when the current body turns out
 * unreadable, since it was planned from positions that no longer hold).
 */
import type { Logger } from 'pino';
import type { Dispatcher } from 'undici';
import type { Batch, BatchOutcome, RejectedInput, ServiceSpec, Source, SourceContext, SourceEvent } from '../source.ts';
import { CredentialsError, VendorHttpError, VendorRequestError } from '../../errors.ts';
import { Backoff } from '../../util/backoff.ts';
import { BackfillProgress } from '../../telemetry/progress.ts';
import { formatUtc, parseTimestampMs } from '../../util/time.ts';
import { TAP_DEFAULT_TAGS, assertStartTimes, enabledServices, type TapInputConfig, type TapServiceName } from './config.ts';
import { tapRequestPath } from './endpoint.ts';
import { tapClientFor, type WindowBody, type WindowPart } from './client.ts';
import { RateBudget, TAP_POOLS, poolOf, type TapPool } from './budget.ts';
import { TapBadRequestError, TapMalformedAnswerError, TapThrottledError } from './errors.ts';
import { buildEvent } from './event.ts';
import {
  LOOKBACK_MARGIN_MS,
  MIN_WINDOW_MS,
  advance,
  floorSec,
  formatInterval,
  minPositions,
  oldestAllowedStart,
  planNext,
  windowConcerns,
  windowProblem,
  type Positions,
  type Window,
  type WindowOptions,
} from './window.ts';

export { assertStartTimes } from './config.ts';

/** The committed position of one service (stored by the pipeline as JSON). */
export interface TapCursor {
  v: 1;
  /** Every window before this time was queried at least once. */
  collected_to: string;
  /** Every window before this time was queried after it settled (late-indexed events are in). */
  settled_to: string;
}

/** One window's answer (or the error that came instead), with the time its request was sent. */
type Fetched = { w: Window; sentAt: number; answer: WindowBody } | { w: Window; sentAt: number; error: unknown };

/** A window's events for one service, with the cursor its last batch carries. */
interface Routed {
  svc: TapServiceName;
  /** Positions before the window: restored when its body turns out unreadable. */
  before: Positions;
  cursor: TapCursor;
  /** The last run of elements read, held back until the next one (or the end) says whether it is the last. */
  held?: WindowPart;
  /**
   * Elements the event builder refused, dead-lettered with the last batch: an answer found
   * unreadable further on is asked again, and its bad elements must be dead-lettered once.
   */
  rejected: RejectedInput[];
}

export interface TapSourceOptions {
  dispatcher?: Dispatcher;
}

const HOUR_MS = 3600_000;
/** Each "too far into the past" answer adds this much room to the 7-day clamp, up to the cap. */
const MARGIN_STEP_MS = 5 * 60_000;
const MARGIN_CAP_MS = 60 * 60_000;
/** Each "still current" answer adds this much lag (our clock is ahead of the API's), up to the cap. */
const EXTRA_LAG_STEP_MS = 30_000;
const EXTRA_LAG_CAP_MS = 10 * 60_000;

export function toCursor(p: Positions): TapCursor {
  return { v: 1, collected_to: formatUtc(p.collectedTo), settled_to: formatUtc(p.settledTo) };
}

/** Positions from a stored cursor, or undefined when it is not one of ours. */
export function fromCursor(c: unknown): Positions | undefined {
  if (c === null || typeof c !== 'object') return undefined;
  const o = c as Partial<TapCursor>;
  if (o.v !== 1 || typeof o.collected_to !== 'string' || typeof o.settled_to !== 'string') return undefined;
  const collectedTo = parseTimestampMs(o.collected_to);
  const settledTo = parseTimestampMs(o.settled_to);
  if (collectedTo === undefined || settledTo === undefined) return undefined;
  return { collectedTo: floorSec(collectedTo), settledTo: floorSec(Math.min(settledTo, collectedTo)) };
}

/** Statistics of one pull cycle (one window), logged once all its batches are committed. */
class Cycle {
  readonly #started: number;
  readonly #requests: number;
  #pending = 0;
  #received = 0;
  #duplicates = 0;
  #sent = 0;
  #rejected = 0;
  #sealed = false;

  constructor(
    readonly pullingId: number,
    readonly window: Window,
    started: number,
    requests: number,
    readonly finish: (c: Cycle) => void,
  ) {
    this.#started = started;
    this.#requests = requests;
  }

  expect(): (o: BatchOutcome) => void {
    this.#pending++;
    return (o) => {
      this.#received += o.received;
      this.#duplicates += o.duplicates;
      this.#sent += o.sent;
      this.#rejected += o.deadLettered;
      if (--this.#pending === 0 && this.#sealed) this.finish(this);
    };
  }

  /** Every batch of the window is registered: the cycle finishes when they are committed. */
  seal(): void {
    this.#sealed = true;
    if (this.#pending === 0) this.finish(this);
  }

  stats(now: number) {
    const secs = Math.max(0.001, (now - this.#started) / 1000);
    return {
      requests: this.#requests,
      received: this.#received,
      duplicates: this.#duplicates,
      sent: this.#sent,
      dead_lettered: this.#rejected,
      events_per_second: Math.round((this.#sent / secs) * 10) / 10,
    };
  }
}

export class TapSource implements Source<TapCursor> {
  readonly type = 'proofpoint_tap' as const;
  readonly id: string;
  readonly services: readonly ServiceSpec[];
  readonly #cfg: TapInputConfig;
  readonly #names: TapServiceName[];
  readonly #dispatcher?: Dispatcher;
  #lastPullingId = 0;

  constructor(cfg: TapInputConfig, opts: TapSourceOptions = {}) {
    this.#cfg = cfg;
    this.id = cfg.id;
    this.#names = enabledServices(cfg);
    this.#dispatcher = opts.dispatcher;
    this.services = this.#names.map((name) => ({
      name,
      tag: cfg.services[name]?.override_tag_base ?? TAP_DEFAULT_TAGS[name],
      dedupMaxAgeMs: cfg.dedup_window_secs * 1000,
      startTime: cfg.services[name]?.start_time_in_utc ?? undefined,
    }));
  }

  /** The endpoint this input queries: `/all` for two or more services. */
  get path(): string {
    return tapRequestPath(this.#names);
  }

  run(ctx: SourceContext): AsyncIterable<Batch<TapCursor>> {
    return this.#run(ctx);
  }

  async *#run(ctx: SourceContext): AsyncGenerator<Batch<TapCursor>> {
    const cfg = this.#cfg;
    const { clock, signal } = ctx;
    // The pipeline's logger already names the source and input (source, input_id).
    const log = ctx.logger;
    const names = this.#names;
    const path = this.path;
    const pool = poolOf(path);

    try {
      assertStartTimes(cfg, clock.now());
    } catch (err) {
      for (const s of names) ctx.health.set(s, 'failed', (err as Error).message);
      throw err;
    }

    const budget = new RateBudget({
      log: ctx.requestLog,
      clock,
      logger: log,
      limit: cfg.max_requests_per_day,
      throttleInitialMs: cfg.throttle_backoff_initial_secs * 1000,
      throttleMaxMs: cfg.throttle_backoff_max_secs * 1000,
      metrics: ctx.metrics,
    });
    await budget.load(TAP_POOLS);

    const positions = new Map<TapServiceName, Positions>();
    const firstStart = clock.now();
    for (const svc of names) {
      const start = this.#startOf(svc, firstStart);
      if (ctx.resetServices.has(svc)) {
        log.warn(
          { service: svc, start_time: formatUtc(start) },
          `TAP ${svc}: start_time_in_utc changed, so its cursor and de-dup state were reset; collecting again from ${formatUtc(start)}`,
        );
      }
      const stored = await ctx.cursor<unknown>(svc);
      let pos = stored === undefined ? undefined : fromCursor(stored);
      if (stored !== undefined && pos === undefined) {
        log.warn({ service: svc, cursor: stored }, `TAP ${svc}: stored cursor is not understood; starting from ${formatUtc(start)}`);
      }
      pos ??= { collectedTo: start, settledTo: start };
      positions.set(svc, pos);
      ctx.health.set(svc, 'starting');
      log.info(
        { service: svc, collected_to: formatUtc(pos.collectedTo), settled_to: formatUtc(pos.settledTo), endpoint: path, pool },
        `TAP ${svc}: collecting from ${formatUtc(pos.collectedTo)} through ${path}`,
      );
    }

    const client = tapClientFor(cfg, { dispatcher: this.#dispatcher, userAgent: ctx.userAgent });
    const retry = new Backoff({ minMs: cfg.retry_initial_secs * 1000, maxMs: cfg.retry_max_secs * 1000 });
    const periodMs = Math.min(...names.map((s) => (cfg.services[s]?.request_period_in_seconds ?? 60) * 1000));
    if (periodMs < MIN_WINDOW_MS) {
      log.warn(
        { request_period_in_seconds: periodMs / 1000, polling_every_secs: MIN_WINDOW_MS / 1000 },
        `TAP: request_period_in_seconds ${periodMs / 1000} is below the API's smallest window (${MIN_WINDOW_MS / 1000} s): polling every ${MIN_WINDOW_MS / 1000} s`,
      );
    }
    let marginMs = LOOKBACK_MARGIN_MS;
    let extraLagMs = 0;
    const windowOptions = (): WindowOptions => ({
      lagMs: cfg.window_lag_secs * 1000 + extraLagMs,
      periodMs,
      settleEnabled: cfg.settle_requery_enabled,
      settleDelayMs: cfg.settle_delay_secs * 1000,
      settleWindowMs: cfg.settle_window_secs * 1000,
    });
    // Backfill progress per service: behind while the API could be asked for more than two
    // periods (and a minute) past its position.
    const progress = new Map(
      names.map((svc) => [svc, new BackfillProgress({ metrics: ctx.metrics, logger: log, clock, service: svc, label: `TAP ${svc} backfill` })]),
    );
    const reportProgress = (upTo = Infinity) => {
      const target = clock.now() - cfg.window_lag_secs * 1000;
      for (const [svc, p] of progress) {
        const at = Math.min(positions.get(svc)!.collectedTo, upTo);
        if (target - at > 2 * periodMs + 60_000) p.update(at, target);
        else p.live(at);
      }
    };
    reportProgress();
    const setHealth = (status: 'ok' | 'degraded', reason?: string) => {
      for (const s of names) ctx.health.set(s, status, reason);
    };
    /** Sleeps on the injected clock; false when shutdown interrupted it. */
    const pause = async (ms: number): Promise<boolean> => {
      try {
        await clock.sleep(ms, signal);
        return true;
      } catch {
        return false;
      }
    };
    /** The next window, after moving positions older than the API's 7 days up to its limit. */
    const planAt = (now: number) => {
      this.#clamp(positions, now, marginMs, log);
      return planNext(minPositions([...positions.values()]), now, windowOptions());
    };

    /** Sends one window's request, up to its headers; never rejects (an error comes back as `error`). */
    const send = (w: Window, sentAt: number): Promise<Fetched> =>
      client.openWindow(path, w, signal).then(
        (answer) => ({ w, sentAt, answer }),
        (error: unknown) => ({ w, sentAt, error }),
      );
    /**
     * Handles a failed request or an unreadable answer for window `w`: waits as the error asks.
     * False: shutdown came while waiting. Throws what stops the input.
     */
    const onError = async (err: unknown, w: Window): Promise<boolean> => {
      if (err instanceof CredentialsError) {
        log.error({ err: { code: err.code, message: err.message } }, `${err.message}; input ${this.id} is stopped (error ${err.code}), other inputs go on`);
        for (const s of names) ctx.health.set(s, 'failed', `error ${err.code}: ${err.message}`);
        throw err;
      }
      if (err instanceof TapBadRequestError && err.refusal === 'too_far_in_past') {
        marginMs = Math.min(MARGIN_CAP_MS, marginMs + MARGIN_STEP_MS);
        log.warn(
          { window: formatInterval(w), margin_minutes: marginMs / 60_000 },
          `TAP refused ${formatInterval(w)} as too far into the past (the API keeps 7 days); moving the window start forward`,
        );
        return true;
      }
      if (err instanceof TapBadRequestError && err.refusal === 'still_current') {
        extraLagMs = Math.min(EXTRA_LAG_CAP_MS, extraLagMs + EXTRA_LAG_STEP_MS);
        const waitMs = cfg.window_lag_secs * 1000 + extraLagMs;
        log.warn(
          { window: formatInterval(w), lag_secs: waitMs / 1000 },
          `TAP says ${formatInterval(w)} is still current (its clock is behind ours); waiting ${waitMs / 1000} s and keeping windows further behind`,
        );
        if (!(await pause(waitMs))) return false;
        return true;
      }
      if (err instanceof TapThrottledError) {
        const until = budget.throttled(pool);
        log.warn(
          { pool, window: formatInterval(w), next_request_at: formatUtc(until) },
          `TAP answered 429 for pool ${pool} (its 24 h budget is spent, maybe by another client of the same credential); next request at ${formatUtc(until)}`,
        );
        setHealth('degraded', `HTTP 429, pool ${pool} throttled until ${formatUtc(until)}`);
        return true;
      }
      if (err instanceof VendorHttpError || err instanceof VendorRequestError) {
        // A malformed answer is retried like a 5xx: the window stays where it is, nothing of
        // it is yielded or committed, so its events come with a later, readable answer.
        if (err instanceof TapMalformedAnswerError) ctx.metrics.inc('tap_malformed_answers_total', { pool });
        const waitMs = retry.next();
        log.warn(
          { err: { code: err.code, message: err.message }, retry_in_ms: waitMs, attempt: retry.attempt },
          `${err.message} (error ${err.code}); retrying in ${Math.round(waitMs / 1000)} s`,
        );
        setHealth('degraded', `error ${err.code}: ${err.message}`);
        if (!(await pause(waitMs))) return false;
        return true;
      }
      throw err;
    };

    /** The next window's request, sent while the current window's body is read and delivered. */
    let ahead: Promise<Fetched> | undefined;
    /** Forgets the window looked ahead, closing its connection once its headers are in. */
    const dropAhead = (why?: string) => {
      const dropped = ahead;
      ahead = undefined;
      void dropped?.then((f) => {
        if (!('answer' in f)) return;
        f.answer.cancel();
        if (why) log.info({ window: formatInterval(f.w) }, `TAP window ${formatInterval(f.w)} looked ahead is dropped unread: ${why}`);
      });
    };
    /** Requests made for the window being fetched, retries included (for the cycle's statistics). */
    let attempts = 0;
    let firstAttemptAt: number | undefined;
    try {
      while (!signal.aborted) {
        let fetched: Fetched;
        if (ahead !== undefined) {
          fetched = await ahead;
          ahead = undefined;
        } else {
          const plan = planAt(clock.now());
          if ('waitUntil' in plan) {
            if (!(await pause(plan.waitUntil - clock.now()))) return;
            continue;
          }
          try {
            await budget.acquire(pool, signal);
          } catch {
            return; // shutdown while waiting for the budget
          }
          // The budget may have made us wait: plan again with the time the request is really sent.
          const sentAt = clock.now();
          const ready = planAt(sentAt);
          if ('waitUntil' in ready) continue;
          const problem = windowProblem(ready.window, sentAt);
          if (problem !== undefined) {
            throw new Error(`TAP window ${formatInterval(ready.window)} would be refused (${problem}); this is a bug in the window planner`);
          }
          fetched = await send(ready.window, sentAt);
        }
        attempts++;
        firstAttemptAt ??= fetched.sentAt;
        if ('error' in fetched) {
          if (signal.aborted || !(await onError(fetched.error, fetched.w))) return;
          continue;
        }
        budget.succeeded(pool);

        const { w, sentAt, answer } = fetched;
        const cycle = new Cycle(this.#nextPullingId(sentAt), w, firstAttemptAt, attempts, (c) => {
          this.#logCycle(c, log, clock.now(), budget);
          // Delivered through this window's end (a window fetched ahead is not yet).
          if (c.window.kind === 'fresh') reportProgress(c.window.end);
        });
        const receivedAt = clock.now();
        const routed = this.#route(w, sentAt, positions, log);

        // Catching up, the next window is due at once: ask for it as soon as this one's headers
        // are in (the positions have advanced already), so the API works on it while this body
        // is read and its batches delivered. At most one window ahead, only when the budget allows
        // it without waiting; its answer is handled (or its error retried) on the next turn. Its
        // body waits unread on its connection (undici reads no further while nobody asks for it).
        if (cfg.prefetch_next_window && !signal.aborted) {
          const now = clock.now();
          const next = planAt(now);
          if ('window' in next && budget.nextAllowedAt(pool) <= now && windowProblem(next.window, now) === undefined) {
            const nw = next.window;
            ahead = budget.acquire(pool, signal).then(
              () => send(nw, clock.now()),
              (error: unknown) => ({ w: nw, sentAt: now, error }),
            );
          }
        }
        try {
          yield* this.#stream(answer, routed, cycle, receivedAt);
        } catch (err) {
          // The body was cut short or is not the documented answer: the window is asked again.
          // Batches already delivered carry no cursor; their keys drop them on the next answer.
          // The window looked ahead was planned from positions that do not hold: dropped unread
          // (its request is spent; it is not this window's error).
          for (const r of routed) positions.set(r.svc, r.before);
          dropAhead(`the window before it, ${formatInterval(w)}, is asked again`);
          if (signal.aborted || !(await onError(err, w))) return;
          continue;
        }
        attempts = 0;
        firstAttemptAt = undefined;
        retry.reset();
        setHealth('ok');
      }
    } finally {
      dropAhead();
      await client.close();
    }
  }

  /**
   * The services a window concerns, with their positions before and after it; the positions
   * advance now (in memory, for planning the next window) and go back if the body is unreadable.
   * A service whose positions are already past the window gets nothing (its events there are
   * settled and delivered).
   */
  #route(w: Window, sentAt: number, positions: Map<TapServiceName, Positions>, log: Logger): Routed[] {
    const cfg = this.#cfg;
    const out: Routed[] = [];
    for (const svc of this.#names) {
      const pos = positions.get(svc)!;
      if (!windowConcerns(pos, w)) continue;
      const next = advance(pos, w, sentAt, {
        settleEnabled: cfg.settle_requery_enabled,
        settleDelayMs: cfg.settle_delay_secs * 1000,
      });
      positions.set(svc, next);
      out.push({ svc, before: pos, cursor: toCursor(next), rejected: [] });
    }
    if (out.length === 0) log.debug({ window: formatInterval(w) }, 'TAP window concerned no service');
    return out;
  }

  /**
   * Reads the window's body and yields its events in batches of at most `max_events_per_batch`
   * as they are parsed; the pipeline not asking for the next batch stops the reading. Only the
   * last batch of a service carries its cursor, and it is yielded only once the whole body was
   * read and found to be the documented answer (so a run is held back until the next one, or the
   * end, says whether it is the last). Throws what WindowBody.parts throws.
   */
  async *#stream(answer: WindowBody, routed: Routed[], cycle: Cycle, receivedAt: number): AsyncGenerator<Batch<TapCursor>> {
    const bySvc = new Map(routed.map((r) => [r.svc, r]));
    const parts = answer.parts(this.#cfg.max_events_per_batch);
    try {
      for (;;) {
        const r = await parts.next();
        if (r.done) break;
        const route = bySvc.get(r.value.service);
        if (route === undefined) continue; // a service not enabled, or already past this window
        const held = route.held;
        route.held = r.value;
        if (held) yield this.#batch(route, held, cycle, receivedAt, false);
      }
    } catch (err) {
      for (const route of routed) {
        route.held = undefined;
        route.rejected = [];
      }
      throw err;
    }
    const last = routed.map((route) => this.#batch(route, route.held ?? { service: route.svc, elements: [] }, cycle, receivedAt, true));
    for (const route of routed) route.held = undefined;
    cycle.seal();
    yield* last;
  }

  #batch(route: Routed, part: WindowPart, cycle: Cycle, receivedAt: number, last: boolean): Batch<TapCursor> {
    const events: SourceEvent[] = [];
    for (const el of part.elements) {
      const built = buildEvent(route.svc, el, receivedAt);
      if ('event' in built) events.push(built.event);
      else route.rejected.push(built.rejected);
    }
    const rejected = last ? route.rejected.splice(0) : [];
    return {
      service: route.svc,
      pullingId: cycle.pullingId,
      events,
      ...(last ? { cursor: route.cursor } : {}),
      ...(rejected.length > 0 ? { rejected } : {}),
      onCommitted: cycle.expect(),
    };
  }

  #startOf(svc: TapServiceName, now: number): number {
    const text = this.#cfg.services[svc]?.start_time_in_utc;
    // null: the Devo collector's empty start time, "from now".
    if (text === null) return floorSec(now);
    const at = text === undefined ? undefined : parseTimestampMs(text);
    return floorSec(at ?? now - HOUR_MS);
  }

  /**
   * The API keeps 7 days: older positions move up to its limit, with a warning naming what is lost.
   * They move to `margin` inside the limit but only once they are within `margin − 4 min` of it, so
   * a backfill that starts at the limit is not nibbled a second at a time while it walks.
   */
  #clamp(positions: Map<TapServiceName, Positions>, now: number, marginMs: number, log: Logger): void {
    const trigger = oldestAllowedStart(now, Math.max(60_000, marginMs - 4 * 60_000));
    const oldest = oldestAllowedStart(now, marginMs);
    for (const [svc, pos] of positions) {
      if (pos.collectedTo < trigger) {
        log.warn(
          { service: svc, skipped_from: formatUtc(pos.collectedTo), skipped_to: formatUtc(oldest) },
          `TAP ${svc}: data older than 7 days cannot be fetched (the API accepts requests up to 7.00d back); ` +
            `events from ${formatUtc(pos.collectedTo)} to ${formatUtc(oldest)} are skipped`,
        );
        positions.set(svc, { collectedTo: oldest, settledTo: oldest });
      } else if (pos.settledTo < trigger) {
        log.warn(
          { service: svc, unsettled_from: formatUtc(pos.settledTo), unsettled_to: formatUtc(oldest) },
          `TAP ${svc}: time from ${formatUtc(pos.settledTo)} to ${formatUtc(oldest)} is now older than 7 days and cannot be re-queried for late-indexed events`,
        );
        positions.set(svc, { collectedTo: pos.collectedTo, settledTo: oldest });
      }
    }
  }

  #nextPullingId(now: number): number {
    this.#lastPullingId = Math.max(this.#lastPullingId + 1, now);
    return this.#lastPullingId;
  }

  #logCycle(c: Cycle, log: Logger, now: number, budget: RateBudget): void {
    const left: Record<string, number> = {};
    for (const p of TAP_POOLS) left[p] = budget.remaining(p as TapPool);
    const s = c.stats(now);
    log.info(
      {
        pulling_id: c.pullingId,
        kind: c.window.kind,
        from: formatUtc(c.window.start),
        to: formatUtc(c.window.end),
        ...s,
        requests_left: left,
      },
      `TAP pull ${c.pullingId} (${c.window.kind}) ${formatUtc(c.window.start)} -> ${formatUtc(c.window.end)}: ` +
        `${s.requests} request(s), ${s.received} received, ${s.duplicates} duplicates filtered, ${s.sent} sent, ` +
        `${s.events_per_second} events/s; requests left: shared ${left['shared']}, clicksPermitted ${left['clicksPermitted']}`,
    );
  }
}
