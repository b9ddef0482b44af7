/**
 * The known-key decision: whether an event's de-dup key was delivered already. This is its one
 * home; the parts it consults live elsewhere:
 *
 * - IN FLIGHT (here, in memory): keys of records sent and not yet committed, per service of one
 *   source. They become committed in the same LevelDB batch as their batch's cursor
 *   (pipeline/acker.ts orders those commits) and are released from here after it.
 * - COMMITTED (state/seen.ts, LevelDB): the de-dup window, keys with an expiry in each scope's
 *   progress time, written only by StateStore.commit and swept by the pipeline's timer.
 * - INHERITED (coordination/feed-runner.ts): fingerprints of keys another replica committed
 *   recently, carried in the feed's Lease (coordination/carried-state.ts encodes them) and handed
 *   to the pipeline at attach; they hold for the life of that attachment.
 *
 * A key repeated inside one batch is a duplicate too. An event without a key is never one.
 */
import { createHash } from 'node:crypto';
import type { Logger } from 'pino';
import type { Clock } from '../util/clock.ts';

/** Length of a carried fingerprint: 66 bits of sha256, base64url. */
export const FINGERPRINT_CHARS = 11;

/** The fingerprint of a de-dup key, as carried between replicas. */
export function fingerprint(key: string): string {
  return createHash('sha256').update(key).digest('base64url').slice(0, FINGERPRINT_CHARS);
}

/** The committed window, as the decision reads it (state/seen.ts SeenWindow). */
export interface CommittedKeys {
  /** For each key, whether it is committed and not expired in `scope`. */
  has(scope: string, keys: readonly string[]): Promise<boolean[]>;
}

/**
 * The decision for one batch. `admit` says whether an event goes on (true) or is a duplicate
 * (false); every admitted key is remembered, whatever then becomes of its event (sent or
 * dead-lettered), so that a re-read of the same event is neither sent nor dead-lettered twice.
 */
export class BatchKeys {
  readonly #known: ReadonlySet<string>;
  readonly #admitted = new Set<string>();

  constructor(known: ReadonlySet<string>) {
    this.#known = known;
  }

  admit(key: string | undefined): boolean {
    if (key === undefined) return true;
    if (this.#known.has(key) || this.#admitted.has(key)) return false;
    this.#admitted.add(key);
    return true;
  }

  /** The admitted keys, in the order admitted. */
  get keys(): string[] {
    return [...this.#admitted];
  }
}

/** De-dup state of one source: its in-flight keys and what it inherited, per service. */
export class SourceDedupe {
  readonly #committed: CommittedKeys;
  readonly #inherited?: ReadonlyMap<string, ReadonlySet<string>>;
  readonly #inFlight = new Map<string, Set<string>>();

  /** `inherited`: fingerprints per service (see the module comment). */
  constructor(committed: CommittedKeys, inherited?: ReadonlyMap<string, ReadonlySet<string>>) {
    this.#committed = committed;
    if (inherited && inherited.size > 0) this.#inherited = inherited;
  }

  /**
   * Decides which of `keys` (a batch's, of `service` in `scope`) were delivered already. In-flight
   * keys are decided before the store look-up: a batch that commits during the look-up moves its
   * keys from in flight to the store after the look-up was made, and would be missed by both.
   */
  async decide(scope: string, service: string, keys: ReadonlyArray<string | undefined>): Promise<BatchKeys> {
    const inFlight = this.#inFlight.get(service);
    const known = new Set<string>();
    const candidates: string[] = [];
    for (const k of keys) {
      if (k === undefined) continue;
      if (inFlight?.has(k)) known.add(k);
      else candidates.push(k);
    }
    const committed = await this.#committed.has(scope, candidates);
    const inherited = this.#inherited?.get(service);
    candidates.forEach((k, i) => {
      if (committed[i] || (inherited !== undefined && inherited.size > 0 && inherited.has(fingerprint(k)))) known.add(k);
    });
    return new BatchKeys(known);
  }

  /** Marks keys as sent and not yet committed. */
  hold(service: string, keys: readonly string[]): void {
    let inFlight = this.#inFlight.get(service);
    if (!inFlight) this.#inFlight.set(service, (inFlight = new Set()));
    for (const k of keys) inFlight.add(k);
  }

  /** Forgets in-flight keys once their batch is committed (the store has them from then on). */
  release(service: string, keys: readonly string[]): void {
    const inFlight = this.#inFlight.get(service);
    for (const k of keys) inFlight?.delete(k);
  }
}

/** The committed window, as the sweep maintains it (state/seen.ts SeenWindow). */
export interface SweptWindow {
  sweep(scope: string, maxKeys: number): Promise<{ expired: number; evicted: number }>;
}

export interface SweeperOptions {
  window: SweptWindow;
  clock: Clock;
  logger: Logger;
  /** globals.dedup_sweep_interval_secs, in ms. */
  intervalMs: number;
  /** globals.dedup_max_keys: most keys kept per scope. */
  maxKeys: number;
  /** True once the state is closed: a sweep then stops. */
  closed(): boolean;
}

/**
 * Bounds the committed window on a timer of the injected clock: expired keys go, then the keys
 * closest to expiry beyond `maxKeys` per scope (with a warning: they go before their age limit).
 * Every scope ever registered is swept, whether its source is still attached or not.
 */
export class WindowSweeper {
  readonly #o: SweeperOptions;
  /** Scope -> the input and service it belongs to (for logs). */
  readonly #scopes = new Map<string, { input: string; service: string }>();
  #cancel?: () => void;
  #stopped = false;
  /** The sweep running now, if any (never rejects). */
  running?: Promise<void>;

  constructor(opts: SweeperOptions) {
    this.#o = opts;
  }

  add(scope: string, input: string, service: string): void {
    this.#scopes.set(scope, { input, service });
  }

  /** Schedules the sweeps, one interval apart (each after the previous one ended). */
  start(): void {
    this.#cancel = this.#o.clock.setTimer(this.#o.intervalMs, () => {
      this.running = this.sweep()
        .catch((err) => this.#o.logger.warn({ err: (err as Error).message }, 'De-dup sweep failed; retried next interval.'))
        .finally(() => {
          this.running = undefined;
          if (!this.#stopped) this.start();
        });
    });
  }

  /** Cancels the next sweep; one running now ends on its own (await `running`). */
  stop(): void {
    this.#stopped = true;
    this.#cancel?.();
  }

  /** Deletes expired de-dup keys and keys beyond the per-scope maximum. */
  async sweep(): Promise<void> {
    const { window, logger, maxKeys } = this.#o;
    for (const [scope, { input, service }] of this.#scopes) {
      if (this.#o.closed()) return;
      const r = await window.sweep(scope, maxKeys);
      if (r.expired + r.evicted > 0) logger.debug({ input_id: input, service, ...r }, 'De-dup window swept.');
      if (r.evicted > 0) {
        logger.warn(
          { input_id: input, service, evicted: r.evicted, max_keys: maxKeys },
          'De-dup window is full: the oldest keys were forgotten before their age limit (globals.dedup_max_keys).',
        );
      }
    }
  }
}
