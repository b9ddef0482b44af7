/**
 * The sidecar's persistent state: LevelDB in `<state_dir>/db`.
 *
 * Contract: a cursor or de-dup key is written only once the output acknowledged its events. The
 * pipeline writes a batch's cursor and the de-dup keys of its records in ONE atomic LevelDB batch
 * (`commit`), and only after the output acknowledged that batch and every batch of the same
 * source before it (pipeline/acker.ts). A crash therefore leaves either the state before the
 * batch or the state after it, never a cursor ahead of delivery.
 *
 * The writers, and why each may write (every multi-key change is one LevelDB batch):
 * - The pipeline (pipeline/pipeline.ts): `commit` after the ack; `applyStartTime` when a source
 *   is attached (a changed start time resets the service); the de-dup sweep (state/seen.ts).
 * - The TAP request log (`requests`, written through SourceContext.requestLog by
 *   sources/tap/budget.ts): a request is recorded BEFORE it is sent, so the vendor's rate budget
 *   survives a restart; a request spends budget whether or not its events arrive, so this write
 *   does not wait for any ack. It is the one exception to "a source never writes state", and it
 *   holds no cursor and no de-dup key.
 * - Coordination (coordination/feed-runner.ts): `adoptCursor` takes a cursor another replica
 *   committed after its own output acknowledged those events (it travels in the feed's Lease),
 *   and the request times the previous holder recorded are added to `requests`, for the same
 *   reason as the request log itself.
 * - The state commands (cli/state.ts `state reset`: `resetService`; cli/pod-probe.ts records an
 *   owed archive replay with `adoptCursor`; state/repair.ts rebuilds the database) run against a
 *   stopped sidecar, in maintenance mode.
 * - `open` itself: the layout migration and the unclean-shutdown marker.
 *
 * Layout (schema version 2), one sublevel per concern, keys scoped `<input>::<service>` as Beats
 * scopes its registry (`type::id::source`):
 *   meta      schema_version, running (the unclean-shutdown marker), start_time::<scope>,
 *             seen_count::<scope>
 *   cursor    <scope>                          -> { v: 1, cursor, committed_at }
 *   seen      <scope>::<key>                   -> expiry (ms)
 *   seen_exp  <scope>::<expiry, 15 digits>::<key> -> ''      (expiry index, swept periodically)
 *   reqlog    <input>::<pool>::<time, 15 digits>::<seq> -> ''  (rate-limit request log)
 *
 * Version 1, the layout of the first prototype, kept cursors as flat `cursor!<input>!<service>`
 * keys with bare JSON values and nothing else; it is migrated on open. A layout newer than this
 * code is refused, never discarded.
 */
import { mkdirSync } from 'node:fs';
import path from 'node:path';
import { Level } from 'level';
import { jsonSublevel, StateGuard, writeBatch, writeChained, type BatchOp, type Db, type Sublevel } from './level.ts';
import { stateError } from './faults.ts';
import type { Logger } from 'pino';
import { ErrorCode, SidecarError } from '../errors.ts';
import { systemClock, type Clock } from '../util/clock.ts';
import { silentLogger } from '../telemetry/logger.ts';
import { SeenWindow } from './seen.ts';
import { PersistedRequestLog } from './request-log.ts';

export const SCHEMA_VERSION = 2;

/**
 * LevelDB's own memory, set explicitly rather than left to classic-level's defaults: the write
 * buffer (the memtable; two exist while one is flushed), the block cache, and the table cache
 * (an open table keeps its index and file handle: classic-level allows 1000 open files, so with
 * the default that memory grows with the number of tables, that is with the de-dup keys kept).
 * The state is written in small batches and read by key, so a small cache costs little.
 */
export const LEVEL_MEMORY = { writeBufferSize: 4 * 1_048_576, cacheSize: 8 * 1_048_576, maxOpenFiles: 64, blockSize: 4096 } as const;

export interface StoreOptions {
  clock?: Clock;
  logger?: Logger;
  /**
   * For `state show|reset`: the unclean-shutdown marker is read but neither set nor cleared, so
   * inspecting the state of a crashed run does not hide the crash from the next run.
   */
  maintenance?: boolean;
  /** Most de-dup keys a reset deletes in its one batch (RESET_BATCH_MAX_KEYS; tests lower it). */
  resetBatchMaxKeys?: number;
}

