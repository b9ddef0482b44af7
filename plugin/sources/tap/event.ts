/**
 * From one element of a TAP response array to a source event (design.md §3).
 *
 * Parsing is lenient because the documentation does not match the data (proofpoint-tap.md §2.7):
 * nulls anywhere, `recipient`/`fromAddress` as array or string, `completelyRewritten` as boolean or
 * string, enum case that varies. Nothing here rejects an event for its fields: only an element
 * that is not a JSON object is refused (it goes to the dead-letter file, whole).
 */
import type { RejectedInput, SourceEvent } from '../source.ts';
import { eventTimeFromMs, parseTimestamp } from '../../util/time.ts';
import type { TapServiceName } from './config.ts';
import { contentKey } from './identity.ts';

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
        raw: JSON.stringify(element) ?? String(element),
      },
    };
  }
  const raw = element as Record<string, unknown>;
  const stamp = raw[TIME_FIELD[service]];
  const time = (typeof stamp === 'string' ? parseTimestamp(stamp) : undefined) ?? eventTimeFromMs(receivedAt);
  return { event: { key: contentKey(raw), time, message: JSON.stringify(raw) } };
}

