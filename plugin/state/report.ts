/**
 * What `state show` prints, built from an open store: by the CLI when it could open the state
 * itself, by the running sidecar's `/state` endpoint (telemetry/http.ts) otherwise. Times are UTC
 * ISO 8601; where the running sidecar knows the backfill progress, its live figures are used.
 */
import { formatUtc, parseTimestampMs } from '../util/time.ts';
import { splitScope, type StateStore } from './store.ts';
import { formatDuration, type BackfillSnapshot } from '../telemetry/progress.ts';

export interface StateFilter {
  input?: string;
  service?: string;
}

export interface BackfillView {
  active: boolean;
  position: string | null;
  remaining_secs: number | null;
  remaining: string | null;
  /** Estimated wall-clock time until live; null when not known (not running, or no progress yet). */
  eta_secs: number | null;
  live_at: string | null;
  /** `running sidecar` (live figures) or `stored cursor` (from the state alone). */
  from: 'running sidecar' | 'stored cursor';
}

/** Numbers under these keys of a cursor are wall-clock or event times in ms. */
const MS_KEYS = new Set(['liveAt', 'archivedUntil', 'from', 'until', 'at', 'started_at']);
/** Parts of a PoD cursor that only repeat `ts` in another form. */
const DROPPED_KEYS = new Set(['sec', 'nsec']);

/** The cursor with its epoch-ms times as UTC ISO strings. */
export function readableCursor(value: unknown): unknown {
  if (Array.isArray(value)) return value.map(readableCursor);
  if (value === null || typeof value !== 'object') return value;
  const out: Record<string, unknown> = {};
  for (const [k, v] of Object.entries(value as Record<string, unknown>)) {
    if (DROPPED_KEYS.has(k)) continue;
    out[k] = MS_KEYS.has(k) && typeof v === 'number' && Number.isFinite(v) ? formatUtc(v) : readableCursor(v);
  }
  return out;
}

/**
 * Where a stored cursor stands when nothing live is known: TAP `collected_to`; PoD the owed
 * replay's position (what remains runs to its end) or the highest `ts`.
 */
export function storedBackfill(cursor: unknown, now: number): BackfillView | undefined {
  if (cursor === null || typeof cursor !== 'object') return undefined;
  const c = cursor as Record<string, unknown>;
  let position: number | undefined;
  let target = now;
  let active: boolean;
  const owed = c['owed'] as { from?: unknown; until?: unknown } | undefined;
  if (owed && typeof owed.from === 'number' && typeof owed.until === 'number') {
    position = owed.from;
    target = owed.until;
    active = true;
  } else {
    const t = typeof c['collected_to'] === 'string' ? c['collected_to'] : typeof c['ts'] === 'string' ? c['ts'] : undefined;
    position = t === undefined ? undefined : parseTimestampMs(t);
    // The TAP API is queried a few minutes behind now: up to an hour behind counts as live.
    active = position !== undefined && typeof c['collected_to'] === 'string' && now - position > 3600_000;
  }
  if (position === undefined) return undefined;
  const remaining = active ? Math.max(0, target - position) : 0;
  return {
    active,
    position: formatUtc(position),
    remaining_secs: Math.round(remaining / 1000),
    remaining: formatDuration(remaining),
    eta_secs: active ? null : 0,
    live_at: null,
    from: 'stored cursor',
  };
}

export function liveBackfill(s: BackfillSnapshot, now: number): BackfillView {
  return {
    active: s.active,
    position: formatUtc(s.positionMs),
    remaining_secs: Math.round(s.remainingMs / 1000),
    remaining: formatDuration(s.remainingMs),
    eta_secs: s.etaMs === undefined ? null : Math.round(s.etaMs / 1000),
    live_at: s.etaMs === undefined ? null : formatUtc(now + s.etaMs),
    from: 'running sidecar',
  };
}

export interface StateReportOptions {
  now: number;
  /** The running sidecar's backfill figures of a service, when it has them. */
  progress?: (input: string, service: string) => BackfillSnapshot | undefined;
  /** How the previous shutdown is described (the running sidecar says `running`). */
  shutdown?: string;
}

export async function stateReport(store: StateStore, filter: StateFilter, o: StateReportOptions) {
  const scopes = (await store.listScopes()).filter((s) => {
    const [i, svc] = splitScope(s);
    return (!filter.input || i === filter.input) && (!filter.service || svc === filter.service);
  });
  const cursors = new Map((await store.listCursors()).map((c) => [`${c.input}::${c.service}`, c]));
  return {
    state_dir: store.dir,
    previous_shutdown: o.shutdown ?? (store.uncleanShutdown ? 'unclean (or still running)' : 'clean'),
    services: await Promise.all(
      scopes.map(async (scope) => {
        const [input, service] = splitScope(scope);
        const c = cursors.get(scope);
        const live = o.progress?.(input, service);
        return {
          input,
          service,
          cursor: c ? readableCursor(c.cursor) : null,
          committed_at: c && c.committed_at ? formatUtc(c.committed_at) : null,
          dedup_keys: await store.seen.load(scope),
          backfill: live ? liveBackfill(live, o.now) : (storedBackfill(c?.cursor, o.now) ?? null),
        };
      }),
    ),
    request_log_last_24h: (await store.requests.summary(o.now - 24 * 3600 * 1000)).filter((r) => !filter.input || r.input === filter.input),
  };
}

export type StateReport = Awaited<ReturnType<typeof stateReport>>;