/**
 * A reset's one LevelDB batch holds a deletion per de-dup key of the service, outside V8's heap
 * (about 100 bytes each, key and index entry). Up to this many keys (about 20 MB) the reset is that
 * one batch; beyond it the keys are first deleted in bounded steps, then the cursor and start time
 * change in one small batch (see #reset), so a reset of a service at globals.dedup_max_keys never
 * needs hundreds of MB at once.
 */
export const RESET_BATCH_MAX_KEYS = 100_000;

export interface CommitOp {
  input: string;
  service: string;
  /** Undefined: the cursor stays as it is (keys are still recorded). */
  cursor?: unknown;
  keys: readonly string[];
  /** How long these keys are remembered, in the scope's progress time (state/seen.ts). */
  keysTtlMs: number;
}

export interface StoredCursor<C = unknown> {
  v: 1;
  cursor: C;
  committed_at: number;
}

export function scopeOf(input: string, service: string): string {
  return `${input}::${service}`;
}

export class StateStore {
  readonly dir: string;
  readonly db: Db;
  readonly meta: Sublevel;
  readonly cursors: Sublevel;
  readonly seen: SeenWindow;
  readonly requests: PersistedRequestLog;
  /** Orders reads and writes with the recovery from a failed write (state/level.ts). */
  readonly guard: StateGuard;
  /** True when the previous process using this directory did not shut down cleanly. */
  readonly uncleanShutdown: boolean;
  readonly #clock: Clock;
  readonly #logger: Logger;
  readonly #maintenance: boolean;
  #resetBatchMaxKeys = RESET_BATCH_MAX_KEYS;
  #closed = false;

  private constructor(dir: string, db: Db, unclean: boolean, clock: Clock, logger: Logger, maintenance: boolean) {
    this.dir = dir;
    this.db = db;
    this.guard = new StateGuard(db, dir);
    this.meta = this.guard.track(jsonSublevel(db, 'meta'));
    this.cursors = this.guard.track(jsonSublevel(db, 'cursor'));
    this.seen = new SeenWindow(db, this.meta, clock, this.guard);
    this.requests = new PersistedRequestLog(this.guard.track(db.sublevel<string, any>('reqlog', { valueEncoding: 'utf8' }) as Sublevel), this.guard);
    this.uncleanShutdown = unclean;
    this.#clock = clock;
    this.#logger = logger;
    this.#maintenance = maintenance;
  }

  /**
   * Opens (creating) the state in `dir`. Fails with a message naming the directory when another
   * process holds it: two sidecars on one state would each deliver every event.
   */
  static async open(dir: string, opts: StoreOptions = {}): Promise<StateStore> {
    const clock = opts.clock ?? systemClock;
    const logger = opts.logger ?? silentLogger();
    const abs = path.resolve(dir);
    try {
      mkdirSync(abs, { recursive: true });
    } catch (err) {
      throw new SidecarError(ErrorCode.CONFIG, `Cannot create state directory ${abs} (globals.state_dir): ${(err as Error).message}`, {
        exitCode: 2,
        fatal: true,
      });
    }
    const db: Db = new Level<string, any>(path.join(abs, 'db'), { valueEncoding: 'json', ...LEVEL_MEMORY });
    try {
      await db.open();
    } catch (err) {
      const e = err as { code?: string; cause?: { code?: string } };
      if (e.code === 'LEVEL_LOCKED' || e.cause?.code === 'LEVEL_LOCKED') {
        throw new SidecarError(
          ErrorCode.STATE_LOCKED,
          `State directory ${abs} is in use by another proofpoint-sidecar process; run one process per state directory (globals.state_dir)`,
          { fatal: true, cause: err },
        );
      }
      throw stateError(err, abs, 'open');
    }
    try {
      await verifyReadable(db, abs);
      await migrate(db, abs, logger);
      const meta = jsonSublevel(db, 'meta');
      const running = (await meta.get('running')) as { pid: number; started_at: number } | undefined;
      if (!opts.maintenance) await meta.put('running', { pid: process.pid, started_at: clock.now() });
      if (running && !opts.maintenance) {
        logger.warn(
          { state_dir: abs, previous_pid: running.pid, previous_start: new Date(running.started_at).toISOString() },
          'The previous run did not shut down cleanly; sources recover what may have been in flight.',
        );
      }
      const store = new StateStore(abs, db, running !== undefined, clock, logger, opts.maintenance ?? false);
      if (opts.resetBatchMaxKeys !== undefined) store.#resetBatchMaxKeys = opts.resetBatchMaxKeys;
      return store;
    } catch (err) {
      await db.close().catch(() => {});
      throw err instanceof SidecarError ? err : stateError(err, abs, 'read');
    }
  }

