/**
 * Builds the `proofpoint_on_demand` source, and orders its cursors. Loaded by the descriptor
 * (index.ts) only when a source is created or a feed changes hands: a standby replica never loads it.
 */
import type { ClientOptions } from 'ws';
import type { Source } from '../source.ts';
import { systemClock, type Clock } from '../../util/clock.ts';
import { podStartTimes, type PodInputConfig } from './config.ts';
import { assertStartTimes } from '../start-time.ts';
import { compareTime, coveredUntil, cursorTime, readCursor, type PodCursor } from './cursor.ts';
import { proxyFor } from './proxy.ts';
import { podEndpoint, PodSource } from './source.ts';

export { PodSource, enabledPodServices } from './source.ts';
export type { PodCursor } from './cursor.ts';
export { PodCredentialsError, PodSessionConflictError, PodSessionError } from './errors.ts';
export { StartTimeError } from '../start-time.ts';
export { POD_SERVICES, POD_DEFAULT_TAGS, podInputSchema, type PodInputConfig, type PodServiceName } from './config.ts';

export interface CreatePodSourceOptions {
  /** Extra ws client options (tests: a CA for wss://). Auth, limits and TLS verification stay ours. */
  wsOptions?: ClientOptions;
  /** The clock that decides whether a start time is in the future (default: the system clock). */
  clock?: Clock;
  /** Environment for HTTPS_PROXY / NO_PROXY (default: process.env). */
  env?: NodeJS.ProcessEnv;
}

/**
 * Builds the source: one WebSocket session per configured service. Throws StartTimeError
 * (101) for a start time in the future, as the Devo collector refuses it at config time.
 */
export function createPodSource(cfg: PodInputConfig, opts: CreatePodSourceOptions = {}): Source<PodCursor> {
  assertStartTimes(podStartTimes(cfg), (opts.clock ?? systemClock).now());
  const proxy = proxyFor(podEndpoint(cfg), opts.env ?? process.env);
  return new PodSource(cfg, { wsOptions: opts.wsOptions, agent: proxy?.agent });
}

/**
 * Orders two PoD cursors of one service by how far the stream is known covered (live contact or
 * completed archive), then by the highest event time; -1, 0, 1. An unreadable cursor counts as
 * no progress. Coordination uses it when a feed moves between replicas.
 */
export function comparePodCursors(a: unknown, b: unknown): number {
  const ca = readCursor(a).cursor;
  const cb = readCursor(b).cursor;
  if (!ca || !cb) return ca ? 1 : cb ? -1 : 0;
  const ta = cursorTime(ca);
  const tb = cursorTime(cb);
  const byTime = ta && tb ? compareTime(ta, tb) : ta ? 1 : tb ? -1 : 0;
  return Math.sign((coveredUntil(ca) ?? 0) - (coveredUntil(cb) ?? 0) || byTime);
}
