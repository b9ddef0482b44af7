/**
 * What the PoD simulator does, declared once with its defaults. Everything is deterministic for
 * a seed: which events exist, their ids, times and sizes, which are repeated, which frames are
 * malformed. Time comes from `clock` (a test can move it hours ahead); pacing of the sockets
 * uses real timers, so the simulator works with a system, offset or manual clock alike.
 */
import type { Clock } from '../../util/clock.ts';
import type { PodStreamType } from './events.ts';

export type MalformedKind = 'not_json' | 'array' | 'no_id' | 'bad_ts' | 'no_ts' | 'truncated';
export const MALFORMED_KINDS: readonly MalformedKind[] = ['not_json', 'array', 'no_id', 'bad_ts', 'no_ts', 'truncated'];

export interface PodScenario {
  /** Port on 127.0.0.1; 0 picks a free one. */
  port: number;
  clusterId: string;
  apiKey: string;
  /** "Now" for the event log, archive staleness and resume windows. */
  clock: Clock;
  seed: number;
  /** Events per second per type (a number applies to all three). 0: none. */
  rate: number | Partial<Record<PodStreamType, number>>;
  /** Time of event 0 (ms); default: the clock's now at start minus `historyMs`. */
  origin?: number;
  /** How much past exists before start (archive mode can serve it). */
  historyMs: number;
  /** Total events per type; none beyond. */
  maxEvents?: number | Partial<Record<PodStreamType, number>>;
  /** A token+type's first live session starts at the newest event ('now') or at event 0 ('origin'). */
  firstSessionFrom: 'now' | 'origin';
  /** Fraction of events whose ts is earlier than their place in the stream, by up to unsortedMs. */
  unsortedFraction: number;
  unsortedMs: number;
  /** Every n-th event (by hash) is sent a second time a few frames later (0: never). */
  duplicateEvery: number;
  /** Every n-th message event (by hash) is padded to largeFrameBytes (0: never). */
  largeEvery: number;
  largeFrameBytes: number;
  /** After every n-th event frame, a malformed frame (kinds in turn) is sent (0: never). */
  malformedEvery: number;
  /** A live session is dropped without a close frame after this many frames (0: never). */
  dropAfterFrames: number;
  /** How a drop ends TCP: 'fin' flushes what was written, 'rst' discards it. */
  dropHow: 'fin' | 'rst';
  /** Live resume after a drop starts this many events before the drop point (repeats). */
  resumeOverlapEvents: number;
  /** Server-side live resume window (vendor: one hour). */
  resumeWindowMs: number;
  /** Archive data is at least this stale (vendor: 30 minutes). */
  archiveStalenessMs: number;
  /** Archive mode reaches back at most this far (vendor: 30 days). */
  archiveMaxAgeMs: number;
  /** After an archive window: close with a close frame, or stay open and silent. */
  archiveEnd: 'close' | 'idle';
  /** Answer 409 to the first n attempts of each type (a stale session still closing). */
  conflictFirstAttempts: number;
  /** Refuse every attempt of these types with this status and body (e.g. 401 for one type). */
  refuseTypes: Partial<Record<PodStreamType, { status: number; body: string }>>;
  /** Archive sessions count toward the one-session-per-token+type limit (unverified: assume yes). */
  archiveCountsAsSession: boolean;
  /** Do not answer pings (the client must notice and reconnect). */
  ignorePings: boolean;
  /** Negotiate permessage-deflate when offered. */
  perMessageDeflate: boolean;
  /** Stop writing to a session while this many bytes wait in its socket (TCP backpressure). */
  highWaterBytes: number;
  /** Serve wss:// with this key and certificate (PEM); plain ws:// when absent. */
  tls?: { key: string | Buffer; cert: string | Buffer };
}

export const DEFAULT_SCENARIO: Omit<PodScenario, 'clock'> = {
  port: 0,
  clusterId: 'pphosted_sim_hosted',
  apiKey: 'sim-api-key-0123456789abcdef',
  seed: 1,
  rate: 50,
  historyMs: 3 * 3600_000,
  firstSessionFrom: 'now',
  unsortedFraction: 0,
  unsortedMs: 0,
  duplicateEvery: 0,
  largeEvery: 0,
  largeFrameBytes: 2 * 1_048_576,
  malformedEvery: 0,
  dropAfterFrames: 0,
  dropHow: 'fin',
  resumeOverlapEvents: 0,
  resumeWindowMs: 3600_000,
  archiveStalenessMs: 1800_000,
  archiveMaxAgeMs: 30 * 24 * 3600_000,
  archiveEnd: 'close',
  conflictFirstAttempts: 0,
  refuseTypes: {},
  archiveCountsAsSession: true,
  ignorePings: false,
  perMessageDeflate: true,
  highWaterBytes: 1_048_576,
};
