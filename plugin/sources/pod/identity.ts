/**
 * From one PoD frame to one event: identity, time and the record's `message`.
 *
 * Each text frame carries one JSON object. It must have its service's id field (`guid` for
 * message and audit, `id` for maillog) and a `ts`: the cluster's local time with a numeric offset
 * in either style (`-0700`, `-07:00`) and microseconds, parsed by hand (util/time.ts), never with
 * `new Date()`. A frame without them cannot be ordered or traced: it is rejected (dead-lettered by
 * the pipeline) and the session goes on.
 *
 * The de-dup key is NOT the id field: nothing says the service emits one event per `guid` (a
 * message can be logged at several stages, a maillog `id` is a sendmail line's, and sample
 * events repeat a `guid` with different content), and a key that merges two different events
 * loses one. The key is a hash of the frame's text (trailing whitespace aside), so only an exact
 * repeat of the same event is dropped. It costs about 2 µs per 1.5 KB event (bench/pod.ts); a canonical form
 * (sorted keys) would also merge re-serialised copies but costs about 9 µs, and a copy the
 * server re-serialises differently is a duplicate delivered, never a loss.
 */
import { hash } from 'node:crypto';
import type { SourceEvent } from '../source.ts';
import { parseTimestamp, type EventTime } from '../../util/time.ts';
import type { PodServiceName } from './config.ts';

/** The id field every event of a service carries (not its de-dup key: see frameKey). */
export const POD_KEY_FIELD: Record<PodServiceName, 'guid' | 'id'> = {
  message: 'guid',
  maillog: 'id',
  audit: 'guid',
};

/** The de-dup key of a frame's text: sha256, base64url (43 characters). */
export function frameKey(text: string): string {
  const end = text.length;
  let i = end;
  while (i > 0 && isSpace(text.charCodeAt(i - 1))) i--;
  // One-shot crypto.hash: about a third cheaper than createHash().update().digest() here.
  return hash('sha256', i === end ? text : text.slice(0, i), 'base64url');
}

function isSpace(c: number): boolean {
  return c === 32 || c === 10 || c === 13 || c === 9;
}

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
  const id = obj[field];
  if (typeof id !== 'string' || id.trim() === '' || id.length > MAX_KEY_LENGTH) {
    return { ok: false, reason: `no usable "${field}" (${describe(id)})` };
  }
  const ts = obj.ts;
  if (typeof ts !== 'string') return { ok: false, reason: `no usable "ts" (${describe(ts)})` };
  const time = parseTimestamp(ts);
  if (time === undefined) return { ok: false, reason: `unparsable "ts" ${JSON.stringify(ts.slice(0, 64))}` };
  return { ok: true, frame: { event: { key: frameKey(text), time, message: recordMessage(text) }, ts, time } };
}

/**
 * The record's `message`: the frame text as it came, byte-faithful, unless it contains a line
 * break (pretty-printed JSON), which would split it in line-oriented outputs: then the whitespace
 * between tokens is removed (compactJson). Line breaks inside JSON strings are always escaped, so
 * nothing else changes: numbers, key order and escapes stay as the server wrote them.
 */
export function recordMessage(text: string): string {
  return text.includes('\n') || text.includes('\r') ? compactJson(text) : text;
}

/**
 * Valid JSON text without the whitespace outside its strings. One pass, no recursion: a frame
 * nested as deep as the server likes (JSON.parse is iterative in V8, JSON.stringify is not and
 * overflows the stack near 10,000 levels) is delivered, never a crash or a dead letter.
 */
export function compactJson(text: string): string {
  let out = '';
  let from = 0;
  let inString = false;
  for (let i = 0; i < text.length; i++) {
    const c = text.charCodeAt(i);
    if (inString) {
      if (c === 92 /* \\ */) i++;
      else if (c === 34 /* " */) inString = false;
    } else if (c === 34) {
      inString = true;
    } else if (isSpace(c)) {
      out += text.slice(from, i);
      from = i + 1;
    }
  }
  return out + text.slice(from);
}

function describe(v: unknown): string {
  if (v === undefined) return 'missing';
  if (v === null) return 'null';
  if (typeof v === 'string') return v.trim() === '' ? 'empty' : v.length > MAX_KEY_LENGTH ? `${v.length} characters` : 'string';
  return typeof v;
}
