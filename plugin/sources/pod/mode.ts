/**
 * Live or archive: which session a service opens next (proofpoint-pod.md §0.1–0.3).
 *
 * Without `sinceTime` the server streams live and, after a drop shorter than an hour, resumes
 * from where the previous session dropped; after a longer gap it serves only the last hour. The
 * resume point lives on the server and is not acknowledged by the client, so whatever the
 * sidecar held in memory when it died is not sent again in live mode. Any `sinceTime` switches
 * to archive mode: `sinceTime` floored and `toTime` ceiled to the hour, data at least 30
 * minutes stale, at most 30 days back. Only one session per token and type may be open (409),
 * so a replay runs before or between live sessions, never beside one.
 *
 * Hence: stream live by default; replay a gap in archive mode when
 *  - the previous process died (unclean shutdown): from the hour of the committed cursor up to
 *    the moment of this start, the part younger than the staleness being replayed once it is
 *    available, while live runs meanwhile;
 *  - contact was lost for longer than the threshold (outage, at start or on reconnect): until the
 *    live session's one hour takes over;
 *  - a `start_time` is configured and there is no cursor (first start, or state reset): from it
 *    up to the moment of this start.
 * Overlaps (hour rounding, live resume, repeated events) are removed by de-duplication.
 */
import { coveredUntil, cursorTimeMs, type PodCursor } from './cursor.ts';

const HOUR = 3600_000;

export type ReplayReason = 'unclean_shutdown' | 'outage' | 'start_time' | 'live_start';

export interface Replay {
  reason: ReplayReason;
  /** Next event time (ms) to replay from; advances as windows complete. */
  from: number;
  /** Fixed end (ms), or undefined: "until live takes over" (now - threshold, moving). */
  until?: number;
  /** Offset (minutes east of UTC) in which windows are written and hour-rounded: the cluster's. */
  offsetMin: number;
  /** Events before this time could not be replayed (older than 30 days). */
  clampedFrom?: number;
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
  | { mode: 'archive'; since: number; to: number; offsetMin: number }
  /** Live; `until` set: end the session then (a deferred replay becomes available). */
  | { mode: 'live'; until?: number };

/** Start of the hour containing `ms`, in the given offset (the server rounds in its own). */
export function floorHour(ms: number, offsetMin = 0): number {
  const off = offsetMin * 60_000;
  return Math.floor((ms + off) / HOUR) * HOUR - off;
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
    const reason: ReplayReason = owed.reason === 'start_time' || owed.reason === 'live_start' ? owed.reason : 'unclean_shutdown';
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

export function replayDone(r: Replay, now: number, limits: ModeLimits, lastContact?: number): boolean {
  return r.from >= replayTarget(r, now, limits, lastContact);
}

/**
 * The next session for a service that owes `replay` (or nothing). Windows are at most
 * `windowMs` (the server widens them to whole hours) and ask only for data the server already has (older than the
 * staleness). Chasing a moving target, a window asks for everything available, so the replay
 * gains on the clock and ends once within the threshold; the part of a fixed end that is not
 * available yet waits while live runs, and live is told when to stop for it.
 */
export function nextStep(replay: Replay | undefined, now: number, limits: ModeLimits, lastContact?: number): Step {
  if (!replay || replayDone(replay, now, limits, lastContact)) return { mode: 'live' };
  const stale = liveStale(replay, now, limits, lastContact);
  const available = now - limits.stalenessMs;
  const aim = Math.max(replay.until ?? -Infinity, stale ? available : -Infinity);
  const wanted = Math.min(aim, replay.from + limits.windowMs);
  const archive = (to: number): Step => ({ mode: 'archive', since: replay.from, to, offsetMin: replay.offsetMin });
  if (available >= wanted) return archive(wanted);
  // Part of the window is not served yet. Take the available part when live cannot cover the
  // gap anyway, or when it is worth a session of its own (at least as long as the wait for the
  // rest); otherwise stream live and come back when the whole window is available.
  if (available > replay.from && (stale || available - replay.from >= Math.max(limits.stalenessMs, 1))) return archive(available);
  return { mode: 'live', until: wanted + limits.stalenessMs };
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
