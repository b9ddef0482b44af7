/**
 * One puller per feed across replicas, through one coordination.k8s.io/v1 Lease per feed: the
 * leader election of client-go (tools/leaderelection), run once per feed. This file is the round
 * loop; holding a Lease (renewals, the renew deadline, release) is lease.ts, which feed to take or
 * ask for is balance.ts.
 *
 * The contract:
 * - A replica pulls a feed only while it holds the feed's Lease. Every retry period it renews what
 *   it holds and looks at the Leases it does not; it takes at most one free feed per round.
 * - Rebalancing on request: a replica holding at least two feeds fewer than another asks for
 *   one of that replica's feeds by writing its identity into the Lease's `wanted-by` annotation
 *   (spec untouched, so peers do not take it for a renewal). The holder sees it at its next
 *   renewal (409, then a read), stops pulling the feed, commits, writes the final state and
 *   releases the Lease naming the asker, who takes it at once; others wait a lease duration.
 * - On shutdown the holder stops taking feeds, keeps renewing while the pipeline drains, then
 *   writes its final state and releases (empty holder) so a peer takes over at once.
 */
import type { Logger } from 'pino';
import type { Clock } from '../util/clock.ts';
import { ErrorCode } from '../errors.ts';
import { LeaseApiError, LeaseConflictError, type Lease, type LeaseApi } from './lease-api.ts';
import { decodeState, type CarriedState } from './carried-state.ts';
import { WANTED_ANNOTATION, isFree, isRenewal, pickAsk, pickFeed, shouldHandOver } from './balance.ts';
import { LeaseKeeper, leaseErrorCode, leaseSpec, withDeadline, type CoordinatorTiming, type FeedState, type Held } from './lease.ts';
import type { Feed } from './feeds.ts';

export { WANTED_ANNOTATION } from './balance.ts';
export type { CoordinatorTiming } from './lease.ts';

/** How a feed came to this replica. */
export interface Acquisition {
  /** none: no Lease existed; released: its holder let it go; expired: its holder stopped renewing; self: it named this replica already. */
  from: 'none' | 'released' | 'expired' | 'self';
  previousHolder?: string;
  /** The state the previous holder wrote, when readable. */
  carried?: CarriedState;
  /** Why the carried state was not readable. */
  problem?: string;
  /**
   * Writes the feed's state into its Lease now (a renewal out of turn), retrying every retry period
   * while the Lease is held. Resolves true once written, false when the Lease is no longer held.
   * TAP records each request this way before sending it, so a takeover never misses one.
   */
  persist: () => Promise<boolean>;
  /** Called by the handler once the carried state is adopted: renewals carry the local state from then on. */
  adopted: () => void;
}

export interface FeedHandlers {
  /** The feed is ours: adopt the carried state and start pulling. */
  acquired(feed: Feed, how: Acquisition): Promise<void>;
  /** The feed is not ours any more: stop pulling at once (the stop must begin before this returns). */
  lost(feed: Feed, reason: string): void;
  /** The state to carry in the Lease now: committed cursors and, for TAP, request times. */
  snapshot(feed: Feed): Promise<CarriedState>;
  /** Hand the feed over: stop pulling it and resolve once everything it sent is committed. */
  release(feed: Feed, reason: string): Promise<void>;
}

export interface CoordinatorOptions {
  api: LeaseApi;
  identity: string;
  feeds: Feed[];
  timing: CoordinatorTiming;
  handlers: FeedHandlers;
  clock: Clock;
  logger: Logger;
  random?: () => number;
}

export interface FeedLeaseStatus {
  feed: string;
  lease: string;
  held: boolean;
  /** The holder last seen (this replica when held). */
  holder?: string;
  acquired: number;
  lost: number;
  released: number;
  renewFailures: number;
}

export class Coordinator {
  readonly identity: string;
  readonly #o: CoordinatorOptions;
  readonly #feeds: FeedState[];
  readonly #log: Logger;
  readonly #random: () => number;
  readonly #leases: LeaseKeeper;
  readonly #stop = new AbortController();
  #acquiring = true;
  #lastAskAt = -Infinity;
  #loop?: Promise<void>;

