/**
 * Holding a feed's Lease: acquire, renew, the renew deadline, release, and the one builder of
 * every Lease spec this replica writes.
 *
 * The safety contract:
 * - A holder that has not renewed successfully within renew_deadline of SENDING its last
 *   successful renewal loses the feed: its source is aborted at once (the deadline timer here). The
 *   server wrote that renewal after it was sent, and a peer saw it no earlier, so the holder stops
 *   pulling at least lease_duration - renew_deadline before any peer can think the Lease expired.
 * - A renewal is not sent once its deadline has passed, and its answer counts only while the
 *   feed is still held by the same acquisition.
 * - Every write carries the resourceVersion it read; 409 (LeaseConflictError) means another
 *   replica wrote first and won.
 * - A release is client-go's: empty holder and a one-second duration, so peers need not wait.
 */
import type { Logger } from 'pino';
import type { Clock } from '../util/clock.ts';
import { LeaseApiError, LeaseConflictError, type Lease, type LeaseApi, type LeaseSpec } from './lease-api.ts';
import { STATE_ANNOTATION, encodeState, type CarriedState } from './carried-state.ts';
import { WANTED_ANNOTATION } from './balance.ts';
import type { Feed } from './feeds.ts';

export interface CoordinatorTiming {
  leaseDurationMs: number;
  renewDeadlineMs: number;
  retryPeriodMs: number;
}

/** A Lease held by this replica: one acquisition. */
export interface Held {
  resourceVersion: string;
  acquireTime: number;
  transitions: number;
  /** When the last successful renewal (or the acquisition) was sent. */
  renewedSentAt: number;
  /** False until the handler adopted the carried state: renewals carry the inherited state meanwhile. */
  ready: boolean;
  annotations: Record<string, string>;
  cancelDeadline: () => void;
}

export interface FeedState {
  feed: Feed;
  /** Last observation of a Lease not held here (undefined lease: 404); observedAt: when its holder or renewTime last changed. */
  seen?: { lease?: Lease; observedAt: number };
  /** Set while this replica hands the feed over on request. */
  handover?: Promise<void>;
  /** When this replica first saw the feed free (no Lease, released or expired). */
  freeSince?: number;
  held?: Held;
  acquired: number;
  lost: number;
  released: number;
  renewFailures: number;
  /** Consecutive failed requests, to log a streak once. */
  failing: number;
  /** Renewals of this feed, one at a time (the loop's and those out of turn). */
  renewing: Promise<void>;
  /** A renewal is queued or in flight. */
  renewPending: number;
}

/** What is written, and from what: the only place a LeaseSpec is built. */
export type SpecIntent =
  | { kind: 'acquire'; identity: string; previous?: Lease; now: number }
  | { kind: 'renew'; identity: string; held: Held; now: number; annotations: Record<string, string> }
  | { kind: 'release'; held: Held; now: number; annotations: Record<string, string> }
  /** Writes `asker` into wanted-by; the spec as read, so peers do not take it for a renewal. */
  | { kind: 'ask'; lease: Lease; asker: string; now: number };

export function leaseSpec(intent: SpecIntent, timing: Pick<CoordinatorTiming, 'leaseDurationMs'>): LeaseSpec {
  const duration = Math.round(timing.leaseDurationMs / 1000);
  switch (intent.kind) {
    case 'acquire': {
      const prev = intent.previous;
      const { [WANTED_ANNOTATION]: _asked, ...kept } = prev?.annotations ?? {};
      return {
        holder: intent.identity,
        leaseDurationSeconds: duration,
        acquireTime: intent.now,
        renewTime: intent.now,
        leaseTransitions: prev ? prev.leaseTransitions + (prev.holder === intent.identity ? 0 : 1) : 0,
        annotations: kept,
      };
    }
    case 'renew': {
      const h = intent.held;
      return { holder: intent.identity, leaseDurationSeconds: duration, acquireTime: h.acquireTime, renewTime: intent.now, leaseTransitions: h.transitions, annotations: intent.annotations };
    }
    case 'release':
      return { holder: undefined, leaseDurationSeconds: 1, acquireTime: intent.now, renewTime: intent.now, leaseTransitions: intent.held.transitions, annotations: intent.annotations };
    case 'ask': {
      const l = intent.lease;
      return {
        holder: l.holder,
        leaseDurationSeconds: l.leaseDurationSeconds ?? duration,
        acquireTime: l.acquireTime ?? intent.now,
        renewTime: l.renewTime ?? intent.now,
        leaseTransitions: l.leaseTransitions,
        annotations: { ...l.annotations, [WANTED_ANNOTATION]: intent.asker },
      };
    }
  }
}

