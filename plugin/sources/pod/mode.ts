/**
 * Live or archive: which session a service opens next.
 *
 * Without `sinceTime` the server streams live and, after a drop shorter than an hour, resumes
 * "from the moment the previous session dropped"; after a longer gap it serves only the last
 * hour. The resume point lives on the server and is not acknowledged by the client: whatever was
 * in flight when a session dropped, or held in memory when the process died, may not be sent
 * again in live mode. Any `sinceTime` switches to archive mode: `sinceTime` floored and `toTime`
 * ceiled to the hour, data at least 30 minutes stale, at most 30 days back. Only one session per
 * token and type may be open (409), so a replay runs before or between live sessions.
 *
 * Hence: stream live by default; replay a gap in archive mode when
 *  - the previous process died (unclean shutdown): from the hour of the committed cursor up to
 *    the moment of this start, while live runs meanwhile;
 *  - a live session ended without the server's normal close (a drop, an error, a pong timeout,
 *    a close code other than 1000): from the hour of the committed cursor up to the moment the
 *    next live session opened, whatever the server's resume point was;
 *  - contact was lost for longer than the threshold (outage, at start or on reconnect): until the
 *    live session's one hour takes over;
 *  - a `start_time` is configured and there is no cursor (first start, or state reset): from it
 *    up to the moment of this start.
 * Windows are whole past hours (see nextStep). Overlaps (hour rounding, live resume, repeated
 * events, windows asked again) are removed by de-duplication.
 */
import { coveredUntil, cursorTimeMs, type PodCursor } from './cursor.ts';

const HOUR = 3600_000;

/** `probe`: `check --online --probe-live` read a live session and owes what it consumed. */
export type ReplayReason = 'unclean_shutdown' | 'outage' | 'start_time' | 'live_start' | 'live_drop' | 'probe';

const FIXED_REASONS: readonly string[] = ['start_time', 'live_start', 'live_drop', 'probe'];

export interface Replay {
  reason: ReplayReason;
  /** Next event time (ms) to replay from; advances, hour by hour, as whole-hour windows complete. */
  from: number;
  /** Fixed end (ms), or undefined: "until live takes over" (now - threshold, moving). */
  until?: number;
  /** Offset (minutes east of UTC) in which windows are written and hour-rounded: the cluster's. */
  offsetMin: number;
  /** Events before this time could not be replayed (older than 30 days). */
  clampedFrom?: number;
  /**
   * End of the partial windows served for the hour starting at `from`: asked while that hour was
   * not yet wholly older than the staleness. The server rounds `toTime` up to the hour, so what it
   * does with such a request is not documented; a partial answer is therefore never taken as
   * proof, and the whole hour is asked again once it is available (`from` advances only then).
   */
  partialTo?: number;
  /** A refused window waits: no archive session before this time (ms); live runs meanwhile. */
  notBefore?: number;
}

export interface ModeLimits {
  /** Contact lost longer than this (ms) needs an archive replay (below the server's one hour). */
  thresholdMs: number;
  /** Archive data is at least this stale (ms). */
  stalenessMs: number;
  /** Longest archive window (ms). */
  windowMs: number;
  /** Archive mode reaches back at most this far (ms). */
  maxAgeMs: number;
}

export type Step =
  /** `partial`: `to` is not a whole past hour (see Replay.partialTo). */
  | { mode: 'archive'; since: number; to: number; offsetMin: number; partial: boolean }
  /** Live; `until` set: end the session then (a deferred replay becomes available). */
  | { mode: 'live'; until?: number };

/** Least that a second partial window of the same hour must add (see nextStep). */
const FURTHER_PARTIAL_MIN_GAIN_MS = 10 * 60_000;

/** Start of the hour containing `ms`, in the given offset (the server rounds in its own). */
export function floorHour(ms: number, offsetMin = 0): number {
  const off = offsetMin * 60_000;
  return Math.floor((ms + off) / HOUR) * HOUR - off;
}

/** End of the hour containing `ms` (or `ms` itself on a boundary). */
export function ceilHour(ms: number, offsetMin = 0): number {
  const off = offsetMin * 60_000;
  return Math.ceil((ms + off) / HOUR) * HOUR - off;
}

/** Offset in minutes east of UTC of a PoD `ts` (`-0700`, `-07:00`, `+0000`, `Z`); 0 when absent. */
export function offsetOf(ts: string | undefined): number {
  const m = ts ? /([+-])(\d{2}):?(\d{2})$/.exec(ts.trim()) : null;
  if (!m) return 0;
  return (m[1] === '-' ? -1 : 1) * (Number(m[2]) * 60 + Number(m[3]));
}

