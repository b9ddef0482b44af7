/**
 * One puller per feed across replicas, through one coordination.k8s.io/v1 Lease per feed: the
 * leader election of client-go (tools/leaderelection), run once per feed.
 *
 * The contract:
 * - A replica pulls a feed only while it holds the feed's Lease. Every retry period it renews what
 *   it holds (an update at the last resourceVersion it wrote) and looks at the Leases it does not.
 * - A holder that has not renewed successfully within renew_deadline of SENDING its last
 *   successful renewal loses the feed: its source is aborted at once. The server wrote that
 *   renewal after it was sent, and a peer saw it no earlier, so the holder stops pulling at least
 *   lease_duration - renew_deadline before any peer can think the Lease expired.
 * - A peer judges expiry by its own clock, as client-go does (clocks of different nodes are not
 *   compared): a Lease whose resourceVersion has not changed for its leaseDurationSeconds since
 *   this replica first saw that version has expired. Holder identity empty: released, free now.
 * - Every write carries the resourceVersion it read; 409 (AlreadyExists on create, Conflict on
 *   update) means another replica wrote first and won.
 * - Spreading: the replicas a replica can see are the holders of live Leases and itself; its
 *   share is the number of feeds over that, rounded up. Below its share it takes at most one free
 *   feed per retry period, once the feed has been free for as many retry periods as it holds
 *   feeds (a replica holding none, which nobody can see, goes first); at or above its share, only
 *   a feed that stayed free for a lease duration (somebody must pull it). Feeds do not move away
 *   from a live holder.
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
import { LeaseApiError, LeaseConflictError, type Lease, type LeaseApi, type LeaseSpec } from './lease-api.ts';
import { STATE_ANNOTATION, decodeState, encodeState, type CarriedState } from './carried-state.ts';

/** The replica that asked for a feed (rebalancing); kept on release so it takes the feed first. */
export const WANTED_ANNOTATION = 'proofpoint-sidecar/wanted-by';
import type { Feed } from './feeds.ts';

export interface CoordinatorTiming {
  leaseDurationMs: number;
  renewDeadlineMs: number;
  retryPeriodMs: number;
}

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

