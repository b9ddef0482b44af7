/**
 * A persisted sliding log of request times per (input, pool), for vendor rate budgets that a
 * restart must not forget (TAP: 1800 requests per rolling 24 h per pool). Keys sort by time:
 * `<input>::<pool>::<time, 15 digits>::<seq>`.
 */
import type { RequestLog } from '../sources/source.ts';
import type { StateGuard, Sublevel } from './level.ts';

function pad(ms: number): string {
  return String(Math.max(0, Math.floor(ms))).padStart(15, '0');
}

export class PersistedRequestLog {
  readonly #db: Sublevel;
  readonly #guard?: StateGuard;
  #seq = 0;

  constructor(db: Sublevel, guard?: StateGuard) {
    this.#db = db;
    this.#guard = guard;
  }

  /** The request log of one input, as sources see it. */
  forInput(input: string): RequestLog {
    return {
      record: (pool, at) => this.record(input, pool, at),
      list: (pool, since) => this.list(input, pool, since),
      prune: (pool, before) => this.prune(input, pool, before),
    };
  }

  async record(input: string, pool: string, at: number): Promise<void> {
    this.#seq = (this.#seq + 1) % 1_000_000;
    const key = `${input}::${pool}::${pad(at)}::${String(this.#seq).padStart(6, '0')}`;
    await (this.#guard ? this.#guard.write(() => this.#db.put(key, '')) : this.#db.put(key, ''));
  }

  async list(input: string, pool: string, since: number): Promise<number[]> {
    const prefix = `${input}::${pool}::`;
    const read = async () => {
      const out: number[] = [];
      for await (const key of this.#db.keys({ gte: prefix + pad(since), lt: prefix + '\xff' })) {
        out.push(Number(key.slice(prefix.length, prefix.length + 15)));
      }
      return out;
    };
    return this.#guard ? this.#guard.read(read) : read();
  }

  async prune(input: string, pool: string, before: number): Promise<void> {
    const prefix = `${input}::${pool}::`;
    const clear = () => this.#db.clear({ gte: prefix, lt: prefix + pad(before) });
    await (this.#guard ? this.#guard.write(clear) : clear());
  }

  /** Pools with entries, per input, with their counts since `since` (for `state show`). */
  async summary(since: number): Promise<Array<{ input: string; pool: string; requests: number }>> {
    const counts = new Map<string, number>();
    for await (const key of this.#db.keys()) {
      const parts = key.split('::');
      if (parts.length < 4) continue;
      if (Number(parts[2]) < since) continue;
      const k = `${parts[0]}::${parts[1]}`;
      counts.set(k, (counts.get(k) ?? 0) + 1);
    }
    return [...counts].map(([k, requests]) => {
      const [input, pool] = k.split('::');
      return { input: input!, pool: pool!, requests };
    });
  }

  async clearInput(input: string): Promise<void> {
    await this.#db.clear({ gte: `${input}::`, lt: `${input}::\xff` });
  }
}