/**
 * A time as PoD writes `ts`: local time in `offsetMin`, microseconds, offset without a colon
 * (`2024-05-22T12:00:00.000000-0700`). It goes into the query string URL-encoded (`+` would
 * otherwise read as a space).
 */
export function formatPodTime(ms: number, offsetMin = 0): string {
  const local = new Date(ms + offsetMin * 60_000);
  const p = (n: number, w = 2) => String(n).padStart(w, '0');
  const sign = offsetMin < 0 ? '-' : '+';
  const abs = Math.abs(offsetMin);
  return (
    `${local.getUTCFullYear()}-${p(local.getUTCMonth() + 1)}-${p(local.getUTCDate())}` +
    `T${p(local.getUTCHours())}:${p(local.getUTCMinutes())}:${p(local.getUTCSeconds())}.${p(local.getUTCMilliseconds(), 3)}000` +
    `${sign}${p(Math.floor(abs / 60))}${p(abs % 60)}`
  );
}

export interface StartFacts {
  now: number;
  cursor?: PodCursor;
  uncleanShutdown: boolean;
  /** Configured start time (ms), only when the service has no cursor (first start or reset). */
  startTimeMs?: number;
}

/** The replay a service owes at start, if any. */
export function replayAtStart(f: StartFacts, limits: ModeLimits): Replay | undefined {
  const { now, cursor } = f;
  const tsMs = cursorTimeMs(cursor);
  const covered = coveredUntil(cursor);
  if (tsMs === undefined && covered === undefined) {
    if (f.startTimeMs === undefined) return undefined;
    return clamp({ reason: 'start_time', from: floorHour(f.startTimeMs), until: now, offsetMin: 0 }, now, limits);
  }
  const offsetMin = offsetOf(cursor?.ts);
  // A replay the previous run owed and did not finish is taken up where it stood.
  const owed = cursor?.owed;
  if (owed && owed.from < owed.until) {
    const reason = (FIXED_REASONS.includes(owed.reason) ? owed.reason : 'unclean_shutdown') as ReplayReason;
    if (!f.uncleanShutdown) return clamp({ reason, from: owed.from, until: owed.until, offsetMin: owed.offsetMin }, now, limits);
  }
  // The hour of the committed cursor, or of the last completed archive window if an archive
  // replay was under way (archive frames are unsorted within a window: its max ts proves nothing).
  const from = floorHour(Math.min(tsMs ?? Infinity, covered ?? Infinity), offsetMin);
  if (f.uncleanShutdown) {
    // Crashed again while owing a replay: the older start wins.
    const start = owed && owed.from < owed.until ? Math.min(owed.from, from) : from;
    return clamp({ reason: 'unclean_shutdown', from: start, until: now, offsetMin }, now, limits);
  }
  if (covered !== undefined && now - covered > limits.thresholdMs) return clamp({ reason: 'outage', from, offsetMin }, now, limits);
  return undefined;
}

/** The replay owed after a live session ended, contact having been lost since `lastContact`. */
export function replayAfterDrop(now: number, lastContact: number, cursor: PodCursor, limits: ModeLimits): Replay | undefined {
  if (now - lastContact <= limits.thresholdMs) return undefined;
  const offsetMin = offsetOf(cursor.ts);
  const from = floorHour(Math.min(cursorTimeMs(cursor) ?? lastContact, lastContact), offsetMin);
  return clamp({ reason: 'outage', from, offsetMin }, now, limits);
}

/**
 * Whether the live session will serve only its last hour when it opens: no live contact within
 * the threshold (or none at all). Then the replay must reach "now minus the threshold", a target
 * that moves while the replay runs, on top of any fixed end (unclean shutdown, start_time).
 */
function liveStale(r: Replay, now: number, limits: ModeLimits, lastContact?: number): boolean {
  return r.until === undefined || lastContact === undefined || now - lastContact > limits.thresholdMs;
}

/** Where the replay has to reach before live may take over. */
export function replayTarget(r: Replay, now: number, limits: ModeLimits, lastContact?: number): number {
  return Math.max(r.until ?? -Infinity, liveStale(r, now, limits, lastContact) ? now - limits.thresholdMs : -Infinity);
}

/** Served up to the target, partial windows included: live may take over. */
export function replayCaughtUp(r: Replay, now: number, limits: ModeLimits, lastContact?: number): boolean {
  return Math.max(r.from, r.partialTo ?? -Infinity) >= replayTarget(r, now, limits, lastContact);
}

/** Done for good: whole-hour windows reach the target and no partial hour awaits its whole window. */
export function replayDone(r: Replay, now: number, limits: ModeLimits, lastContact?: number): boolean {
  return r.from >= replayTarget(r, now, limits, lastContact) && (r.partialTo === undefined || r.partialTo <= r.from);
}

