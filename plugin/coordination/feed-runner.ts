/**
 * What a replica does when a feed's Lease comes and goes (the Coordinator's FeedHandlers):
 *
 * - acquired: adopt the state the Lease carries (the later of the local and the carried cursor of
 *   each service, collected under the same start time; the inherited TAP request times, each
 *   counted once), then attach a fresh source for the feed to the pipeline. A feed taken from a
 *   holder that did not release it cleanly is recovered as after a crash (PoD replays the gap
 *   from its archive).
 * - lost: abort the feed's source at once; its batches already sent still commit locally.
 * - release (hand-over on request): the same, resolved once those batches are committed.
 * - snapshot: the committed cursors, request times and the fingerprints of the de-dup keys
 *   committed within CARRY_SPAN_MS (plus those inherited and still in use), for the next renewal.
 *
 * Per feed, a new acquisition waits until the previous run of the same feed has stopped and
 * committed, so two runs of one feed never overlap in this process either.
 */
import type { Logger } from 'pino';
import type { AttachedSource, Pipeline } from '../pipeline/pipeline.ts';
import type { Clock } from '../util/clock.ts';
import type { CarriedState } from './carried-state.ts';
import { fingerprint } from '../pipeline/dedupe.ts';
import { scopeOf, type StateStore } from '../state/store.ts';
import type { Acquisition, FeedHandlers } from './coordinator.ts';
import type { RequestLog } from '../sources/source.ts';
import type { Feed } from './feeds.ts';

/**
 * How far back the keys carried in a Lease reach: what a takeover can re-read. PoD replays from
 * the start of the cursor's hour (up to 60 min) plus unsorted arrival; TAP re-queries windows not
 * yet settled (settle_delay_secs, 40 min by default, plus a window).
 */
export const CARRY_SPAN_MS = 90 * 60_000;

interface FeedRun {
  starting: Promise<void>;
  /** Fingerprints inherited at acquisition, per service, still dropped as duplicates. */
  inherited: Map<string, Set<string>>;
  handle?: AttachedSource;
  lost?: string;
  stopping?: Promise<void>;
}

export class FeedRunner implements FeedHandlers {
  readonly #pipeline: Pipeline;
  readonly #store: StateStore;
  readonly #clock: Clock;
  readonly #log: Logger;
  readonly #runs = new Map<string, FeedRun>();
  readonly #carryKeys: number;

  constructor(o: { pipeline: Pipeline; store: StateStore; clock: Clock; logger: Logger; carryKeys?: number }) {
    this.#carryKeys = o.carryKeys ?? 8_192;
    this.#pipeline = o.pipeline;
    this.#store = o.store;
    this.#clock = o.clock;
    this.#log = o.logger.child({ component: 'coordination' });
  }

  acquired(feed: Feed, how: Acquisition): Promise<void> {
    const prev = this.#runs.get(feed.id);
    // The coordinator reports a loss before a new acquisition; should it not, stop the old run here.
    if (prev && prev.lost === undefined) this.lost(feed, 'acquired again');
    const run: FeedRun = { starting: Promise.resolve(), inherited: new Map() };
    this.#runs.set(feed.id, run);
    run.starting = (async () => {
      if (prev) {
        await prev.starting.catch(() => {});
        await prev.stopping;
      }
      const unclean = await this.#adopt(feed, how, run);
      how.adopted();
      const source = await feed.create();
      const handle = await this.#pipeline.attach(source, {
        uncleanShutdown: unclean,
        inheritedKeys: run.inherited,
        ...(feed.requestPools.length > 0 ? { requestLog: this.#writeAhead(feed, how) } : {}),
      });
      run.handle = handle;
      if (run.lost !== undefined) run.stopping = handle.stop(`feed lost: ${run.lost}`);
    })();
    return run.starting;
  }

  lost(feed: Feed, reason: string): void {
    const run = this.#runs.get(feed.id);
    if (!run || run.lost !== undefined) return;
    run.lost = reason;
    if (run.handle) run.stopping = run.handle.stop(`feed lost: ${reason}`);
  }

  async release(feed: Feed, reason: string): Promise<void> {
    const run = this.#runs.get(feed.id);
    if (!run) return;
    this.lost(feed, reason);
    await run.starting.catch(() => {});
    if (run.lost !== undefined && run.handle && !run.stopping) run.stopping = run.handle.stop(`feed lost: ${run.lost}`);
    await run.stopping;
  }

