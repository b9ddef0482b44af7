/**
 * From one element of a TAP response array to a source event (SourceEvent, sources/source.ts).
 *
 * Parsing is lenient because the vendor's documentation does not match the data it sends:
 * nulls anywhere, `recipient`/`fromAddress` as array or string, `completelyRewritten` as boolean or
 * string, enum case that varies. Nothing here rejects an event for its fields: its identity is a
 * hash of its content and its time falls back to the receipt time, so any object will do. Only an
 * element that is not a JSON object, or one nested deeper than MAX_EVENT_DEPTH (its hash and its
 * message could not be made without overflowing the stack), is refused: it goes to the
 * dead-letter file, whole, with the reason.
 *
 * An event's time is taken as written, whatever its year: the cursor moves by windows, never by
 * event times, and the output encoder is the one that fits a time into its format.
 */
import type { RejectedInput, SourceEvent } from '../source.ts';
import { eventTimeFromMs, parseTimestamp } from '../../util/time.ts';
import type { TapServiceName } from './config.ts';
import { MAX_EVENT_DEPTH, NestingTooDeepError, contentKey } from './identity.ts';

export { MAX_EVENT_DEPTH } from './identity.ts';

/** The field that carries the event's own time: the click, or the delivery/quarantine. */
export const TIME_FIELD: Record<TapServiceName, 'clickTime' | 'messageTime'> = {
  clicksBlocked: 'clickTime',
  clicksPermitted: 'clickTime',
  messagesBlocked: 'messageTime',
  messagesDelivered: 'messageTime',
};

export type BuiltEvent = { event: SourceEvent } | { rejected: RejectedInput };

/**
 * `message` is `JSON.stringify` of the element as it came (key order kept), `time` is its
 * clickTime/messageTime (receipt time when absent or unparsable), `key` its content hash.
 */
export function buildEvent(service: TapServiceName, element: unknown, receivedAt: number): BuiltEvent {
  if (element === null || typeof element !== 'object' || Array.isArray(element)) {
    return {
      rejected: {
        reason: `${service}: array element is ${element === null ? 'null' : Array.isArray(element) ? 'an array' : typeof element}, not an event object`,
        raw: jsonText(element),
      },
    };
  }
  const raw = element as Record<string, unknown>;
  let key: string;
  try {
    key = contentKey(raw);
  } catch (err) {
    if (!(err instanceof NestingTooDeepError)) throw err;
    return { rejected: { reason: `${service}: event nested deeper than ${MAX_EVENT_DEPTH} levels`, raw: jsonText(raw) } };
  }
  const stamp = raw[TIME_FIELD[service]];
  const time = (typeof stamp === 'string' ? parseTimestamp(stamp) : undefined) ?? eventTimeFromMs(receivedAt);
  return { event: { key, time, message: JSON.stringify(raw) } };
}

/**
 * `JSON.stringify` of a parsed JSON value, without recursion: the same text at any depth (a
 * rejected element may nest far deeper than the native one can walk).
 */
export function jsonText(value: unknown): string {
  const out: string[] = [];
  /** Containers being written: keys (objects only), the next index, members written so far. */
  const stack: Array<{ obj: Record<string, unknown> | unknown[]; keys?: string[]; i: number; written: number }> = [];
  const open = (v: unknown): void => {
    if (v === null || typeof v !== 'object') {
      out.push(JSON.stringify(v) ?? 'null');
    } else if (Array.isArray(v)) {
      out.push('[');
      stack.push({ obj: v, i: 0, written: 0 });
    } else {
      out.push('{');
      stack.push({ obj: v as Record<string, unknown>, keys: Object.keys(v), i: 0, written: 0 });
    }
  };
  open(value);
  while (stack.length > 0) {
    const top = stack[stack.length - 1]!;
    if (top.keys === undefined) {
      const arr = top.obj as unknown[];
      if (top.i >= arr.length) {
        out.push(']');
        stack.pop();
        continue;
      }
      if (top.written++ > 0) out.push(',');
      const v = arr[top.i++];
      open(v === undefined || typeof v === 'function' ? null : v);
    } else {
      const obj = top.obj as Record<string, unknown>;
      // Keys whose value JSON cannot hold are left out, as JSON.stringify does.
      let k: string | undefined;
      while (top.i < top.keys.length) {
        const cand = top.keys[top.i++]!;
        const v = obj[cand];
        if (v !== undefined && typeof v !== 'function' && typeof v !== 'symbol') {
          k = cand;
          break;
        }
      }
      if (k === undefined) {
        out.push('}');
        stack.pop();
        continue;
      }
      if (top.written++ > 0) out.push(',');
      out.push(JSON.stringify(k), ':');
      open(obj[k]);
    }
  }
  return out.join('');
}
