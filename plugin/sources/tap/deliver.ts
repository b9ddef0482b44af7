/**
 * A window's answer as batches: its events for each service it concerns, in batches of at most
 * `max_events_per_batch`, parsed as they are read. Only the last batch of a service carries its
 * cursor, and it is yielded only once the whole body was read and found to be the documented
 * answer; a crash mid-window re-queries the window, and the committed de-dup keys drop what was
 * already delivered.
 */
import type { Batch, RejectedInput, SourceEvent } from '../source.ts';
import type { TapServiceName } from './config.ts';
import type { WindowBody, WindowPart } from './client.ts';
import type { TapCursor } from './cursor.ts';
import type { Positions } from './window.ts';
import type { CycleStats } from './stats.ts';
import { buildEvent } from './event.ts';

/** A window's events for one service, with the cursor its last batch carries. */
export interface Routed {
  svc: TapServiceName;
  /** Positions before the window: restored when its body turns out unreadable. */
  before: Positions;
  cursor: TapCursor;
  /** The last run of elements read, held back until the next one (or the end) says whether it is the last. */
  held?: WindowPart;
  /**
   * Elements the event builder refused, dead-lettered with the last batch: an answer found
   * unreadable further on is asked again, and its bad elements must be dead-lettered once.
   */
  rejected: RejectedInput[];
}

/**
 * Reads the window's body and yields its batches; the pipeline not asking for the next batch
 * stops the reading. Throws what WindowBody.parts throws (then nothing held back is yielded).
 */
export async function* windowBatches(
  answer: WindowBody,
  routed: Routed[],
  cycle: CycleStats,
  receivedAt: number,
  maxEventsPerBatch: number,
): AsyncGenerator<Batch<TapCursor>> {
  const bySvc = new Map(routed.map((r) => [r.svc, r]));
  const parts = answer.parts(maxEventsPerBatch);
  try {
    for (;;) {
      const r = await parts.next();
      if (r.done) break;
      const route = bySvc.get(r.value.service);
      if (route === undefined) continue; // a service not enabled, or already past this window
      const held = route.held;
      route.held = r.value;
      if (held) yield batchOf(route, held, cycle, receivedAt, false);
    }
  } catch (err) {
    for (const route of routed) {
      route.held = undefined;
      route.rejected = [];
    }
    throw err;
  }
  const last = routed.map((route) => batchOf(route, route.held ?? { service: route.svc, elements: [] }, cycle, receivedAt, true));
  for (const route of routed) route.held = undefined;
  cycle.seal();
  yield* last;
}

function batchOf(route: Routed, part: WindowPart, cycle: CycleStats, receivedAt: number, last: boolean): Batch<TapCursor> {
  const events: SourceEvent[] = [];
  for (const el of part.elements) {
    const built = buildEvent(route.svc, el, receivedAt);
    if ('event' in built) events.push(built.event);
    else route.rejected.push(built.rejected);
  }
  const rejected = last ? route.rejected.splice(0) : [];
  return {
    service: route.svc,
    pullingId: cycle.pullingId,
    events,
    ...(last ? { cursor: route.cursor } : {}),
    ...(rejected.length > 0 ? { rejected } : {}),
    onCommitted: cycle.expect(),
  };
}
