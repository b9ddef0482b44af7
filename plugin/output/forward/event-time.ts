/**
 * Fluent's EventTime, written by hand: msgpack cannot say it through msgpackr, which refuses
 * extension type 0. The layout is fixext8 with type 0 and an 8-byte
 * payload, seconds then nanoseconds, both unsigned 32-bit big-endian:
 *
 *   d7 00 <sec u32 BE> <nsec u32 BE>
 *
 * Fluent Bit reads it as `sec + nsec / 1e9`; seconds 0xFFFFFFFF and 0xFFFFFFFE are its group
 * markers and must never appear as a record's time.
 */
import { EVENT_TIME_MAX_SEC as MAX_SEC, type EventTime } from '../../util/time.ts';

export const EVENT_TIME_BYTES = 10;


/** Throws a RangeError naming the bad field when `t` cannot be written as an EventTime. */
export function checkEventTime(t: EventTime): void {
  if (!Number.isInteger(t.sec) || t.sec < 0 || t.sec > MAX_SEC) {
    throw new RangeError(`EventTime seconds must be an integer in 0..${MAX_SEC}, got ${t.sec}`);
  }
  if (!Number.isInteger(t.nsec) || t.nsec < 0 || t.nsec > 999_999_999) {
    throw new RangeError(`EventTime nanoseconds must be an integer in 0..999999999, got ${t.nsec}`);
  }
}

/** Writes the 10 bytes at `offset`; returns the offset after them. */
export function writeEventTime(target: Uint8Array, offset: number, t: EventTime): number {
  checkEventTime(t);
  target[offset] = 0xd7;
  target[offset + 1] = 0x00;
  writeU32(target, offset + 2, t.sec);
  writeU32(target, offset + 6, t.nsec);
  return offset + EVENT_TIME_BYTES;
}

export function encodeEventTime(t: EventTime): Buffer {
  const out = Buffer.allocUnsafe(EVENT_TIME_BYTES);
  writeEventTime(out, 0, t);
  return out;
}

function writeU32(target: Uint8Array, offset: number, v: number): void {
  target[offset] = v >>> 24;
  target[offset + 1] = (v >>> 16) & 0xff;
  target[offset + 2] = (v >>> 8) & 0xff;
  target[offset + 3] = v & 0xff;
}