interface Held {
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

interface FeedState {
  feed: Feed;
  /**
   * Last observation of a Lease not held here (undefined lease: 404). `observedAt` is when its
   * holder or renewTime last changed: a `wanted-by` write is not a renewal.
   */
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

export class Coordinator {
  readonly identity: string;
  readonly #o: CoordinatorOptions;
  readonly #feeds: FeedState[];
  readonly #log: Logger;
  readonly #random: () => number;
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
        await this.#writeRelease(s, h, { released: clean, snapshot: h.ready });
      }),
    );
  }

  /**
   * Writes the final state and releases the Lease (client-go's release: empty holder, one-second
   * duration, so peers need not wait). `released`: everything sent was committed; `to`: the replica
   * that asked for the feed, kept in `wanted-by` so it takes the feed first.
   */
  async #writeRelease(s: FeedState, h: Held, o: { released: boolean; snapshot: boolean; to?: string }): Promise<void> {
    const now = this.#o.clock.now();
    let annotations: Record<string, string> = o.to ? { ...h.annotations, [WANTED_ANNOTATION]: o.to } : h.annotations;
    if (o.snapshot) {
      try {
        annotations = { ...annotations, [STATE_ANNOTATION]: encodeState({ ...(await this.#o.handlers.snapshot(s.feed)), released: o.released }) };
      } catch (err) {
        this.#log.warn({ feed: s.feed.id, err: (err as Error).message }, 'Could not read the final state; the Lease keeps the last renewed one.');
      }
    }
    try {
      await this.#call(
        (signal) =>
          this.#o.api.update(
            s.feed.lease,
            h.resourceVersion,
            { holder: undefined, leaseDurationSeconds: 1, acquireTime: now, renewTime: now, leaseTransitions: h.transitions, annotations },
            signal,
          ),
        this.#o.timing.retryPeriodMs,
      );
      s.released++;
      this.#log.info(
        { feed: s.feed.id, lease: s.feed.lease, clean: o.released, to: o.to },
        o.to ? `Feed ${s.feed.id} released for ${o.to}.` : 'Lease released after the final commit; a peer can take the feed over now.',
      );
    } catch (err) {
      this.#log.warn(
        { feed: s.feed.id, lease: s.feed.lease, err: (err as Error).message },
        `Could not release the Lease; a peer takes the feed over after lease_duration_secs (${this.#o.timing.leaseDurationMs / 1000} s).`,
      );
    }
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
    const s = this.#pick();
    if (s) await this.#acquire(s);
    else await this.#ask();
  }

  /**
   * Asks the busiest replica for one of its feeds when it holds at least two more than this one:
   * at most once per lease duration, and only of a Lease seen renewed lately (asking a dead
   * holder would only wait for its expiry anyway).
   */
  async #ask(): Promise<void> {
    const { clock, timing, api } = this.#o;
    const now = clock.now();
    if (now - this.#lastAskAt < timing.leaseDurationMs) return;
    const held = this.#feeds.filter((s) => s.held).length;
    const byHolder = new Map<string, FeedState[]>();
    for (const s of this.#feeds) {
      const lease = s.seen?.lease;
      if (s.held || !lease?.holder || this.#isFree(s, now)) continue;
      byHolder.set(lease.holder, [...(byHolder.get(lease.holder) ?? []), s]);
    }
    const [, busiest] = [...byHolder].sort((a, b) => b[1].length - a[1].length)[0] ?? [];
    if (!busiest || busiest.length - held < 2) return;
    const fresh = busiest.filter((s) => now - s.seen!.observedAt <= 2 * timing.retryPeriodMs && !s.seen!.lease!.annotations[WANTED_ANNOTATION]);
    if (fresh.length === 0) return;
    const s = fresh[Math.floor(this.#random() * fresh.length)]!;
    const lease = s.seen!.lease!;
    this.#lastAskAt = now;
    try {
      await this.#call(
        (signal) =>
          api.update(
            s.feed.lease,
            lease.resourceVersion,
            {
              holder: lease.holder,
              leaseDurationSeconds: lease.leaseDurationSeconds ?? Math.round(timing.leaseDurationMs / 1000),
              acquireTime: lease.acquireTime ?? now,
              renewTime: lease.renewTime ?? now,
              leaseTransitions: lease.leaseTransitions,
              annotations: { ...lease.annotations, [WANTED_ANNOTATION]: this.identity },
            },
            signal,
          ),
        timing.retryPeriodMs,
      );
      this.#log.info({ feed: s.feed.id, holder: lease.holder, held }, `Asked ${lease.holder} to hand feed ${s.feed.id} over (it holds ${busiest.length}, this replica ${held}).`);
    } catch (err) {
      if (!(err instanceof LeaseConflictError)) this.#failed(s, 'ask for', err);
    }
  }

  /** Hands a held feed over to the replica that asked for it: stop, commit, release naming it. */
  #handOver(s: FeedState, h: Held, to: string): void {
    s.handover = (async () => {
      this.#log.info({ feed: s.feed.id, to }, `Handing feed ${s.feed.id} over to ${to}, which asked for it.`);
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
      await this.#writeRelease(s, h, { released: clean, snapshot: h.ready, to });
    })().finally(() => {
      s.handover = undefined;
    });
  }

  #leaseDurationOf(lease: Lease): number {
    return (lease.leaseDurationSeconds ?? this.#o.timing.leaseDurationMs / 1000) * 1000;
  }

  #isFree(s: FeedState, now: number): boolean {
    if (!s.seen) return false;
    const lease = s.seen.lease;
    if (!lease || !lease.holder || lease.holder === this.identity) return true;
    return now - s.seen.observedAt >= this.#leaseDurationOf(lease);
  }

  async #observe(s: FeedState): Promise<void> {
    let lease: Lease | undefined;
    try {
      lease = await this.#call((signal) => this.#o.api.get(s.feed.lease, signal), this.#o.timing.retryPeriodMs);
    } catch (err) {
      this.#failed(s, 'read', err);
      return;
    }
    this.#succeeded(s);
    const now = this.#o.clock.now();
    const renewed = (a?: Lease, b?: Lease) => a?.holder !== b?.holder || a?.renewTime !== b?.renewTime || (a === undefined) !== (b === undefined);
    if (!s.seen || renewed(s.seen.lease, lease)) s.seen = { lease, observedAt: now };
    else s.seen.lease = lease;
    if (this.#isFree(s, now)) s.freeSince ??= now;
    else s.freeSince = undefined;
  }

  #pick(): FeedState | undefined {
    const now = this.#o.clock.now();
    const free = this.#feeds.filter((s) => !s.held && this.#isFree(s, now));
    if (free.length === 0) return undefined;
    const mine = free.find((s) => s.seen?.lease?.holder === this.identity || s.seen?.lease?.annotations[WANTED_ANNOTATION] === this.identity);
    if (mine) return mine;
    const replicas = new Set([this.identity]);
    for (const s of this.#feeds) {
      const holder = s.seen?.lease?.holder;
      if (!s.held && holder && !this.#isFree(s, now)) replicas.add(holder);
    }
    const share = Math.ceil(this.#feeds.length / replicas.size);
    const held = this.#feeds.filter((s) => s.held).length;
    // Replicas holding nothing are invisible (no Lease names them), so the more a replica holds,
    // the longer a feed must have been free before it tries: the least loaded go first.
    const wait = held < share ? held * this.#o.timing.retryPeriodMs : this.#o.timing.leaseDurationMs;
    const eligible = free.filter((s) => {
      const waited = now - (s.freeSince ?? now);
      // Released for another replica that asked for it: that one goes first.
      const wanted = s.seen?.lease?.annotations[WANTED_ANNOTATION];
      if (wanted && !s.seen?.lease?.holder) return waited >= this.#o.timing.leaseDurationMs;
      return waited >= wait;
    });
    if (eligible.length === 0) return undefined;
    return eligible[Math.floor(this.#random() * eligible.length)]!;
  }

  async #acquire(s: FeedState): Promise<void> {
    const { clock, timing, api } = this.#o;
    const prev = s.seen?.lease;
    const sentAt = clock.now();
    const base = prev?.annotations ?? {};
    const { [WANTED_ANNOTATION]: _asked, ...kept } = base;
    const spec: LeaseSpec = {
      holder: this.identity,
      leaseDurationSeconds: Math.round(timing.leaseDurationMs / 1000),
      acquireTime: sentAt,
      renewTime: sentAt,
      leaseTransitions: prev ? prev.leaseTransitions + (prev.holder === this.identity ? 0 : 1) : 0,
      annotations: kept,
    };
    let lease: Lease;
    try {
      lease = await this.#call(
        (signal) => (prev ? api.update(s.feed.lease, prev.resourceVersion, spec, signal) : api.create(s.feed.lease, spec, signal)),
        timing.retryPeriodMs,
      );
    } catch (err) {
      s.seen = undefined;
      s.freeSince = undefined;
      if (err instanceof LeaseConflictError) {
        this.#log.debug({ feed: s.feed.id, lease: s.feed.lease }, 'Another replica took the feed first.');
        return;
      }
      this.#failed(s, 'acquire', err);
      return;
    }
    this.#succeeded(s);
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
    const decoded = decodeState(base);
    if (decoded.state) how.carried = decoded.state;
    if (decoded.problem) how.problem = decoded.problem;
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
    this.#log.info(
      { feed: s.feed.id, lease: s.feed.lease, from: how.from, previous_holder: how.previousHolder, carried: how.carried !== undefined },
      how.from === 'expired'
        ? `Took feed ${s.feed.id} over from ${how.previousHolder}, whose Lease expired.`
        : `Acquired feed ${s.feed.id}; pulling it here.`,
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
    const { clock, timing, api } = this.#o;
    let annotations = h.annotations;
    if (h.ready) {
      try {
        annotations = { ...h.annotations, [STATE_ANNOTATION]: encodeState(await this.#o.handlers.snapshot(s.feed)) };
      } catch (err) {
        this.#log.debug({ feed: s.feed.id, err: (err as Error).message }, 'State not readable now; renewing with the last one.');
      }
    }
    const sentAt = clock.now();
    const left = h.renewedSentAt + timing.renewDeadlineMs - sentAt;
    if (left <= 0 || s.held !== h) return false;
    try {
      const lease = await this.#call(
        (signal) =>
          api.update(
            s.feed.lease,
            h.resourceVersion,
            {
              holder: this.identity,
              leaseDurationSeconds: Math.round(timing.leaseDurationMs / 1000),
              acquireTime: h.acquireTime,
              renewTime: sentAt,
              leaseTransitions: h.transitions,
              annotations,
            },
            signal,
          ),
        // A slow answer still counts while it comes before the deadline (client-go bounds the
        // whole attempt by renew_deadline, not each request by the retry period).
        left,
      );
      if (s.held !== h) return false;
      this.#succeeded(s);
      h.resourceVersion = lease.resourceVersion;
      h.annotations = lease.annotations;
      h.renewedSentAt = sentAt;
      h.cancelDeadline();
      this.#armDeadline(s, h);
      return true;
    } catch (err) {
      if (!(err instanceof LeaseConflictError)) s.renewFailures++;
      if (s.held !== h) return false;
      if (err instanceof LeaseConflictError) {
        // Someone wrote the Lease: if it names another holder, the feed is theirs now.
        let now: Lease | undefined;
        try {
          now = await this.#call((signal) => api.get(s.feed.lease, signal), Math.min(timing.retryPeriodMs, Math.max(1, left)));
        } catch {
          s.renewFailures++;
          return false;
        }
        if (s.held !== h) return false;
        if (now?.holder === this.identity) {
          h.resourceVersion = now.resourceVersion;
          h.annotations = now.annotations;
          const asker = now.annotations[WANTED_ANNOTATION];
          if (asker && asker !== this.identity && !s.handover) {
            const held = this.#feeds.filter((x) => x.held && !x.handover).length;
            if (held >= 2) this.#handOver(s, h, asker);
            else {
              // Holding one feed, this replica is not the busiest any more: decline.
              const { [WANTED_ANNOTATION]: _declined, ...rest } = h.annotations;
              h.annotations = rest;
            }
          }
          return false;
        }
        this.#lose(s, now?.holder ? `taken by ${now.holder}` : 'the Lease was released or deleted by someone else');
        return false;
      }
      this.#failed(s, 'renew', err);
      return false;
    }
  }

  #armDeadline(s: FeedState, h: Held): void {
    const left = h.renewedSentAt + this.#o.timing.renewDeadlineMs - this.#o.clock.now();
    h.cancelDeadline = this.#o.clock.setTimer(left, () => {
      if (s.held === h) {
        this.#lose(s, `not renewed within renew_deadline_secs (${this.#o.timing.renewDeadlineMs / 1000} s)`);
      }
    });
  }

  #lose(s: FeedState, reason: string, o: { notify?: boolean } = {}): void {
    const h = s.held;
    if (!h) return;
    h.cancelDeadline();
    s.held = undefined;
    s.seen = undefined;
    s.freeSince = undefined;
    s.lost++;
    this.#log.warn({ feed: s.feed.id, lease: s.feed.lease, reason }, `Lost feed ${s.feed.id} (${reason}); stopped pulling it.`);
    if (o.notify !== false) this.#o.handlers.lost(s.feed, reason);
  }

  #failed(s: FeedState, what: string, err: unknown): void {
    s.failing++;
    const e = err as Error;
    const status = e instanceof LeaseApiError ? e.status : undefined;
    const fields = { feed: s.feed.id, lease: s.feed.lease, namespace: this.#o.api.namespace, status, err: e.message };
    // Refusals are configuration (RBAC, token) and worth saying every time; network trouble once per streak.
    if (status === 401 || status === 403) this.#log.error(fields, `Kubernetes refused to ${what} the Lease.`);
    else if (s.failing === 1) this.#log.warn(fields, `Could not ${what} the Lease; retrying every retry period.`);
  }

  #succeeded(s: FeedState): void {
    if (s.failing > 1) this.#log.info({ feed: s.feed.id, lease: s.feed.lease, failures: s.failing }, 'Kubernetes API answers again.');
    s.failing = 0;
  }

  /** Runs one API call with a deadline on the injected clock. */
  async #call<T>(fn: (signal: AbortSignal) => Promise<T>, timeoutMs: number): Promise<T> {
    const ac = new AbortController();
    const cancel = this.#o.clock.setTimer(timeoutMs, () => ac.abort(new LeaseApiError(0, `no answer within ${Math.round(timeoutMs)} ms`)));
    try {
      return await fn(ac.signal);
    } catch (err) {
      if (ac.signal.aborted) throw ac.signal.reason;
      throw err;
    } finally {
      cancel();
    }
  }
}
