/** The committed position of a TAP service, as the pipeline stores it (JSON). */
import { formatUtc, parseTimestampMs } from '../../util/time.ts';
import { floorSec, type Positions } from './window.ts';

export interface TapCursor {
  v: 1;
  /** Every window before this time was queried at least once. */
  collected_to: string;
  /** Every window before this time was queried after it settled (late-indexed events are in). */
  settled_to: string;
}

export function toCursor(p: Positions): TapCursor {
  return { v: 1, collected_to: formatUtc(p.collectedTo), settled_to: formatUtc(p.settledTo) };
}

/** Positions from a stored cursor, or undefined when it is not one of ours. */
export function fromCursor(c: unknown): Positions | undefined {
  if (c === null || typeof c !== 'object') return undefined;
  const o = c as Partial<TapCursor>;
  if (o.v !== 1 || typeof o.collected_to !== 'string' || typeof o.settled_to !== 'string') return undefined;
  const collectedTo = parseTimestampMs(o.collected_to);
  const settledTo = parseTimestampMs(o.settled_to);
  if (collectedTo === undefined || settledTo === undefined) return undefined;
  return { collectedTo: floorSec(collectedTo), settledTo: floorSec(Math.min(settledTo, collectedTo)) };
}
