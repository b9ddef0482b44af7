/**
 * The de-dup window: which event keys were already delivered, per scope (`<input>::<service>`).
 * This is the committed part of the de-dup decision, which lives in pipeline/dedupe.ts (with the
 * in-flight and inherited parts).
 *
 * LevelDB has no TTL, so each key is written twice in the same batch: `seen` (key -> expiry) for
 * look-ups and `seen_exp` (scope, zero-padded expiry, key) as an index that a periodic sweep walks
 * in expiry order. The window is bounded by age (each key's expiry) and by count (`maxKeys` per
 * scope: beyond it the keys closest to expiry go first), as Vector's dedupe transform bounds by
 * `max_age_ms` and `num_events`. The count per scope lives in `meta` and is updated with the keys.
 *
 * Age is counted on each scope's own PROGRESS CLOCK, not the wall clock: it runs while the scope
 * commits, and a gap between two commits (the sidecar stopped, the vendor unreachable) counts as
 * at most MAX_GAP_MS. Recovery after an outage replays time before the cursor (POD: the cursor's
 * hour, in archive mode); with wall-clock ages the keys of that time would have expired during a
 * long outage and the replay would deliver it twice. The clock is kept in `meta` with the keys.
 */
import type { Clock } from '../util/clock.ts';
import { stateError } from './faults.ts';
import { jsonSublevel, writeBatch, type BatchOp, type ChainedBatch, type Db, type StateGuard, type Sublevel } from './level.ts';

type BatchOps = BatchOp[];

const EXP_DIGITS = 15;

/**
 * The most a gap between two commits of a scope adds to its progress clock. Longer than any
 * source's quiet commit cadence (TAP polls every minute by default, a quiet POD stream records
 * contact every 5 minutes), far shorter than the shortest de-dup window (2 hours).
 */
export const MAX_GAP_MS = 15 * 60_000;

/** A scope's progress clock: `time` was its value at wall time `wall`. */
interface ProgressClock {
  time: number;
  wall: number;
}

function pad(ms: number): string {
  return String(Math.max(0, Math.floor(ms))).padStart(EXP_DIGITS, '0');
}

export interface SweepResult {
  expired: number;
  evicted: number;
}

export class SeenWindow {
  readonly #db: Db;
  readonly #meta: Sublevel;
  readonly #seen: Sublevel;
  readonly #exp: Sublevel;
  readonly #clock: Clock;
  readonly #guard?: StateGuard;
  /** Key counts per scope, loaded lazily from meta and kept in step with commits. */
  readonly #counts = new Map<string, number>();
  /** Progress clocks per scope, loaded with the counts. */
  readonly #clocks = new Map<string, ProgressClock>();
  /** Clocks written by a batch not yet known to be committed. */
  readonly #pendingClocks = new Map<string, ProgressClock>();

  constructor(db: Db, meta: Sublevel, clock: Clock, guard?: StateGuard) {
    this.#db = db;
    this.#meta = meta;
    this.#seen = jsonSublevel(db, 'seen');
    this.#exp = db.sublevel<string, string>('seen_exp', { valueEncoding: 'utf8' }) as Sublevel;
    guard?.track(this.#seen);
    guard?.track(this.#exp);
    this.#clock = clock;
    this.#guard = guard;
  }

  #read<T>(fn: () => Promise<T>): Promise<T> {
    return this.#guard ? this.#guard.read(fn) : fn();
  }

  #write<T>(fn: () => Promise<T>): Promise<T> {
    return this.#guard ? this.#guard.write(fn) : fn();
  }

  /** The scope's progress time now (see the module comment). */
  progressNow(scope: string): number {
    const wall = this.#clock.now();
    const c = this.#clocks.get(scope) ?? { time: wall, wall };
    return c.time + Math.min(Math.max(0, wall - c.wall), MAX_GAP_MS);
  }

  /** For each key, whether it is in the window (committed and not expired). */
  async has(scope: string, keys: readonly string[]): Promise<boolean[]> {
    if (keys.length === 0) return [];
    const now = this.progressNow(scope);
    let values: unknown[];
    try {
      values = await this.#read(() => this.#seen.getMany(keys.map((k) => `${scope}::${k}`)));
    } catch (err) {
      // A damaged table holding de-dup keys is found here (the open reads only meta and cursors).
      throw this.#guard ? stateError(err, this.#guard.dir, 'read') : err;
    }
    return values.map((v) => typeof v === 'number' && v > now);
  }