  constructor(o: CoordinatorOptions) {
    this.#o = o;
    this.identity = o.identity;
    this.#log = o.logger.child({ component: 'coordination' });
    this.#random = o.random ?? Math.random;
    this.#feeds = o.feeds.map((feed) => ({ feed, acquired: 0, lost: 0, released: 0, renewFailures: 0, failing: 0, renewing: Promise.resolve(), renewPending: 0 }));
    this.#leases = new LeaseKeeper({
      api: o.api,
      identity: o.identity,
      timing: o.timing,
      clock: o.clock,
      log: this.#log,
      snapshot: (feed) => o.handlers.snapshot(feed),
      expired: (s, _h, reason) => this.#lose(s, reason),
    });
  }

  start(): void {
    this.#loop ??= this.#run();
  }

  /** Per-feed Lease status, for /readyz, /metrics and tests. */
  status(): FeedLeaseStatus[] {
    return this.#feeds.map((s) => ({
      feed: s.feed.id,
      lease: s.feed.lease,
      held: s.held !== undefined,
      holder: s.held ? this.identity : s.seen?.lease?.holder,
      acquired: s.acquired,
      lost: s.lost,
      released: s.released,
      renewFailures: s.renewFailures,
    }));
  }

  /** Feeds held now. */
  held(): string[] {
    return this.#feeds.filter((s) => s.held).map((s) => s.feed.id);
  }

  /** No more feeds are taken; held ones are still renewed (while the pipeline drains). */
  stopAcquiring(): void {
    this.#acquiring = false;
  }

  /**
   * Ends the loop, then writes each held feed's final state and releases its Lease. `clean`:
   * everything sent was committed, so the next holder need not recover as after a crash.
   */
  async release(clean: boolean): Promise<void> {
    this.#acquiring = false;
    this.#stop.abort();
    await this.#loop;
    await Promise.all(
      this.#feeds.map(async (s) => {
        await s.handover;
        // A renewal in flight would change the resourceVersion under the release.
        await s.renewing;
        const h = s.held;
        if (!h) return;
        h.cancelDeadline();
        s.held = undefined;
        await this.#leases.release(s, h, { released: clean, snapshot: h.ready });
      }),
    );
  }

  async #run(): Promise<void> {
    const { clock, timing } = this.#o;
    while (!this.#stop.signal.aborted) {
      await this.#once().catch((err) => this.#log.error({ err: (err as Error).message }, 'Coordination round failed.'));
      // Jitter below the period only: renewals stay at least as frequent as configured.
      const wait = timing.retryPeriodMs * (0.9 + 0.1 * this.#random());
      await clock.sleep(wait, this.#stop.signal).catch(() => {});
    }
  }

  /**
   * One round: renew what is held, look at the rest, take at most one free feed. Renewals are not
   * awaited: a slow answer for one feed must not delay the renewal of another.
   */
  async #once(): Promise<void> {
    for (const s of this.#feeds) if (s.held && !s.renewPending) void this.#renewInTurn(s);
    await Promise.all(this.#feeds.filter((s) => !s.held).map((s) => this.#observe(s)));
    if (!this.#acquiring || this.#stop.signal.aborted) return;
    const { clock, timing } = this.#o;
    const picked = pickFeed(this.#feeds.map(view), this.identity, clock.now(), timing, this.#random);
    if (picked !== undefined) await this.#acquire(this.#feeds[picked]!);
    else await this.#ask();
  }

  /** Asks the busiest replica for one of its feeds (balance.ts pickAsk says when and which). */
  async #ask(): Promise<void> {
    const { clock, timing, api } = this.#o;
    const now = clock.now();
    const ask = pickAsk(this.#feeds.map(view), this.identity, now, this.#lastAskAt, timing, this.#random);
    if (!ask) return;
    const s = this.#feeds[ask.index]!;
    const { lease } = ask;
    this.#lastAskAt = now;
    const spec = leaseSpec({ kind: 'ask', lease, asker: this.identity, now }, timing);
    try {
      await withDeadline(clock, (signal) => api.update(s.feed.lease, lease.resourceVersion, spec, signal), timing.retryPeriodMs);
      this.#log.info(
        { feed: s.feed.id, holder: lease.holder, theirs: ask.theirs, held: ask.ours },
        'Asked the busiest replica to hand a feed over.',
      );
    } catch (err) {
      if (!(err instanceof LeaseConflictError)) this.#failed(s, 'ask for', err);
    }
  }

  /** Hands a held feed over to the replica that asked for it: stop, commit, release naming it. */
  #handOver(s: FeedState, h: Held, to: string): void {
    s.handover = (async () => {
      this.#log.info({ feed: s.feed.id, to }, 'Handing a feed over to the replica that asked for it.');
      let clean = true;
      try {
        await this.#o.handlers.release(s.feed, `handed over to ${to}`);
      } catch (err) {
        clean = false;
        this.#log.warn({ feed: s.feed.id, err: (err as Error).message }, 'Stopping the feed for the hand-over failed.');
      }
      await s.renewing;
      if (s.held !== h) return;
      h.cancelDeadline();
      s.held = undefined;
      await this.#leases.release(s, h, { released: clean, snapshot: h.ready, to });
    })().finally(() => {
      s.handover = undefined;
    });
  }

  async #observe(s: FeedState): Promise<void> {
    let lease: Lease | undefined;
    try {
      lease = await withDeadline(this.#o.clock, (signal) => this.#o.api.get(s.feed.lease, signal), this.#o.timing.retryPeriodMs);
    } catch (err) {
      this.#failed(s, 'read', err);
      return;
    }
    this.#succeeded(s);
    const now = this.#o.clock.now();
    if (!s.seen || isRenewal(s.seen.lease, lease)) s.seen = { lease, observedAt: now };
    else s.seen.lease = lease;
    if (isFree(view(s), this.identity, now, this.#o.timing)) s.freeSince ??= now;
    else s.freeSince = undefined;
  }

  async #acquire(s: FeedState): Promise<void> {
    const prev = s.seen?.lease;
    let h: Held;
    try {
      h = await this.#leases.acquire(s, prev);
    } catch (err) {
      s.seen = undefined;
      s.freeSince = undefined;
      if (err instanceof LeaseConflictError) {
        this.#log.debug({ feed: s.feed.id, lease: s.feed.lease, code: err.code }, 'Another replica took the feed first.');
        return;
      }
      this.#failed(s, 'acquire', err);
      return;
    }
    this.#succeeded(s);
    const how = this.#acquisition(s, h, prev);
    this.#log.info(
      { feed: s.feed.id, lease: s.feed.lease, from: how.from, previous_holder: how.previousHolder, carried: how.carried !== undefined },
      how.from === 'expired' ? 'Took a feed over from a replica whose Lease expired.' : 'Acquired a feed; pulling it here.',
    );
    if (how.problem) this.#log.warn({ feed: s.feed.id, problem: how.problem }, 'The Lease carries no usable state; starting from the local cursor.');
    // Not awaited: renewals go on meanwhile, carrying the inherited state until the feed is adopted.
    void this.#o.handlers.acquired(s.feed, how).then(
      () => {
        h.ready = true;
      },
      (err: Error) => {
        this.#log.error({ feed: s.feed.id, err: err.message }, 'Could not start the feed; giving its Lease up.');
        if (s.held === h) this.#lose(s, `could not start: ${err.message}`, { notify: false });
      },
    );
  }

  /** How the feed came here, with the state the previous holder wrote. */
  #acquisition(s: FeedState, h: Held, prev: Lease | undefined): Acquisition {
    const persist = () => this.#persist(s, h);
    const adopted = () => {
      h.ready = true;
    };
    const how: Acquisition = !prev
      ? { from: 'none', persist, adopted }
      : !prev.holder
        ? { from: 'released', persist, adopted }
        : prev.holder === this.identity
          ? { from: 'self', previousHolder: prev.holder, persist, adopted }
          : { from: 'expired', previousHolder: prev.holder, persist, adopted };
    const decoded = decodeState(prev?.annotations ?? {});
    if (decoded.state) how.carried = decoded.state;
    if (decoded.problem) how.problem = decoded.problem;
    return how;
  }

  /** The loop's renewal, after any renewal out of turn of the same feed. */
  #renewInTurn(s: FeedState): Promise<boolean> {
    s.renewPending++;
    const next = s.renewing.then(() => (s.held ? this.#renew(s) : false)).finally(() => s.renewPending--);
    s.renewing = next.then(
      () => {},
      () => {},
    );
    return next;
  }

  async #persist(s: FeedState, h: Held): Promise<boolean> {
    for (;;) {
      if (s.held !== h || this.#stop.signal.aborted) return false;
      // This renewal starts after the call, so its snapshot includes what the caller recorded.
      if ((await this.#renewInTurn(s)) && s.held === h && h.ready) return true;
      if (s.held !== h) return false;
      await this.#o.clock.sleep(this.#o.timing.retryPeriodMs, this.#stop.signal).catch(() => {});
    }
  }

  /** One renewal; true when it was written. */
  async #renew(s: FeedState): Promise<boolean> {
    const h = s.held!;
    const r = await this.#leases.renew(s, h);
    if (r.kind === 'renewed') this.#succeeded(s);
    if (r.kind === 'renewed' || s.held !== h) return r.kind === 'renewed';
    if (r.kind === 'failed') this.#failed(s, 'renew', r.err);
    else if (r.kind === 'taken') this.#lose(s, r.holder ? `taken by ${r.holder}` : 'the Lease was released or deleted by someone else');
    else if (r.kind === 'ours') {
      const asker = r.lease.annotations[WANTED_ANNOTATION];
      if (asker && asker !== this.identity && !s.handover) {
        if (shouldHandOver(this.#feeds.filter((x) => x.held && !x.handover).length)) this.#handOver(s, h, asker);
        else {
          // Holding one feed, this replica is not the busiest any more: decline.
          const { [WANTED_ANNOTATION]: _declined, ...rest } = h.annotations;
          h.annotations = rest;
        }
      }
    }
    return false;
  }

  #lose(s: FeedState, reason: string, o: { notify?: boolean } = {}): void {
    const h = s.held;
    if (!h) return;
    h.cancelDeadline();
    s.held = undefined;
    s.seen = undefined;
    s.freeSince = undefined;
    s.lost++;
    this.#log.warn({ feed: s.feed.id, lease: s.feed.lease, reason, code: ErrorCode.LEASE_LOST }, `Lost feed ${s.feed.id} (${reason}); stopped pulling it.`);
    if (o.notify !== false) this.#o.handlers.lost(s.feed, reason);
  }

  #failed(s: FeedState, what: string, err: unknown): void {
    s.failing++;
    const e = err as Error;
    const status = e instanceof LeaseApiError ? e.status : undefined;
    const fields = { feed: s.feed.id, lease: s.feed.lease, namespace: this.#o.api.namespace, status, code: leaseErrorCode(err), request: what, err: e.message };
    // Refusals are configuration (RBAC, token) and worth saying every time; network trouble once per streak.
    if (status === 401 || status === 403) this.#log.error(fields, 'Kubernetes refused a Lease request.');
    else if (s.failing === 1) this.#log.warn(fields, 'A Lease request failed; retrying every retry period.');
  }

  #succeeded(s: FeedState): void {
    if (s.failing > 1) this.#log.info({ feed: s.feed.id, lease: s.feed.lease, failures: s.failing }, 'Kubernetes API answers again.');
    s.failing = 0;
  }
}

/** What balance.ts looks at. */
function view(s: FeedState) {
  return { held: s.held !== undefined, seen: s.seen, freeSince: s.freeSince };
}
