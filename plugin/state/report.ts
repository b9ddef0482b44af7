/**
 * What `state show` prints, built from an open store: by the CLI when it could open the state
 * itself, by the running sidecar's `/state` endpoint (telemetry/http.ts) otherwise. Times are UTC
 * ISO 8601; where the running sidecar knows the backfill progress, its live figures are used.
 */
import { formatUtc, parseTimestampMs } from '../util/time.ts';
import { splitScope, type StateStore } from './store.ts';
import { formatDuration, type BackfillSnapshot } from '../telemetry/progress.ts';
import { descriptorOf, sourceDescriptors } from '../sources/registry.ts';
import type { SourceStateView, StoredPosition } from '../sources/descriptor.ts';

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

/**
 * How a cursor is read: by its input type's view when the type is known, else (an input no longer
 * in the config) by every registered view, as a cursor's own keys say what it is.
 */
function viewsFor(type: string | undefined): readonly SourceStateView[] {
  const d = type === undefined ? undefined : descriptorOf(type);
  return d ? [d.state] : sourceDescriptors().map((x) => x.state);
}

/** The cursor with its epoch-ms times as UTC ISO strings (the keys its input type names). */
export function readableCursor(value: unknown, views: readonly SourceStateView[] = viewsFor(undefined)): unknown {
  const ms = new Set(views.flatMap((v) => v.msKeys));
  const dropped = new Set(views.flatMap((v) => v.droppedKeys ?? []));
  const walk = (v: unknown): unknown => {
    if (Array.isArray(v)) return v.map(walk);
    if (v === null || typeof v !== 'object') return v;
    const out: Record<string, unknown> = {};
    for (const [k, x] of Object.entries(v as Record<string, unknown>)) {
      if (dropped.has(k)) continue;
      out[k] = ms.has(k) && typeof x === 'number' && Number.isFinite(x) ? formatUtc(x) : walk(x);
    }
    return out;
  };
  return walk(value);
}

/** Where a stored cursor stands when nothing live is known, as its input type's view reads it. */
export function storedBackfill(cursor: unknown, now: number, views: readonly SourceStateView[] = viewsFor(undefined)): BackfillView | undefined {
  if (cursor === null || typeof cursor !== 'object') return undefined;
  let at: StoredPosition | undefined;
  for (const v of views) if ((at = v.position(cursor, now))) break;
  if (!at) return undefined;
  const remaining = at.active ? Math.max(0, at.targetMs - at.positionMs) : 0;
  return {
    active: at.active,
    position: formatUtc(at.positionMs),
    remaining_secs: Math.round(remaining / 1000),
    remaining: formatDuration(remaining),
    eta_secs: at.active ? null : 0,
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
  /** The input type of an input id, when the caller knows it (from the config or the running sources). */
  typeOf?: (input: string) => string | undefined;
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
        const views = viewsFor(o.typeOf?.(input));
        return {
          input,
          service,
          cursor: c ? readableCursor(c.cursor, views) : null,
          committed_at: c && c.committed_at ? formatUtc(c.committed_at) : null,
          dedup_keys: await store.seen.load(scope),
          backfill: live ? liveBackfill(live, o.now) : (storedBackfill(c?.cursor, o.now, views) ?? null),
        };
      }),
    ),
    request_log_last_24h: (await store.requests.summary(o.now - 24 * 3600 * 1000)).filter((r) => !filter.input || r.input === filter.input),
  };
}

export type StateReport = Awaited<ReturnType<typeof stateReport>>;
