/**
 * `state repair`: LevelDB's own repair (classic-level `ClassicLevel.repair`), which rebuilds the
 * MANIFEST and CURRENT from the table and log files and keeps every entry it can still read,
 * dropping damaged blocks. Nothing is reset: the report says, per kind of entry, how many were
 * readable before and after, and which cursors are present, so what was lost is known. The
 * damaged files are copied aside first.
 */
import { cpSync, existsSync } from 'node:fs';
import path from 'node:path';
import { ClassicLevel } from 'classic-level';
import { Level } from 'level';
import type { Db } from './level.ts';
import { levelFault } from './level.ts';
import { ErrorCode, SidecarError } from '../errors.ts';
import { StateStore, splitScope } from './store.ts';

/** The kinds of entry (sublevels) of the layout, see state/store.ts. */
const KINDS = ['cursor', 'meta', 'seen', 'seen_exp', 'reqlog'] as const;

/** What a full read of the database found. */
export interface StateCensus {
  /** Entries read per kind (the sublevel: cursor, meta, seen, seen_exp, reqlog). */
  entries: Record<string, number>;
  /** Kinds whose read stopped at a damaged block, with LevelDB's error: their count is partial. */
  unreadable: Record<string, string>;
  /** Every `<input>::<service>` with a cursor. */
  cursors: string[];
  /** Why the database did not open. */
  error?: string;
}

export interface RepairReport {
  state_dir: string;
  backup: string;
  before: StateCensus;
  after: StateCensus;
  /**
   * Entries per kind readable before and not after. A kind unreadable before (or a database that
   * did not open) has no exact count: `lost_unknown` names it, and `after` is what survived.
   */
  lost: Record<string, number>;
  lost_unknown: string[];
  /** Cursors readable before and not after: those services start again from their start time. */
  cursors_lost: string[];
  /** De-dup key counts per service rewritten to the keys actually present. */
  dedup_counts_fixed: Array<{ input: string; service: string; stored: number; present: number }>;
}

/**
 * Reads every entry of an open database, kind by kind (keys and values: a damaged block fails
 * either), so damage in one kind leaves the counts of the others exact.
 */
async function census(db: Db): Promise<StateCensus> {
  const out: StateCensus = { entries: {}, unreadable: {}, cursors: [] };
  // The version-1 layout's flat `cursor!<input>!<service>` keys are counted as their own kind.
  const ranges: Array<[string, string, string]> = [
    ...KINDS.map((k): [string, string, string] => [k, `!${k}!`, `!${k}"`]),
    ['cursor (layout 1)', 'cursor!', 'cursor"'],
  ];
  for (const [kind, gte, lt] of ranges) {
    let n = 0;
    try {
      for await (const [key] of db.iterator({ gte, lt, fillCache: false } as object)) {
        n++;
        if (kind === 'cursor') out.cursors.push(key.slice(gte.length));
      }
    } catch (err) {
      const f = levelFault(err);
      out.unreadable[kind] = `${f.levelCode ?? 'error'}: ${f.cause}`;
    }
    if (n > 0 || out.unreadable[kind]) out.entries[kind] = n;
  }
  return out;
}

async function censusOf(location: string): Promise<StateCensus> {
  const db: Db = new Level<string, unknown>(location, { valueEncoding: 'utf8', createIfMissing: false });
  try {
    await db.open();
  } catch (err) {
    const f = levelFault(err);
    if (f.levelCode === 'LEVEL_LOCKED') {
      throw new SidecarError(
        ErrorCode.STATE_LOCKED,
        `State in ${path.dirname(location)} is in use by another proofpoint-sidecar process; stop it before repairing (globals.state_dir)`,
        { fatal: true, cause: err },
      );
    }
    return { entries: {}, unreadable: {}, cursors: [], error: `${f.levelCode ?? 'error'}: ${f.cause}` };
  }
  try {
    return await census(db);
  } finally {
    await db.close().catch(() => {});
  }
}

/** Repairs the state in `stateDir` (see the module comment). `now` names the backup. */
export async function repairState(stateDir: string, now: number = Date.now()): Promise<RepairReport> {
  const abs = path.resolve(stateDir);
  const location = path.join(abs, 'db');
  if (!existsSync(location)) {
    throw new SidecarError(ErrorCode.CONFIG, `No state to repair in ${abs} (globals.state_dir): ${location} does not exist`, { exitCode: 2, fatal: true });
  }
  const before = await censusOf(location);
  const backup = path.join(abs, `db.before-repair-${new Date(now).toISOString().replace(/[:.]/g, '-')}`);
  cpSync(location, backup, { recursive: true, filter: (src) => path.basename(src) !== 'LOCK' });
  try {
    await ClassicLevel.repair(location);
  } catch (err) {
    const f = levelFault(err);
    throw new SidecarError(ErrorCode.STATE_IO, `LevelDB could not repair ${location} (${f.levelCode ?? 'error'}: ${f.cause}); the files before the attempt are in ${backup}`, {
      fatal: true,
      cause: err,
    });
  }
  const after = await censusOf(location);
  const dedupFixed: RepairReport['dedup_counts_fixed'] = [];
  if (!after.error && Object.keys(after.unreadable).length === 0) {
    // The per-service key counts bound the de-dup window: make them match the keys that survived.
    const store = await StateStore.open(abs, { maintenance: true });
    try {
      const present = new Map<string, number>();
      for await (const key of store.db.sublevel('seen').keys()) {
        const i = key.indexOf('::', key.indexOf('::') + 2);
        const scope = i < 0 ? key : key.slice(0, i);
        present.set(scope, (present.get(scope) ?? 0) + 1);
      }
      for (const scope of await store.listScopes()) {
        const stored = await store.seen.load(scope);
        const n = present.get(scope) ?? 0;
        if (stored !== n) {
          await store.meta.put(`seen_count::${scope}`, n);
          const [input, service] = splitScope(scope);
          dedupFixed.push({ input, service, stored, present: n });
        }
      }
    } finally {
      await store.close();
    }
  }
  const lost: Record<string, number> = {};
  const lostUnknown: string[] = [];
  for (const kind of new Set([...Object.keys(before.entries), ...Object.keys(after.entries)])) {
    if (before.error || before.unreadable[kind]) {
      lostUnknown.push(kind);
      continue;
    }
    const gone = (before.entries[kind] ?? 0) - (after.entries[kind] ?? 0);
    if (gone > 0) lost[kind] = gone;
  }
  const afterCursors = new Set(after.cursors);
  return {
    state_dir: abs,
    backup,
    before,
    after,
    lost,
    lost_unknown: lostUnknown,
    cursors_lost: before.cursors.filter((c) => !afterCursors.has(c)),
    dedup_counts_fixed: dedupFixed,
  };
}
