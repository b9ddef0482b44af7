/**
 * The PoD cursor: what a committed batch tells the next start.
 *
 * `ts` is the highest event time acknowledged, kept as the server wrote it and parsed to full
 * (microsecond) precision; events arrive unsorted, so it is a maximum, never "the last one". Two wall-clock marks say how far the stream is known to be covered,
 * which the event times alone cannot say on a quiet stream (audit may be silent for days):
 * `liveAt`, the last contact of a live session whose frames up to then are committed, and
 * `archivedUntil`, the end of the last archive window delivered completely.
 */
import type { EventTime } from '../../util/time.ts';

export interface PodCursor {
  /** Layout version of this record. */
  v: 1;
  /** Highest `ts` acknowledged, as written by the server (local time, offset, microseconds). */
  ts?: string;
  /** `ts` parsed: seconds since the epoch… */
  sec?: number;
  /** …and nanoseconds within the second. */
  nsec?: number;
  /** Wall-clock ms of the last contact of a live session whose frames up to then are in this or an earlier batch. */
  liveAt?: number;
  /** Wall-clock ms: every event up to here was served by completed archive windows. */
  archivedUntil?: number;
  /**
   * An archive replay still owed (unclean shutdown, start_time), so a restart before it is done
   * takes it up again instead of forgetting it: replay events from `from` to `until` (ms).
   */
  owed?: { reason: string; from: number; until: number; offsetMin: number };
  /**
   * Explicit gaps, newest last (at most MAX_GAPS): intervals (ms) the server refused to replay
   * because they were older than its 30 days. Never silently skipped: kept for `state show`.
   */
  gaps?: Array<{ from: number; until: number; reason: string }>;
}

export const MAX_GAPS = 20;

export function compareTime(a: EventTime, b: EventTime): number {
  return a.sec - b.sec || a.nsec - b.nsec;
}

export function cursorTime(c: PodCursor | undefined): EventTime | undefined {
  return c?.sec === undefined || c.nsec === undefined ? undefined : { sec: c.sec, nsec: c.nsec };
}

export function cursorTimeMs(c: PodCursor | undefined): number | undefined {
  const t = cursorTime(c);
  return t === undefined ? undefined : t.sec * 1000 + Math.floor(t.nsec / 1e6);
}

/** The time up to which the stream is known covered (live contact or completed archive), if any. */
export function coveredUntil(c: PodCursor | undefined): number | undefined {
  if (!c) return undefined;
  const marks = [c.liveAt, c.archivedUntil].filter((x): x is number => typeof x === 'number');
  return marks.length ? Math.max(...marks) : cursorTimeMs(c);
}

/**
 * Accepts a cursor read back from the state store; anything unrecognisable is treated as no
 * cursor (with the reason) rather than trusted.
 */
export function readCursor(raw: unknown): { cursor?: PodCursor; problem?: string } {
  if (raw === undefined || raw === null) return {};
  if (typeof raw !== 'object' || (raw as { v?: unknown }).v !== 1) return { problem: `unknown cursor layout ${JSON.stringify(raw).slice(0, 120)}` };
  const c = raw as Record<string, unknown>;
  const num = (k: string) => (c[k] === undefined || (typeof c[k] === 'number' && Number.isFinite(c[k])) ? true : false);
  if (!['sec', 'nsec', 'liveAt', 'archivedUntil'].every(num)) return { problem: 'cursor has non-numeric times' };
  if (c.ts !== undefined && typeof c.ts !== 'string') return { problem: 'cursor ts is not a string' };
  const owed = c.owed as Record<string, unknown> | undefined;
  if (owed !== undefined && (typeof owed !== 'object' || owed === null || !['from', 'until', 'offsetMin'].every((k) => typeof owed[k] === 'number'))) {
    return { problem: 'cursor has an unreadable owed replay' };
  }
  return { cursor: raw as PodCursor };
}

/**
 * Tracks the cursor a service's batches advance to. `observe` raises the maximum `ts`;
 * `snapshot` is what a batch carries (a copy: the batch is committed later, in order).
 */
export class CursorTracker {
  #c: PodCursor;

  constructor(start?: PodCursor) {
    this.#c = start ? { ...start } : { v: 1 };
  }

  /** Starts again from `start` (the cursor read back from the state store), or from nothing. */
  restore(start?: PodCursor): void {
    this.#c = start ? { ...start } : { v: 1 };
  }

  observe(ts: string, time: EventTime): void {
    const cur = cursorTime(this.#c);
    if (cur === undefined || compareTime(time, cur) > 0) {
      this.#c.ts = ts;
      this.#c.sec = time.sec;
      this.#c.nsec = time.nsec;
    }
  }

  markLive(at: number): void {
    if (this.#c.liveAt === undefined || at > this.#c.liveAt) this.#c.liveAt = at;
  }

  markArchived(until: number): void {
    if (this.#c.archivedUntil === undefined || until > this.#c.archivedUntil) this.#c.archivedUntil = until;
  }

  /** Records an interval that cannot be replayed (see PodCursor.gaps). */
  addGap(gap: { from: number; until: number; reason: string }): void {
    const gaps = [...(this.#c.gaps ?? [])];
    const last = gaps.at(-1);
    if (last && last.reason === gap.reason && last.until === gap.from) last.until = gap.until;
    else gaps.push({ ...gap });
    this.#c.gaps = gaps.slice(-MAX_GAPS);
  }

  /** Records (or clears) the fixed-end replay still owed. */
  setOwed(owed: PodCursor['owed']): void {
    if (owed) this.#c.owed = { ...owed };
    else delete this.#c.owed;
  }

  get current(): Readonly<PodCursor> {
    return this.#c;
  }

  snapshot(): PodCursor {
    return { ...this.#c, ...(this.#c.owed ? { owed: { ...this.#c.owed } } : {}), ...(this.#c.gaps ? { gaps: this.#c.gaps.map((g) => ({ ...g })) } : {}) };
  }
}
