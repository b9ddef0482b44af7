/**
 * What the PoD simulator does, declared once with its defaults. Everything is deterministic for
 * a seed: which events exist, their ids, times and sizes, which are repeated, which frames are
 * malformed. Time comes from `clock` (a test can move it hours ahead); pacing of the sockets
 * uses real timers, so the simulator works with a system, offset or manual clock alike.
 *
 * Server profiles (`POD_PROFILES`) are named sets of knobs. Where the vendor's documentation is
 * silent or vague (how an archive window ends, where a live session resumes after a drop,
 * whether the server sends empty frames or pings, how it treats a `toTime` in the future,
 * whether a `guid` or `id` is unique), each profile is one reading of the real server that
 * the documentation does not rule out. None of them is known to be the real behaviour. The
 * sidecar must be safe under each of them and under their combinations, so a test can run the
 * same scenario once per profile. `podProfiles()` merges profiles in order (a later one wins a
 * key both set); `startPodSimulator({ profiles })` applies them over the defaults and under
 * the explicit options.
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
  /** After every n-th event frame of a session, an empty text frame (0: never). */
  emptyFrameEvery: number;
  /** Ping every open session this often (ms, real time; 0: never). */
  serverPingMs: number;
  /** Refuse (400) an archive request whose `toTime`, rounded up to the hour, is after now. */
  rejectFutureToTime: boolean;
  /**
   * Every n-th event (by hash, never seq 0) carries the `guid`/`id` of the event before it,
   * with its own `ts` and content otherwise (0: every key unique). Fixed at start.
   */
  sharedKeyEvery: number;
  /** A live session is dropped without a close frame after this many frames (0: never). */
  dropAfterFrames: number;
  /** How a drop ends TCP: 'fin' flushes what was written, 'rst' discards it. */
  dropHow: 'fin' | 'rst';
  /** Live resume after a drop starts this many events before the drop point (repeats). */
  resumeOverlapEvents: number;
  /**
   * Where a live session resumes when the previous one of its token and type ended within the
   * resume window: at the server's send position (minus `resumeOverlapEvents`), or at the
   * newest event, so that nothing from the gap is ever sent.
   */
  liveResumeFrom: 'position' | 'now';
  /** Server-side live resume window (vendor: one hour). */
  resumeWindowMs: number;
  /** Archive data is at least this stale (vendor: 30 minutes). */
  archiveStalenessMs: number;
  /** Archive mode reaches back at most this far (vendor: 30 days). */
  archiveMaxAgeMs: number;
  /** After an archive window: close with a close frame, or stay open and silent. */
  archiveEnd: 'close' | 'idle';
  /** The close code sent after a whole archive window (`archiveEnd: 'close'`); 1006: RST, no close frame. */
  archiveCloseCode: number;
  /**
   * The first `attempts` sessions that ask for an archive window (the same type, rounded
   * `sinceTime` and rounded `toTime`) stop after `afterFraction` (0..1) of its events and end
   * with close `code` (1006: the TCP connection is reset, no close frame). Later attempts get
   * the whole window. The count restarts when `update()` sets this key.
   */
  archiveCut?: { code: number; afterFraction: number; attempts: number };
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
  emptyFrameEvery: 0,
  serverPingMs: 0,
  rejectFutureToTime: false,
  sharedKeyEvery: 0,
  dropAfterFrames: 0,
  dropHow: 'fin',
  resumeOverlapEvents: 0,
  liveResumeFrom: 'position',
  resumeWindowMs: 3600_000,
  archiveStalenessMs: 1800_000,
  archiveMaxAgeMs: 30 * 24 * 3600_000,
  archiveEnd: 'close',
  archiveCloseCode: 1000,
  conflictFirstAttempts: 0,
  refuseTypes: {},
  archiveCountsAsSession: true,
  ignorePings: false,
  perMessageDeflate: true,
  highWaterBytes: 1_048_576,
};

export type PodProfileName =
  | 'archive-close-1000'
  | 'archive-close-1001'
  | 'archive-close-early'
  | 'archive-drop'
  | 'archive-never-close'
  | 'live-resume-exact'
  | 'live-resume-send-position'
  | 'live-resume-now'
  | 'empty-frames'
  | 'server-pings'
  | 'reject-future-totime'
  | 'shared-guid';

/** Knobs a profile may set: behaviour only, never where the simulator listens or its clock. */
export type PodProfile = Partial<Omit<PodScenario, 'port' | 'clusterId' | 'apiKey' | 'clock' | 'tls'>>;

/** Readings of the real server that its documentation leaves open (see the module comment). */
export const POD_PROFILES: Readonly<Record<PodProfileName, Readonly<PodProfile>>> = {
  /** A whole archive window, then close 1000 (the default). */
  'archive-close-1000': { archiveEnd: 'close', archiveCloseCode: 1000 },
  /** The first attempt of each archive window ends with 1001 (going away) halfway through. */
  'archive-close-1001': { archiveCut: { code: 1001, afterFraction: 0.5, attempts: 1 } },
  /** The first attempt of each archive window ends with 1011 (server error) after 30%. */
  'archive-close-early': { archiveCut: { code: 1011, afterFraction: 0.3, attempts: 1 } },
  /** The first attempt of each archive window is cut without a close frame (RST) after 40%. */
  'archive-drop': { archiveCut: { code: 1006, afterFraction: 0.4, attempts: 1 } },
  /** An archive session stays open and silent after its window. */
  'archive-never-close': { archiveEnd: 'idle' },
  /** A drop flushes what was written and the next session resumes at the send position: nothing lost. */
  'live-resume-exact': { liveResumeFrom: 'position', dropHow: 'fin' },
  /** A drop resets the connection (what was in flight is lost); resume at the send position. */
  'live-resume-send-position': { liveResumeFrom: 'position', dropHow: 'rst' },
  /** A drop resets the connection and the next session starts at the newest event: the gap is never sent. */
  'live-resume-now': { liveResumeFrom: 'now', dropHow: 'rst' },
  /** An empty text frame after every 50th event frame. */
  'empty-frames': { emptyFrameEvery: 50 },
  /** The server pings every session every 200 ms. */
  'server-pings': { serverPingMs: 200 },
  /** An archive request whose rounded-up `toTime` lies in the future is refused with 400. */
  'reject-future-totime': { rejectFutureToTime: true },
  /** Every 4th event (by hash) repeats the guid/id of the one before it, with its own content. */
  'shared-guid': { sharedKeyEvery: 4 },
};

/** The named profiles merged in order (a later profile wins a key both set). */
export function podProfiles(...names: PodProfileName[]): PodProfile {
  const out: PodProfile = {};
  for (const name of names) {
    const p = POD_PROFILES[name];
    if (!p) throw new Error(`Unknown PoD simulator profile: ${String(name)}`);
    Object.assign(out, p);
    // The constants stay untouched when a caller edits the result.
    if (p.archiveCut) out.archiveCut = { ...p.archiveCut };
  }
  return out;
}
