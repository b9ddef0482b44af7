/**
 * Window maths for the TAP SIEM API, pure functions of positions and "now".
 *
 * Vendor rules, as the API enforces them with 400 answers: a window is 30 s to 1 h long, starts at most 7 days back
 * ("Requests for information up to 7.00d are accepted") and ends in the past (else 400 "The
 * requested interval is still current."). There is no paging, so each window is one request.
 *
 * Positions (per service, persisted as its cursor):
 *   collectedTo  every window before it has been queried at least once (the first pass);
 *   settledTo    every window before it has been queried at least `settle delay` after its end,
 *                so events indexed late (up to ~30 min) are in. settledTo <= collectedTo.
 * A first-pass window that is already older than the settle delay when queried (a backfill) is
 * settled at once; recent time is re-queried once, later, in windows of `settle window` or more.
 */

export const SECOND_MS = 1000;
export const MIN_WINDOW_MS = 30 * SECOND_MS;
export const MAX_WINDOW_MS = 3600 * SECOND_MS;
export const LOOKBACK_MS = 7 * 24 * 3600 * SECOND_MS;
/** Elastic clamps to now − 167h55m to leave room for clock skew; so do we. */
export const LOOKBACK_MARGIN_MS = 5 * 60 * SECOND_MS;

export interface Positions {
  /** ms since the epoch, whole seconds. */
  collectedTo: number;
  settledTo: number;
}

export type WindowKind = 'fresh' | 'settle';

export interface Window {
  kind: WindowKind;
  /** ms, whole seconds; end - start is within [MIN_WINDOW_MS, MAX_WINDOW_MS]. */
  start: number;
  end: number;
}

export interface WindowOptions {
  /** Every window ends at least this far behind now. */
  lagMs: number;
  /** Cadence once caught up. */
  periodMs: number;
  settleEnabled: boolean;
  settleDelayMs: number;
  settleWindowMs: number;
}

export type Plan = { window: Window } | { waitUntil: number };

export const floorSec = (ms: number): number => Math.floor(ms / SECOND_MS) * SECOND_MS;
export const ceilSec = (ms: number): number => Math.ceil(ms / SECOND_MS) * SECOND_MS;

/** The oldest window start the API accepts at `now`, with `marginMs` of room for clock skew. */
export function oldestAllowedStart(now: number, marginMs = LOOKBACK_MARGIN_MS): number {
  return ceilSec(now - LOOKBACK_MS + marginMs);
}

/**
 * What to query next, or when to look again. Settled re-queries go first when due (they are old
 * data, and one request); then the first pass walks 1 h windows until it is within one period of
 * `now − lag`, after which it polls every period.
 */
export function planNext(pos: Positions, now: number, o: WindowOptions): Plan {
  const horizon = floorSec(now - o.lagMs);
  const step = Math.max(o.periodMs, MIN_WINDOW_MS);
  let settleDue = Infinity;
  if (o.settleEnabled && pos.settledTo < pos.collectedTo) {
    const settleWindow = Math.max(o.settleWindowMs, MIN_WINDOW_MS);
    const settleEdge = Math.min(pos.collectedTo, floorSec(now - o.settleDelayMs));
    const settled = settleEdge - pos.settledTo;
    if (settled >= settleWindow) {
      return { window: { kind: 'settle', start: pos.settledTo, end: pos.settledTo + Math.min(settled, MAX_WINDOW_MS) } };
    }
    // Due once enough time has settled; until the first pass covers it, a fresh window comes first.
    if (pos.collectedTo - pos.settledTo >= settleWindow) settleDue = pos.settledTo + settleWindow + o.settleDelayMs;
  }
  const gap = horizon - pos.collectedTo;
  if (gap >= step) {
    return { window: { kind: 'fresh', start: pos.collectedTo, end: pos.collectedTo + Math.min(gap, MAX_WINDOW_MS) } };
  }
  const freshDue = pos.collectedTo + step + o.lagMs;
  return { waitUntil: Math.min(freshDue, settleDue) };
}

/**
 * Positions after querying `w` at time `sentAt`. A window counts only where it continues what is
 * already covered (its start at or before the position); a window beyond a position is a gap and
 * moves nothing.
 */
export function advance(pos: Positions, w: Window, sentAt: number, o: Pick<WindowOptions, 'settleEnabled' | 'settleDelayMs'>): Positions {
  const collectedTo = w.start <= pos.collectedTo ? Math.max(pos.collectedTo, w.end) : pos.collectedTo;
  if (!o.settleEnabled) return { collectedTo, settledTo: collectedTo };
  const settledPoint = Math.min(w.end, floorSec(sentAt - o.settleDelayMs));
  const settledTo = w.start <= pos.settledTo ? Math.max(pos.settledTo, settledPoint) : pos.settledTo;
  return { collectedTo, settledTo: Math.min(settledTo, collectedTo) };
}

/** True when querying `w` can still bring this service something it has not settled. */
export function windowConcerns(pos: Positions, w: Window): boolean {
  return w.end > pos.settledTo;
}

/** Component-wise minimum: where a shared `/all` walk must be to serve every service. */
export function minPositions(all: readonly Positions[]): Positions {
  return {
    collectedTo: Math.min(...all.map((p) => p.collectedTo)),
    settledTo: Math.min(...all.map((p) => p.settledTo)),
  };
}

/** `2026-11-23T05:00:00Z`: the API's own form (queryEndTime has no milliseconds). */
export function formatApiTime(ms: number): string {
  return new Date(ms).toISOString().replace(/\.\d{3}Z$/, 'Z');
}

/** The `interval` parameter: `<start>/<end>`, both explicit. */
export function formatInterval(w: { start: number; end: number }): string {
  return `${formatApiTime(w.start)}/${formatApiTime(w.end)}`;
}

/** Checks a window against the API's rules at `now` (used by the source as a last guard and by tests). */
export function windowProblem(w: { start: number; end: number }, now: number): string | undefined {
  const len = w.end - w.start;
  if (len < MIN_WINDOW_MS) return `shorter than 30 s (${len / SECOND_MS} s)`;
  if (len > MAX_WINDOW_MS) return `longer than 1 h (${len / SECOND_MS} s)`;
  if (w.start < now - LOOKBACK_MS) return 'starts more than 7 days back';
  if (w.end > now) return 'ends in the future';
  return undefined;
}
