/**
 * Timestamps as the vendors and operators write them: RFC 3339 / ISO 8601 with `Z` or a numeric
 * offset in either style (`-0500` or `-05:00`), with 0 to 9 fractional digits. POD's `ts` is
 * local time with an offset and microseconds (`2024-05-22T12:10:03.058340-0700`); a naive
 * `new Date()` loses the sub-millisecond part and rejects nothing, so parse by hand.
 */
export interface EventTime {
  /** Seconds since the epoch. */
  sec: number;
  /** Nanoseconds within the second, 0..999,999,999. */
  nsec: number;
}

/**
 * Largest second a record time may carry: Fluent's EventTime holds unsigned 32-bit seconds
 * (plugin/output/forward/event-time.ts), and 0xFFFFFFFE and above are Fluent Bit's group markers.
 */
export const EVENT_TIME_MAX_SEC = 0xfffffffd;

/**
 * The nearest time an EventTime can carry: seconds clamped to 0..EVENT_TIME_MAX_SEC (1970-01-01 to
 * 2106-02-07), nanoseconds to 0..999,999,999. A vendor event dated before 1970 or after 2106 is
 * still delivered; `clamped` says its record time is not its own (the vendor's time stays in the
 * message). Not finite: the receipt time `now` (ms).
 */
export function clampEventTime(t: EventTime, now: number): { time: EventTime; clamped: boolean } {
  if (Number.isInteger(t.sec) && t.sec >= 0 && t.sec <= EVENT_TIME_MAX_SEC && Number.isInteger(t.nsec) && t.nsec >= 0 && t.nsec <= 999_999_999) {
    return { time: t, clamped: false };
  }
  if (!Number.isFinite(t.sec) || !Number.isFinite(t.nsec)) {
    return { time: { sec: Math.floor(now / 1000), nsec: (now % 1000) * 1_000_000 }, clamped: true };
  }
  if (t.sec < 0) return { time: { sec: 0, nsec: 0 }, clamped: true };
  if (t.sec > EVENT_TIME_MAX_SEC) return { time: { sec: EVENT_TIME_MAX_SEC, nsec: 999_999_999 }, clamped: true };
  return { time: { sec: Math.floor(t.sec), nsec: Math.min(999_999_999, Math.max(0, Math.floor(t.nsec))) }, clamped: true };
}

const ISO =
  /^(\d{4})-(\d{2})-(\d{2})[Tt ](\d{2}):(\d{2})(?::(\d{2})(?:[.,](\d{1,9}))?)?(?:([Zz])|([+-])(\d{2}):?(\d{2}))$/;

/** Parses an ISO 8601 timestamp with an explicit zone; undefined when it is not one. */
export function parseTimestamp(text: string): EventTime | undefined {
  if (typeof text !== 'string') return undefined;
  const m = ISO.exec(text.trim());
  if (!m) return undefined;
  const [, y, mo, d, h, mi, s = '0', frac = '', z, sign, oh, om] = m;
  const year = +y!, month = +mo!, day = +d!, hour = +h!, minute = +mi!, second = +s;
  if (month < 1 || month > 12 || day < 1 || day > 31 || hour > 23 || minute > 59 || second > 60) return undefined;
  const base = Date.UTC(year, month - 1, day, hour, minute, Math.min(second, 59));
  // Date.UTC rolls 31 February over into March: reject dates that do not exist.
  const check = new Date(base);
  if (check.getUTCFullYear() !== year || check.getUTCMonth() !== month - 1 || check.getUTCDate() !== day) return undefined;
  let offsetMin = 0;
  if (!z) {
    const ohn = +oh!, omn = +om!;
    if (ohn > 23 || omn > 59) return undefined;
    offsetMin = (ohn * 60 + omn) * (sign === '-' ? -1 : 1);
  }
  const sec = Math.floor(base / 1000) - offsetMin * 60;
  const nsec = frac ? Number(frac.padEnd(9, '0')) : 0;
  return { sec, nsec };
}

/** Milliseconds since the epoch, or undefined. */
export function parseTimestampMs(text: string): number | undefined {
  const t = parseTimestamp(text);
  return t === undefined ? undefined : t.sec * 1000 + Math.floor(t.nsec / 1e6);
}

export function eventTimeFromMs(ms: number): EventTime {
  const sec = Math.floor(ms / 1000);
  return { sec, nsec: Math.round(ms - sec * 1000) * 1e6 };
}

export function eventTimeToMs(t: EventTime): number {
  return t.sec * 1000 + Math.floor(t.nsec / 1e6);
}

/** RFC 3339 UTC with milliseconds, e.g. 2026-11-23T05:00:00.000Z. */
export function formatUtc(ms: number): string {
  return new Date(ms).toISOString();
}
