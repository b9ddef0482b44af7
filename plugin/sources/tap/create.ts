/**
 * Builds the `proofpoint_tap` source, and orders its cursors. Loaded by the descriptor (index.ts)
 * only when a source is created or a feed changes hands: a standby replica never loads it.
 */
import type { Dispatcher } from 'undici';
import type { Source } from '../source.ts';
import { systemClock, type Clock } from '../../util/clock.ts';
import { tapStartTimes, type TapInputConfig } from './config.ts';
import { assertStartTimes } from '../start-time.ts';
import { TapSource, fromCursor, type TapCursor } from './source.ts';

export interface CreateTapSourceOptions {
  /** undici dispatcher; default: EnvHttpProxyAgent (HTTPS_PROXY / NO_PROXY), TLS verified. */
  dispatcher?: Dispatcher;
  /** The clock that decides whether a start time is in the future (default: the system clock). */
  clock?: Clock;
}

/**
 * Builds the source. Throws StartTimeError (101) when a `start_time_in_utc` is in the future: the
 * Devo collector refuses that at config time too.
 */
export function createTapSource(cfg: TapInputConfig, opts: CreateTapSourceOptions = {}): Source<TapCursor> {
  assertStartTimes(tapStartTimes(cfg), (opts.clock ?? systemClock).now());
  return new TapSource(cfg, { dispatcher: opts.dispatcher });
}

/**
 * Orders two TAP cursors of one service by how far they got (collected, then settled); -1, 0, 1.
 * An unreadable cursor counts as no progress. Coordination uses it to start a feed taken over
 * from another replica at the later of the local cursor and the one carried by the Lease.
 */
export function compareTapCursors(a: unknown, b: unknown): number {
  const pa = fromCursor(a);
  const pb = fromCursor(b);
  if (!pa || !pb) return pa ? 1 : pb ? -1 : 0;
  return Math.sign(pa.collectedTo - pb.collectedTo || pa.settledTo - pb.settledTo);
}

export { TapSource, type TapCursor } from './source.ts';
export { StartTimeError } from '../start-time.ts';
export { TAP_SERVICES, TAP_DEFAULT_TAGS, tapInputSchema, type TapInputConfig, type TapServiceName } from './config.ts';
