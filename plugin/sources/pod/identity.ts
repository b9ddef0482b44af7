/**
 * From one PoD frame to one event: identity, time and the record's `message` (design.md §3).
 *
 * Each text frame carries one JSON object (proofpoint-pod.md §1.4). Its identity is `guid` for
 * message and audit and `id` for maillog (§1.5); `filter.origGuid` links split messages but each
 * split has its own `guid`. Its time is `ts`: the cluster's local time with a numeric offset in
 * either style (`-0700`, `-07:00`) and microseconds, so it is parsed by hand (util/time.ts), never
 * with `new Date()`. A frame without a usable identity or time cannot be de-duplicated or ordered:
 * it is rejected (dead-lettered by the pipeline) and the session goes on.
 */
import type { SourceEvent } from '../source.ts';
import { parseTimestamp, type EventTime } from '../../util/time.ts';
import type { PodServiceName } from './config.ts';

/** The field that identifies an event of each service. */
export const POD_KEY_FIELD: Record<PodServiceName, 'guid' | 'id'> = {
  message: 'guid',
  maillog: 'id',
  audit: 'guid',
};

export interface ParsedFrame {
  event: SourceEvent & { key: string };
  /** `ts` as the server wrote it. */
  ts: string;
  time: EventTime;
}

export type FrameResult = { ok: true; frame: ParsedFrame } | { ok: false; reason: string };

/** Longest identity accepted; real ones are 22 to 36 characters. */
const MAX_KEY_LENGTH = 256;

export function parseFrame(service: PodServiceName, text: string): FrameResult {
  let value: unknown;
  try {
    value = JSON.parse(text);
  } catch (err) {
    return { ok: false, reason: `not JSON: ${(err as Error).message}` };
  }
  if (value === null || typeof value !== 'object' || Array.isArray(value)) {
    return { ok: false, reason: `not a JSON object (${value === null ? 'null' : Array.isArray(value) ? 'array' : typeof value})` };
  }
  const obj = value as Record<string, unknown>;
  const field = POD_KEY_FIELD[service];
  const key = obj[field];
  if (typeof key !== 'string' || key.trim() === '' || key.length > MAX_KEY_LENGTH) {
    return { ok: false, reason: `no usable "${field}" (${describe(key)})` };
  }
  const ts = obj.ts;
  if (typeof ts !== 'string') return { ok: false, reason: `no usable "ts" (${describe(ts)})` };
  const time = parseTimestamp(ts);
  if (time === undefined) return { ok: false, reason: `unparsable "ts" ${JSON.stringify(ts.slice(0, 64))}` };
  return { ok: true, frame: { event: { key, time, message: recordMessage(text, value) }, ts, time } };
}

/**
 * The record's `message`: the frame text as it came, byte-faithful, unless it contains a line
 * break (pretty-printed JSON), which would split it in line-oriented outputs: then it is
 * re-serialised compactly. Line breaks inside JSON strings are always escaped, so only
 * insignificant whitespace changes.
 */
export function recordMessage(text: string, parsed: unknown): string {
  return text.includes('\n') || text.includes('\r') ? JSON.stringify(parsed) : text;
}

function describe(v: unknown): string {
  if (v === undefined) return 'missing';
  if (v === null) return 'null';
  if (typeof v === 'string') return v.trim() === '' ? 'empty' : v.length > MAX_KEY_LENGTH ? `${v.length} characters` : 'string';
  return typeof v;
}