/** Runs one API call with a deadline on the injected clock; no answer in time is LeaseApiError (status 0). */
export async function withDeadline<T>(clock: Clock, fn: (signal: AbortSignal) => Promise<T>, timeoutMs: number): Promise<T> {
  const ac = new AbortController();
  const cancel = clock.setTimer(timeoutMs, () => ac.abort(new LeaseApiError(0, `no answer within ${Math.round(timeoutMs)} ms`)));
  try {
    return await fn(ac.signal);
  } catch (err) {
    if (ac.signal.aborted) throw ac.signal.reason;
    throw err;
  } finally {
    cancel();
  }
}

/** How one renewal ended. `skipped`: not sent or not counted (deadline passed, feed no longer held by this acquisition). */
export type Renewal =
  | { kind: 'renewed' | 'skipped' | 'unreadable' }
  | { kind: 'failed'; err: unknown }
  /** 409, and the Lease still names this replica (someone wrote wanted-by): `held` now carries what was read. */
  | { kind: 'ours'; lease: Lease }
  /** 409, and the Lease names another holder, or none. */
  | { kind: 'taken'; holder?: string };

export interface LeaseKeeperOptions {
  api: LeaseApi;
  identity: string;
  timing: CoordinatorTiming;
  clock: Clock;
  log: Logger;
  /** The state to carry in the Lease now. */
  snapshot(feed: Feed): Promise<CarriedState>;
  /** The renew deadline passed: the feed must stop at once. */
  expired(s: FeedState, h: Held, reason: string): void;
}

/** Writes of the Leases this replica holds or takes. */
export class LeaseKeeper {
  readonly #o: LeaseKeeperOptions;

  constructor(o: LeaseKeeperOptions) {
    this.#o = o;
  }