  /**
   * Adds to a commit's batch the puts for `keys`, remembered for `ttlMs` of progress time, and the
   * scope's progress clock (every commit is progress, with keys or without).
   */
  addToBatch(ops: BatchOps, scope: string, keys: readonly string[], ttlMs: number): void {
    const now = this.progressNow(scope);
    const clock: ProgressClock = { time: now, wall: this.#clock.now() };
    ops.push({ type: 'put', sublevel: this.#meta, key: `seen_clock::${scope}`, value: clock });
    this.#pendingClocks.set(scope, clock);
    if (keys.length === 0) return;
    const expiresAt = now + ttlMs;
    const exp = pad(expiresAt);
    for (const k of keys) {
      ops.push({ type: 'put', sublevel: this.#seen, key: `${scope}::${k}`, value: expiresAt });
      ops.push({ type: 'put', sublevel: this.#exp, key: `${scope}::${exp}::${k}`, value: '' });
    }
    const count = (this.#counts.get(scope) ?? 0) + keys.length;
    ops.push({ type: 'put', sublevel: this.#meta, key: `seen_count::${scope}`, value: count });
  }

  /** Must follow every batch built with addToBatch, once it is written. */
  afterCommit(scope: string, added: number): void {
    if (added > 0) this.#counts.set(scope, (this.#counts.get(scope) ?? 0) + added);
    const clock = this.#pendingClocks.get(scope);
    if (clock) {
      this.#clocks.set(scope, clock);
      this.#pendingClocks.delete(scope);
    }
  }

  /**
   * Loads the stored count and progress clock of a scope (once per scope before committing to
   * it). A scope without a clock (new, or state from before clocks) starts at wall time.
   */
  async load(scope: string): Promise<number> {
    const [stored, clock] = (await this.#read(() => this.#meta.getMany([`seen_count::${scope}`, `seen_clock::${scope}`]))) as [
      number | undefined,
      ProgressClock | undefined,
    ];
    this.#counts.set(scope, stored ?? 0);
    if (clock) this.#clocks.set(scope, clock);
    else this.#clocks.delete(scope);
    return stored ?? 0;
  }

  count(scope: string): number {
    return this.#counts.get(scope) ?? 0;
  }

  /**
   * Deletes expired keys of `scope`, then the oldest ones beyond `maxKeys`. Runs in bounded
   * batches so a large sweep never holds the whole range in memory.
   */
  async sweep(scope: string, maxKeys: number): Promise<SweepResult> {
    const now = this.progressNow(scope);
    // A key whose expiry is now is expired, as has() says.
    const expired = await this.#deleteFromIndex(scope, { lt: `${scope}::${pad(now + 1)}` }, Infinity);
    const over = this.count(scope) - maxKeys;
    const evicted = over > 0 ? await this.#deleteFromIndex(scope, { lt: `${scope}::\xff` }, over) : 0;
    return { expired, evicted };
  }

  async #deleteFromIndex(scope: string, range: { lt: string }, limit: number): Promise<number> {
    let deleted = 0;
    const CHUNK = 5_000;
    while (deleted < limit) {
      const take = Math.min(CHUNK, limit - deleted);
      const entries: Array<{ indexKey: string; seenKey: string; exp: number }> = [];
      for await (const key of this.#exp.keys({ gte: `${scope}::`, lt: range.lt, limit: take })) {
        const rest = key.slice(scope.length + 2);
        entries.push({ indexKey: key, seenKey: `${scope}::${rest.slice(EXP_DIGITS + 2)}`, exp: Number(rest.slice(0, EXP_DIGITS)) });
      }
      const n = entries.length;
      if (n === 0) break;
      // A key committed again later (after it expired) has a newer expiry: its older index entry
      // goes, the key stays.
      const current = await this.#seen.getMany(entries.map((e) => e.seenKey));
      const ops: BatchOps = [];
      let removed = 0;
      entries.forEach((e, i) => {
        ops.push({ type: 'del', sublevel: this.#exp, key: e.indexKey });
        const v = current[i];
        if (typeof v !== 'number' || v <= e.exp) ops.push({ type: 'del', sublevel: this.#seen, key: e.seenKey });
        // Each index entry was counted once when written, stale or not.
        if (typeof v === 'number') removed++;
      });
      const count = Math.max(0, this.count(scope) - removed);
      ops.push({ type: 'put', sublevel: this.#meta, key: `seen_count::${scope}`, value: count });
      await this.#write(() => writeBatch(this.#db, ops));
      this.#counts.set(scope, count);
      deleted += removed;
      if (n < take) break;
    }
    return deleted;
  }

  /**
   * The keys committed within the last `spanMs` of the scope's progress time, newest first, at most
   * `limit` (coordination carries them to the next holder of a feed). `ttlMs` is the one the keys
   * were committed with: their commit time is their expiry minus it.
   */
  async recent(scope: string, spanMs: number, ttlMs: number, limit: number): Promise<string[]> {
    if (limit <= 0) return [];
    const since = this.progressNow(scope) - spanMs + ttlMs;
    const out: string[] = [];
    for await (const key of this.#exp.keys({ gte: `${scope}::${pad(since)}`, lt: `${scope}::\xff`, reverse: true, limit })) {
      out.push(key.slice(scope.length + 2 + EXP_DIGITS + 2));
    }
    return out;
  }

  /**
   * Adds to `batch` the deletion of every key of a scope, its index entries, count and progress
   * clock (state reset). The keys are read from the window: the batch holds one deletion per
   * stored entry. `afterClear` must follow once the batch is written.
   */
  async addClearToBatch(batch: ChainedBatch, scope: string): Promise<void> {
    const range = { gte: `${scope}::`, lt: `${scope}::\xff` };
    for await (const key of this.#seen.keys(range)) batch.del(key, { sublevel: this.#seen });
    for await (const key of this.#exp.keys(range)) batch.del(key, { sublevel: this.#exp });
    batch.del(`seen_count::${scope}`, { sublevel: this.#meta });
    batch.del(`seen_clock::${scope}`, { sublevel: this.#meta });
  }

  /**
   * Deletes the scope's keys and index entries in LevelDB's own bounded steps, NOT atomically: for
   * a reset too large for one batch (state/store.ts #reset), run before the batch that removes the
   * cursor. A crash in between leaves a cursor with fewer keys (duplicates at worst), never keys of
   * the old start under a new one.
   */
  async clearKeys(scope: string): Promise<void> {
    const range = { gte: `${scope}::`, lt: `${scope}::\xff` };
    await this.#write(() => this.#seen.clear(range));
    await this.#write(() => this.#exp.clear(range));
  }

  /** Must follow a written batch built with addClearToBatch. */
  afterClear(scope: string): void {
    this.#counts.set(scope, 0);
    this.#clocks.delete(scope);
  }
}
