/** LevelDB typing helpers shared by the state modules. */
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

/** Writes operations on several sublevels atomically. */
export function writeBatch(db: Db, ops: BatchOp[]): Promise<void> {
  return db.batch(ops as any);
}

export function jsonSublevel(db: Db, name: string): Sublevel {
  return db.sublevel<string, any>(name, { valueEncoding: 'json' });
}