  async getCursor<C = unknown>(input: string, service: string): Promise<StoredCursor<C> | undefined> {
    return (await this.guard.read(() => this.cursors.get(scopeOf(input, service)))) as StoredCursor<C> | undefined;
  }

  /** Writes a batch's cursor and de-dup keys atomically. */
  async commit(op: CommitOp): Promise<void> {
    const scope = scopeOf(op.input, op.service);
    const ops: BatchOp[] = [];
    if (op.cursor !== undefined) {
      const value: StoredCursor = { v: 1, cursor: op.cursor, committed_at: this.#clock.now() };
      ops.push({ type: 'put', sublevel: this.cursors, key: scope, value });
    }
    this.seen.addToBatch(ops, scope, op.keys, op.keysTtlMs);
    await this.guard.write(() => writeBatch(this.db, ops));
    this.seen.afterCommit(scope, op.keys.length);
  }

  /** The start time a service's state was collected under: undefined when never recorded, null for none. */
  async getStartTime(input: string, service: string): Promise<string | null | undefined> {
    const stored = (await this.meta.get(`start_time::${scopeOf(input, service)}`)) as { value: string | null } | undefined;
    return stored?.value;
  }

  /**
   * Adopts a cursor another replica committed (coordination: it travels in the feed's Lease), with
   * the start time it was collected under, in one atomic write. Those events were acknowledged by
   * that replica's output; this replica goes on from there.
   */
  async adoptCursor(input: string, service: string, cursor: unknown, startTime: string | null): Promise<void> {
    const scope = scopeOf(input, service);
    const value: StoredCursor = { v: 1, cursor, committed_at: this.#clock.now() };
    await this.guard.write(() =>
      writeBatch(this.db, [
        { type: 'put', sublevel: this.cursors, key: scope, value },
        { type: 'put', sublevel: this.meta, key: `start_time::${scope}`, value: { value: startTime } },
      ]),
    );
  }

  /**
   * Compares the configured start time of a service with the stored one. When it changed, the
   * service's cursor and de-dup keys are deleted (the Devo collectors' rule) and true is returned;
   * the deletion and the new start time are one LevelDB batch. The request log is kept: the
   * vendor's budget does not reset with our state.
   */
  async applyStartTime(input: string, service: string, startTime: string | undefined): Promise<boolean> {
    const scope = scopeOf(input, service);
    const key = `start_time::${scope}`;
    const stored = (await this.meta.get(key)) as { value: string | null } | undefined;
    const now = startTime ?? null;
    if (stored !== undefined && stored.value === now) return false;
    const hadState = stored !== undefined || (await this.cursors.get(scope)) !== undefined;
    if (!hadState) {
      await this.guard.write(() => this.meta.put(key, { value: now }));
      return false;
    }
    await this.#reset(scope, { value: now });
    if (stored === undefined) return false;
    this.#logger.warn(
      { input, service, previous_start_time: stored.value, start_time: now },
      'The configured start time changed: the state of this service was reset and collection restarts from the new start time.',
    );
    return true;
  }

  /**
   * Deletes a service's cursor, start time and de-dup keys (state reset), in one LevelDB batch: a
   * reset that fails leaves the service as it was, never a cursor without its keys or keys without
   * their cursor.
   */
  async resetService(input: string, service: string): Promise<void> {
    await this.#reset(scopeOf(input, service), undefined);
  }

  /**
   * One batch: the scope's cursor, de-dup keys and start time go; `startTime`, when given, is
   * written in their place. The batch holds a deletion per de-dup key stored for the scope; a
   * scope with more than RESET_BATCH_MAX_KEYS keys has them deleted in bounded steps first, and the
   * batch then changes the cursor and start time. A failure after those steps leaves the cursor
   * and start time as they were with fewer keys: at worst duplicates, and the next start (or the
   * next `state reset`) resets again.
   */
  async #reset(scope: string, startTime: { value: string | null } | undefined): Promise<void> {
    const key = `start_time::${scope}`;
    const stored = (await this.guard.read(() => this.meta.get(`seen_count::${scope}`))) as number | undefined;
    if ((stored ?? 0) > this.#resetBatchMaxKeys) await this.seen.clearKeys(scope);
    await this.guard.write(() =>
      writeChained(this.db, async (batch) => {
        batch.del(scope, { sublevel: this.cursors });
        if (startTime) batch.put(key, startTime, { sublevel: this.meta });
        else batch.del(key, { sublevel: this.meta });
        await this.seen.addClearToBatch(batch, scope);
      }),
    );
    this.seen.afterClear(scope);
  }

  /** Every stored cursor, for `state show`. */
  async listCursors(): Promise<Array<{ input: string; service: string } & StoredCursor>> {
    const out: Array<{ input: string; service: string } & StoredCursor> = [];
    for await (const [key, value] of this.cursors.iterator()) {
      const [input, service] = splitScope(key);
      out.push({ input, service, ...(value as StoredCursor) });
    }
    return out;
  }

  /** Every service with state (cursor, start time or de-dup keys), for `state show`. */
  async listScopes(): Promise<string[]> {
    const scopes = new Set<string>();
    for await (const key of this.cursors.keys()) scopes.add(key);
    for await (const key of this.meta.keys({ gte: 'start_time::', lt: 'start_time::\xff' })) scopes.add(key.slice('start_time::'.length));
    for await (const key of this.meta.keys({ gte: 'seen_count::', lt: 'seen_count::\xff' })) scopes.add(key.slice('seen_count::'.length));
    return [...scopes].sort();
  }

  get closed(): boolean {
    return this.#closed;
  }

  /** Closes the database and clears the unclean-shutdown marker (a clean shutdown). */
  async close(opts: { clean?: boolean } = {}): Promise<void> {
    if (this.#closed) return;
    this.#closed = true;
    this.guard.close();
    // Closed by a reopen that failed (state/level.ts): nothing to write or close.
    if (!this.guard.open) return;
    if (opts.clean !== false && !this.#maintenance) await this.meta.del('running');
    await this.db.close();
  }
}

/**
 * Reads every entry of the small ranges a start needs (meta, cursors): a damaged table holding
 * them is found at open, not at the first look-up. The de-dup keys are too many to read here;
 * damage there surfaces as STATE_CORRUPT at the look-up that hits it.
 */
async function verifyReadable(db: Db, dir: string): Promise<void> {
  try {
    for (const name of ['meta', 'cursor']) {
      for await (const _ of jsonSublevel(db, name).iterator({ fillCache: false } as any)) {
        // Reading is the check.
      }
    }
  } catch (err) {
    throw stateError(err, dir, 'read');
  }
}

export function splitScope(scope: string): [string, string] {
  const i = scope.indexOf('::');
  return i < 0 ? [scope, ''] : [scope.slice(0, i), scope.slice(i + 2)];
}

/** Brings an older layout to SCHEMA_VERSION; refuses a newer one. */
async function migrate(db: Db, dir: string, logger: Logger): Promise<void> {
  const meta = jsonSublevel(db, 'meta');
  let version = (await meta.get('schema_version')) as number | undefined;
  if (version === undefined) {
    // Either a new directory or the version-1 layout, which had no version key.
    let legacy = false;
    for await (const _ of db.keys({ gte: 'cursor!', lt: 'cursor!\xff', limit: 1 })) legacy = true;
    version = legacy ? 1 : SCHEMA_VERSION;
    if (!legacy) {
      await meta.put('schema_version', SCHEMA_VERSION);
      return;
    }
  }
  if (version > SCHEMA_VERSION) {
    throw new SidecarError(
      ErrorCode.STATE_VERSION,
      `State in ${dir} has schema version ${version}, written by a newer proofpoint-sidecar (this one reads up to ${SCHEMA_VERSION}); upgrade, or point globals.state_dir elsewhere`,
      { fatal: true },
    );
  }
  if (version === 1) {
    const cursors = jsonSublevel(db, 'cursor');
    const ops: BatchOp[] = [];
    let n = 0;
    for await (const [key, value] of db.iterator({ gte: 'cursor!', lt: 'cursor!\xff' })) {
      const [, input, service] = key.split('!');
      if (!input || !service) continue;
      ops.push({ type: 'put', sublevel: cursors, key: scopeOf(input, service), value: { v: 1, cursor: value, committed_at: 0 } });
      ops.push({ type: 'del', key });
      n++;
    }
    ops.push({ type: 'put', sublevel: meta, key: 'schema_version', value: SCHEMA_VERSION });
    await writeBatch(db, ops);
    logger.info({ state_dir: dir, cursors: n, from: 1, to: SCHEMA_VERSION }, 'Migrated the state layout.');
  }
}