  /** Creates or takes over the Lease (at the version `previous` was read at) and holds it; throws when not written. */
  async acquire(s: FeedState, previous: Lease | undefined): Promise<Held> {
    const { clock, timing, api } = this.#o;
    const sentAt = clock.now();
    const spec = leaseSpec({ kind: 'acquire', identity: this.#o.identity, previous, now: sentAt }, timing);
    const lease = await withDeadline(
      clock,
      (signal) => (previous ? api.update(s.feed.lease, previous.resourceVersion, spec, signal) : api.create(s.feed.lease, spec, signal)),
      timing.retryPeriodMs,
    );
    const h: Held = {
      resourceVersion: lease.resourceVersion,
      acquireTime: sentAt,
      transitions: spec.leaseTransitions,
      renewedSentAt: sentAt,
      ready: false,
      annotations: lease.annotations,
      cancelDeadline: () => {},
    };
    s.held = h;
    s.seen = undefined;
    s.freeSince = undefined;
    s.acquired++;
    this.#armDeadline(s, h);
    return h;
  }

  /** One renewal of `h`, bounded by its deadline. */
  async renew(s: FeedState, h: Held): Promise<Renewal> {
    const { clock, timing, api } = this.#o;
    const annotations = await this.#annotations(s, h, 'debug');
    const sentAt = clock.now();
    const left = h.renewedSentAt + timing.renewDeadlineMs - sentAt;
    if (left <= 0 || s.held !== h) return { kind: 'skipped' };
    const spec = leaseSpec({ kind: 'renew', identity: this.#o.identity, held: h, now: sentAt, annotations }, timing);
    try {
      // A slow answer still counts while it comes before the deadline (client-go bounds the
      // whole attempt by renew_deadline, not each request by the retry period).
      const lease = await withDeadline(clock, (signal) => api.update(s.feed.lease, h.resourceVersion, spec, signal), left);
      if (s.held !== h) return { kind: 'skipped' };
      h.resourceVersion = lease.resourceVersion;
      h.annotations = lease.annotations;
      h.renewedSentAt = sentAt;
      h.cancelDeadline();
      this.#armDeadline(s, h);
      return { kind: 'renewed' };
    } catch (err) {
      if (!(err instanceof LeaseConflictError)) s.renewFailures++;
      if (s.held !== h) return { kind: 'skipped' };
      if (!(err instanceof LeaseConflictError)) return { kind: 'failed', err };
      return this.#afterConflict(s, h, left);
    }
  }

  /** Someone wrote the Lease: if it names another holder, the feed is theirs now. */
  async #afterConflict(s: FeedState, h: Held, left: number): Promise<Renewal> {
    const { clock, timing, api } = this.#o;
    let now: Lease | undefined;
    try {
      now = await withDeadline(clock, (signal) => api.get(s.feed.lease, signal), Math.min(timing.retryPeriodMs, Math.max(1, left)));
    } catch {
      s.renewFailures++;
      return { kind: 'unreadable' };
    }
    if (s.held !== h) return { kind: 'skipped' };
    if (now?.holder !== this.#o.identity) return { kind: 'taken', ...(now?.holder ? { holder: now.holder } : {}) };
    h.resourceVersion = now.resourceVersion;
    h.annotations = now.annotations;
    return { kind: 'ours', lease: now };
  }

  /**
   * Writes the final state and releases the Lease; the caller has already let go of `h`.
   * `released`: everything sent was committed; `to`: the replica that asked for the feed, kept in
   * `wanted-by` so it takes the feed first.
   */
  async release(s: FeedState, h: Held, o: { released: boolean; snapshot: boolean; to?: string }): Promise<void> {
    const { clock, timing, api } = this.#o;
    h.cancelDeadline();
    const now = clock.now();
    const base = o.to ? { ...h.annotations, [WANTED_ANNOTATION]: o.to } : h.annotations;
    const annotations = o.snapshot ? await this.#annotations(s, { ...h, annotations: base }, 'warn', o.released) : base;
    const spec = leaseSpec({ kind: 'release', held: h, now, annotations }, timing);
    try {
      await withDeadline(clock, (signal) => api.update(s.feed.lease, h.resourceVersion, spec, signal), timing.retryPeriodMs);
      s.released++;
      this.#o.log.info(
        { feed: s.feed.id, lease: s.feed.lease, clean: o.released, to: o.to },
        o.to ? `Feed ${s.feed.id} released for ${o.to}.` : 'Lease released after the final commit; a peer can take the feed over now.',
      );
    } catch (err) {
      this.#o.log.warn(
        { feed: s.feed.id, lease: s.feed.lease, err: (err as Error).message, code: leaseErrorCode(err), lease_duration_secs: timing.leaseDurationMs / 1000 },
        'Could not release the Lease; a peer takes the feed over after lease_duration_secs.',
      );
    }
  }

  /** The annotations to write: `h`'s, with the current state once the feed was adopted (the last written one when unreadable). */
  async #annotations(s: FeedState, h: Held, level: 'debug' | 'warn', released?: boolean): Promise<Record<string, string>> {
    if (!h.ready) return h.annotations;
    try {
      const state = await this.#o.snapshot(s.feed);
      return { ...h.annotations, [STATE_ANNOTATION]: encodeState(released === undefined ? state : { ...state, released }) };
    } catch (err) {
      if (level === 'warn') this.#o.log.warn({ feed: s.feed.id, err: (err as Error).message }, 'Could not read the final state; the Lease keeps the last renewed one.');
      else this.#o.log.debug({ feed: s.feed.id, err: (err as Error).message }, 'State not readable now; renewing with the last one.');
      return h.annotations;
    }
  }

  #armDeadline(s: FeedState, h: Held): void {
    const { clock, timing } = this.#o;
    const left = h.renewedSentAt + timing.renewDeadlineMs - clock.now();
    h.cancelDeadline = clock.setTimer(left, () => {
      if (s.held === h) this.#o.expired(s, h, `not renewed within renew_deadline_secs (${timing.renewDeadlineMs / 1000} s)`);
    });
  }
}

/** The code of a Lease failure, for log fields. */
export function leaseErrorCode(err: unknown): string | number | undefined {
  if (err instanceof LeaseConflictError || err instanceof LeaseApiError) return err.code;
  return undefined;
}
