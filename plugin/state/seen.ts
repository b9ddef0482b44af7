/**
 * The de-dup window: which event keys were already delivered, per scope (`<input>::<service>`).
 *
 * LevelDB has no TTL, so each key is written twice in the same batch: `seen` (key -> expiry) for
 * look-ups and `seen_exp` (scope, zero-padded expiry, key) as an index that a periodic sweep walks
 * in expiry order. The window is bounded by age (each key's expiry) and by count (`maxKeys` per
 * scope: beyond it the keys closest to expiry go first), as Vector's dedupe transform bounds by
 * `max_age_ms` and `num_events`. The count per scope lives in `meta` and is updated with the keys.
 */
import type { Clock } from '../util/clock.ts';
import { jsonSublevel, writeBatch, type BatchOp, type Db, type Sublevel } from './level.ts';

type BatchOps = BatchOp[];

const EXP_DIGITS = 15;

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
  /** Key counts per scope, loaded lazily from meta and kept in step with commits. */
  readonly #counts = new Map<string, number>();

  constructor(db: Db, meta: Sublevel, clock: Clock) {
    this.#db = db;
    this.#meta = meta;
    this.#seen = jsonSublevel(db, 'seen');
    this.#exp = db.sublevel<string, string>('seen_exp', { valueEncoding: 'utf8' }) as Sublevel;
    this.#clock = clock;
  }

  /** For each key, whether it is in the window (committed and not expired). */
  async has(scope: string, keys: readonly string[]): Promise<boolean[]> {
    if (keys.length === 0) return [];
    const now = this.#clock.now();
    const values = await this.#seen.getMany(keys.map((k) => `${scope}::${k}`));
    return values.map((v) => typeof v === 'number' && v > now);
  }

  /** Adds the puts for `keys` to a batch (the commit of a delivered batch). */
  addToBatch(ops: BatchOps, scope: string, keys: readonly string[], expiresAt: number): void {
    if (keys.length === 0) return;
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
  }

  /** Loads the stored count of a scope (call once per scope before committing to it). */
  async load(scope: string): Promise<number> {
    const stored = (await this.#meta.get(`seen_count::${scope}`)) as number | undefined;
    this.#counts.set(scope, stored ?? 0);
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
    const now = this.#clock.now();
    const expired = await this.#deleteFromIndex(scope, { lt: `${scope}::${pad(now)}` }, Infinity);
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
      await writeBatch(this.#db, ops);
      this.#counts.set(scope, count);
      deleted += removed;
      if (n < take) break;
    }
    return deleted;
  }

  /** Forgets every key of a scope (state reset). */
  async clearScope(scope: string): Promise<void> {
    await this.#seen.clear({ gte: `${scope}::`, lt: `${scope}::\xff` });
    await this.#exp.clear({ gte: `${scope}::`, lt: `${scope}::\xff` });
    await this.#meta.del(`seen_count::${scope}`);
    this.#counts.set(scope, 0);
  }
}
