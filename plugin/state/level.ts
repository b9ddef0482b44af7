/** LevelDB typing helpers shared by the state modules. */
import { closeSync, fsyncSync, openSync, rmSync, writeSync } from 'node:fs';
import path from 'node:path';
import type { Level } from 'level';
import type { AbstractSublevel } from 'abstract-level';

// LevelDB values here are JSON (or '' for index keys); the loose value type keeps sublevels and
// mixed-sublevel batches simple to type.
/* eslint-disable @typescript-eslint/no-explicit-any */
export type Db = Level<string, any>;
export type Sublevel = AbstractSublevel<any, any, string, any>;
export type BatchOp =
  | { type: 'put'; sublevel?: Sublevel; key: string; value: unknown }
  | { type: 'del'; sublevel?: Sublevel; key: string };

/**
 * A batch built operation by operation and written atomically (`db.batch()`): the operations are
 * held by LevelDB's own write batch, not as JavaScript objects, for batches too large for an
 * array (a state reset deletes every de-dup key of a service).
 */
export type ChainedBatch = ReturnType<Db['batch']> & {
  put(key: string, value: unknown, opts?: { sublevel?: Sublevel }): ChainedBatch;
  del(key: string, opts?: { sublevel?: Sublevel }): ChainedBatch;
  write(): Promise<void>;
  close(): Promise<void>;
};

/** Writes the batch `build` fills, atomically: nothing of it when building or writing fails. */
export async function writeChained(db: Db, build: (batch: ChainedBatch) => Promise<void>): Promise<void> {
  const batch = db.batch() as unknown as ChainedBatch;
  try {
    await build(batch);
  } catch (err) {
    await batch.close();
    throw err;
  }
  await batch.write();
}

/** Writes operations on several sublevels atomically. */
export function writeBatch(db: Db, ops: BatchOp[]): Promise<void> {
  return db.batch(ops as any);
}

export function jsonSublevel(db: Db, name: string): Sublevel {
  return db.sublevel<string, any>(name, { valueEncoding: 'json' });
}

/** What LevelDB said went wrong: its code and its own message (the file and the OS error). */
export interface LevelFault {
  /** LEVEL_CORRUPTION, LEVEL_IO_ERROR, LEVEL_LOCKED, ... or undefined for an error of another kind. */
  levelCode?: string;
  /** LevelDB's message, e.g. "IO error: /state/db/000005.log: No space left on device". */
  cause: string;
}

/**
 * The real cause of a classic-level error. Open failures wrap it (`Database failed to open`,
 * code LEVEL_DATABASE_NOT_OPEN, with the binding's error as `cause`); reads and writes carry it
 * directly.
 */
export function levelFault(err: unknown): LevelFault {
  let e = err as { code?: unknown; message?: unknown; cause?: unknown } | undefined;
  for (let depth = 0; e && depth < 5; depth++) {
    const code = typeof e.code === 'string' ? e.code : undefined;
    const wrapper = code === 'LEVEL_DATABASE_NOT_OPEN' || code === 'LEVEL_DATABASE_NOT_CLOSED' || code === undefined;
    if (!wrapper || e.cause === undefined) {
      return { levelCode: code, cause: typeof e.message === 'string' ? e.message : String(e) };
    }
    e = e.cause as typeof e;
  }
  return { cause: String(err) };
}

/** True for a failure of the storage itself (a disk, file system or file), not of a value. */
export function isStorageFault(f: LevelFault): boolean {
  return f.levelCode === 'LEVEL_IO_ERROR' || f.levelCode === 'LEVEL_CORRUPTION';
}

/**
 * Orders LevelDB's recovery from a failed write with the state's other reads and writes.
 *
 * After a write fails (a full or read-only disk), LevelDB either refuses every later write until
 * it is reopened (a failed flush), or goes on accepting writes that the next open does not replay
 * (after a partial log append its log is misaligned: on a full tmpfs every commit made once space
 * returned was gone after a restart). So after a failed write, the next write first reopens the
 * database, which replays the log up to the failed record and starts a new log; a small probe
 * file written first keeps the database open while the directory still refuses writes. Reads
 * wait while the database is closed for that.
 */
export class StateGuard {
  readonly #db: Db;
  /** The state directory (the database is `<dir>/db`). */
  readonly dir: string;
  #fault?: LevelFault;
  #reopening?: Promise<void>;
  /** Set while the database is closed for a reopen that has not succeeded yet. */
  #down?: { promise: Promise<void>; resolve: () => void; reject: (err: Error) => void };
  #closed = false;
  /** Sublevels do not reopen with their database: each is reopened after it. */
  readonly #sublevels: Sublevel[] = [];

  constructor(db: Db, dir: string) {
    this.#db = db;
    this.dir = dir;
  }

  /** Registers a sublevel to reopen with the database; returns it. */
  track<S extends Sublevel>(sublevel: S): S {
    this.#sublevels.push(sublevel);
    return sublevel;
  }

  /** The storage fault of the last failed write, until a write succeeds again. */
  get fault(): LevelFault | undefined {
    return this.#fault;
  }

  async read<T>(fn: () => Promise<T>): Promise<T> {
    if (this.#down) await this.#down.promise;
    return fn();
  }

  async write<T>(fn: () => Promise<T>): Promise<T> {
    if (this.#fault) await this.reopen();
    else if (this.#down) await this.#down.promise;
    try {
      const r = await fn();
      this.#fault = undefined;
      return r;
    } catch (err) {
      const f = levelFault(err);
      if (isStorageFault(f)) this.#fault = f;
      throw err;
    }
  }

  /** Reopens the database after a failed write (once at a time); throws while the disk refuses. */
  reopen(): Promise<void> {
    this.#reopening ??= this.#reopen().finally(() => {
      this.#reopening = undefined;
    });
    return this.#reopening;
  }

  async #reopen(): Promise<void> {
    if (this.#closed) throw new Error('state store is closed');
    probeWritable(this.dir);
    if (!this.#down) {
      let resolve!: () => void;
      let reject!: (err: Error) => void;
      const promise = new Promise<void>((res, rej) => {
        resolve = res;
        reject = rej;
      });
      promise.catch(() => {});
      this.#down = { promise, resolve, reject };
      await this.#db.close();
    }
    await this.#db.open();
    await Promise.all(this.#sublevels.map((s) => s.open()));
    const down = this.#down;
    this.#down = undefined;
    down?.resolve();
  }

  /** Whether the database is open (not closed for a reopen that failed). */
  get open(): boolean {
    return this.#down === undefined;
  }

  /** Ends waiting reads: the store is closing. */
  close(): void {
    this.#closed = true;
    this.#down?.reject(new Error('state store is closed'));
  }
}

/** Writes, syncs and removes a small file in `dir`: throws the OS error when it cannot. */
function probeWritable(dir: string): void {
  const file = path.join(dir, '.write-probe');
  const fd = openSync(file, 'w');
  try {
    writeSync(fd, Buffer.alloc(64 * 1024));
    fsyncSync(fd);
  } finally {
    closeSync(fd);
    rmSync(file, { force: true });
  }
}