/**
 * A moving replay that caught up with partial windows only: what remains is to ask the last
 * hour whole, a fixed end, while live runs.
 */
export function pinPartial(r: Replay): Replay {
  return { ...r, until: Math.max(r.until ?? -Infinity, r.partialTo ?? r.from) };
}

/** Records a window the server ended normally (close 1000, or idle while reading). */
export function windowServed(r: Replay, step: Extract<Step, { mode: 'archive' }>): void {
  if (step.partial) {
    r.partialTo = Math.max(r.partialTo ?? -Infinity, step.to);
    return;
  }
  r.from = Math.max(r.from, step.to);
  if (r.partialTo !== undefined && r.partialTo <= r.from) delete r.partialTo;
}

/**
 * The next session for a service that owes `replay` (or nothing). Windows are at most
 * `windowMs` and whole past hours: `toTime` is an hour boundary older than the staleness, so the
 * server's rounding up of `toTime` never reaches data it does not have yet. While the hour the
 * replay stands in is not wholly available, a partial window (up to what is available) may be
 * asked when `partialAllowed`, so a gap is delivered soon; that hour is asked again whole later.
 * The part not available yet waits while live runs, and live is told when to stop for it.
 */
export function nextStep(replay: Replay | undefined, now: number, limits: ModeLimits, lastContact?: number, partialAllowed = true): Step {
  if (!replay || replayDone(replay, now, limits, lastContact)) return { mode: 'live' };
  if (replay.notBefore !== undefined && now < replay.notBefore) return { mode: 'live', until: replay.notBefore };
  const off = replay.offsetMin;
  const stale = liveStale(replay, now, limits, lastContact);
  const available = now - limits.stalenessMs;
  const aim = Math.max(replay.until ?? -Infinity, stale ? available : -Infinity);
  const wanted = Math.min(aim, replay.from + limits.windowMs);
  const archive = (to: number, partial: boolean): Step => ({ mode: 'archive', since: replay.from, to, offsetMin: off, partial });
  const whole = ceilHour(wanted, off);
  if (whole <= available) return archive(whole, false);
  const availableWhole = floorHour(available, off);
  if (availableWhole > replay.from) return archive(availableWhole, false);
  // The hour of `from` is not wholly available yet. Caught up through partial windows: live
  // takes over, and the hour is asked whole once available.
  const served = Math.max(replay.from, replay.partialTo ?? -Infinity);
  if (served >= replayTarget(replay, now, limits, lastContact)) return { mode: 'live', until: whole + limits.stalenessMs };
  const partialTo = Math.min(wanted, available);
  // Worth a session of its own (each one re-reads the hour from its start). The first partial
  // window of an hour: everything wanted is there, or live cannot cover the gap anyway, or it
  // adds at least as much as the wait for the rest. A further one only for a large gain: what
  // it would add is what arrived while the first was read, and the whole hour brings it anyway.
  const first = served === replay.from;
  const gain = partialTo - served;
  const worth = first ? partialTo >= wanted || stale || gain >= Math.max(limits.stalenessMs, 1) : gain >= Math.max(limits.stalenessMs, FURTHER_PARTIAL_MIN_GAIN_MS);
  if (partialAllowed && partialTo > served && worth) return archive(partialTo, true);
  const partialAt = partialAllowed && first && served < wanted ? wanted + limits.stalenessMs : Infinity;
  return { mode: 'live', until: Math.min(whole + limits.stalenessMs, partialAt) };
}

function clamp(r: Replay, now: number, limits: ModeLimits): Replay {
  // A little inside the 30 days so the server does not refuse the window as too old.
  const oldest = floorHour(now - limits.maxAgeMs, r.offsetMin) + HOUR;
  if (r.from >= oldest) return r;
  return { ...r, from: oldest, clampedFrom: r.from };
}

/**
 * The URL of one session: live without time parameters, archive with `sinceTime`/`toTime`.
 * URLSearchParams percent-encodes `+` and `:`; a raw `+` in an offset would read as a space.
 */
export function podStreamUrl(endpoint: URL, clusterId: string, service: string, archive?: { since: number; to: number; offsetMin?: number }): URL {
  const url = new URL(endpoint);
  url.searchParams.set('cid', clusterId);
  url.searchParams.set('type', service);
  if (archive) {
    url.searchParams.set('sinceTime', formatPodTime(archive.since, archive.offsetMin));
    url.searchParams.set('toTime', formatPodTime(archive.to, archive.offsetMin));
  }
  return url;
}