  async snapshot(feed: Feed): Promise<CarriedState> {
    const cursors: Record<string, unknown> = {};
    for (const svc of feed.services) {
      const c = await this.#store.getCursor(feed.input, svc);
      if (c !== undefined) cursors[svc] = c.cursor;
    }
    const state: CarriedState = { v: 1, at: this.#clock.now(), cursors, start_times: feed.startTimes };
    if (feed.requestPools.length > 0) {
      const log = this.#store.requests.forInput(feed.input);
      const since = this.#clock.now() - feed.requestWindowMs;
      state.requests = {};
      for (const pool of feed.requestPools) state.requests[pool] = await log.list(pool, since);
    }
    if (this.#carryKeys > 0) {
      const perService = Math.floor(this.#carryKeys / feed.services.length);
      const inherited = this.#runs.get(feed.id)?.inherited;
      state.keys = {};
      for (const svc of feed.services) {
        const recent = await this.#store.seen.recent(scopeOf(feed.input, svc), CARRY_SPAN_MS, feed.dedupTtlMs[svc] ?? 0, perService);
        const fps = new Set(recent.map(fingerprint));
        // Keys this replica inherited are still in the span a takeover would re-read.
        for (const fp of inherited?.get(svc) ?? []) {
          if (fps.size >= perService) break;
          fps.add(fp);
        }
        if (fps.size > 0) state.keys[svc] = [...fps];
      }
    }
    return state;
  }

  /**
   * The feed's request log, written ahead into the Lease: a request is recorded locally, then the
   * Lease is renewed with it, and only then may the request be sent. A replica that takes the
   * feed over therefore counts every request the previous holder sent, whenever it died.
   */
  #writeAhead(feed: Feed, how: Acquisition): RequestLog {
    const local = this.#store.requests.forInput(feed.input);
    return {
      list: (pool, since) => local.list(pool, since),
      prune: (pool, before) => local.prune(pool, before),
      record: async (pool, at) => {
        await local.record(pool, at);
        if (!(await how.persist())) throw new Error(`feed ${feed.id} is no longer held: request not sent`);
      },
    };
  }

  /** Adopts the carried state; returns whether the feed must recover as after a crash. */
  async #adopt(feed: Feed, how: Acquisition, run: FeedRun): Promise<boolean> {
    const carried = how.carried;
    const adopted: string[] = [];
    for (const svc of feed.services) {
      const theirs = carried?.cursors[svc];
      if (theirs === undefined) continue;
      const theirStart = carried!.start_times[svc] ?? null;
      if (theirStart !== feed.startTimes[svc]) {
        this.#log.warn(
          { feed: feed.id, service: svc, carried_start_time: theirStart, start_time: feed.startTimes[svc] },
          'The cursor in the Lease was collected under another start time; not adopted (the configured start time wins).',
        );
        continue;
      }
      // A local cursor collected under another start time is reset at attach: it does not count.
      const mine = (await this.#store.getStartTime(feed.input, svc)) === theirStart ? await this.#store.getCursor(feed.input, svc) : undefined;
      if (mine === undefined || (await feed.compareCursors(theirs, mine.cursor)) > 0) {
        await this.#store.adoptCursor(feed.input, svc, theirs, theirStart);
        adopted.push(svc);
      }
    }
    let inherited = 0;
    if (carried?.requests && feed.requestPools.length > 0) {
      const log = this.#store.requests.forInput(feed.input);
      const since = this.#clock.now() - feed.requestWindowMs;
      for (const pool of feed.requestPools) {
        // Multiset difference: a request this replica already has (it held the feed before) counts once.
        const have = new Map<number, number>();
        for (const t of await log.list(pool, since)) have.set(t, (have.get(t) ?? 0) + 1);
        for (const t of carried.requests[pool] ?? []) {
          if (t < since) continue;
          const n = have.get(t) ?? 0;
          if (n > 0) have.set(t, n - 1);
          else {
            await log.record(pool, t);
            inherited++;
          }
        }
      }
    }
    let keys = 0;
    for (const svc of feed.services) {
      const fps = carried?.keys?.[svc];
      if (!fps || fps.length === 0) continue;
      run.inherited.set(svc, new Set(fps));
      keys += fps.length;
    }
    const unclean = this.#store.uncleanShutdown || how.from === 'expired' || (how.from === 'released' && carried?.released !== true);
    this.#log.info(
      { feed: feed.id, from: how.from, adopted_cursors: adopted, inherited_requests: inherited, inherited_keys: keys, recover_as_after_crash: unclean },
      adopted.length > 0 ? `Feed ${feed.id} continues from the cursor carried by its Lease.` : `Feed ${feed.id} continues from the local cursor.`,
    );
    return unclean;
  }
}
