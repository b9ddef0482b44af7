/**
 * One PoD WebSocket session of a service, from the open socket to its end, and what that end
 * means for the archive window or the live stream.
 *
 * - Frames go to the service's bounded buffer (batches.ts), which pauses this session's reading
 *   while it is full; the batch being filled is handed out when the session ends.
 * - An archive session ends with the server's close (1000 completes the window) or with our
 *   close after a silence while reading (archive_idle_timeout_secs); frames that still arrive
 *   after that close mean the window was not complete.
 * - A live session records every sign of life as contact, hands out an empty batch on a quiet
 *   stream every checkpoint interval (so a restart knows how long the gap really was), and
 *   closes itself when an archive replay becomes due.
 * - Shutdown closes the session normally; the session never writes state.
 */
import type { Logger } from 'pino';
import type { SourceMetrics } from '../source.ts';
import type { Clock } from '../../util/clock.ts';
import { formatUtc } from '../../util/time.ts';
import type { PodInputConfig, PodServiceName } from './config.ts';
import type { Step } from './mode.ts';
import type { BatchBuffer, Flow } from './batches.ts';
import type { LiveStep, ReplayPlan } from './replay-plan.ts';
import { PodSocket, type OpenedSocket, type SessionEnd } from './socket.ts';
import { SessionStats } from './stats.ts';

/** Why we closed the session, when it was us. */
export type ClosedFor = 'shutdown' | 'replay_due' | 'idle';

export interface SessionHost {
  service: PodServiceName;
  cfg: PodInputConfig;
  clock: Clock;
  /** Aborted on shutdown: the session is closed normally. */
  signal: AbortSignal;
  log: Logger;
  metrics: SourceMetrics;
  /** `<base>/v1/stream`; logged without a query. */
  endpoint: URL;
  buffer: BatchBuffer;
  plan: ReplayPlan;
  nextPullingId(): number;
}

export interface SessionOutcome {
  end: SessionEnd;
  closedFor?: ClosedFor;
  /** Data frames received after the idle close was decided: the window was not complete. */
  lateFrames: number;
  stats: SessionStats;
  openedAt: number;
}

/** Runs one session on an open socket until it ends; never throws for the session's own failures. */
export function runSession(opened: OpenedSocket, step: Step, host: SessionHost): Promise<SessionOutcome> {
  return new PodSession(opened, step, host).run();
}

/** What the end of an archive session means for its window. */
export interface ArchiveEnd {
  /** Positive evidence only: the server's normal close, or our close after a silence while reading with no frame after it. */
  complete: boolean;
  /** Completed by the silence, not by the server's close. */
  quiet: boolean;
  /** How the session ended, in words (statistics line, retry warning). */
  how: string;
  /** The `end` label of pod_archive_windows_retried_total when the window is asked again. */
  retried: string;
}

export function archiveEnd(end: SessionEnd, closedFor: ClosedFor | undefined, lateFrames: number): ArchiveEnd {
  const closedNormally = !end.byClient && end.closeFrame && end.code === 1000;
  const quiet = closedFor === 'idle' && lateFrames === 0;
  return {
    complete: !end.error && (closedNormally || quiet),
    quiet,
    how: end.error ? 'failed' : closedFor === 'idle' ? 'frames after the idle close' : (closedFor ?? (end.closeFrame ? `closed by the server with ${end.code}` : 'dropped')),
    retried: end.error ? 'error' : closedFor === 'idle' ? 'late_frames' : String(end.code),
  };
}

/**
 * What the end of a live session means. `normal`: the server's 1000, or the answer to our close.
 * Anything else may have lost frames in flight, and the server's live resume point is its own,
 * not our acknowledgement.
 */
export function liveEnd(end: SessionEnd, closedFor: ClosedFor | undefined): { normal: boolean; how: string } {
  return {
    normal: !end.error && end.closeFrame && (end.byClient || end.code === 1000),
    how: end.error ? 'failed' : (closedFor ?? (end.closeFrame ? 'closed by server' : 'dropped')),
  };
}

/** Empty (or whitespace-only) text frame: no event. The common case, a JSON object, is decided at once. */
function isEmptyFrame(text: string): boolean {
  return text.charCodeAt(0) !== 123 && text.trim() === '';
}

class PodSession {
  readonly #step: Step;
  readonly #h: SessionHost;
  readonly #live: boolean;
  readonly #stats: SessionStats;
  readonly #openedAt: number;
  readonly #socket: PodSocket;
  readonly #idle?: ArchiveIdle;
  readonly #timers: Array<() => void> = [];
  #closedFor?: ClosedFor;
  #lateFrames = 0;

  constructor(opened: OpenedSocket, step: Step, host: SessionHost) {
    this.#step = step;
    this.#h = host;
    this.#live = step.mode === 'live';
    this.#stats = new SessionStats({
      pullingId: host.nextPullingId(),
      service: host.service,
      mode: step.mode,
      ...(step.mode === 'archive' ? { window: { since: step.since, to: step.to } } : {}),
      clock: host.clock,
      logger: host.log,
    });
    this.#openedAt = host.clock.now();
    this.#logOpen();
    this.#socket = this.#takeOver(opened);
    if (!this.#live) {
      this.#idle = new ArchiveIdle({
        clock: host.clock,
        idleMs: host.cfg.archive_idle_timeout_secs * 1000,
        stats: this.#stats,
        reading: () => this.#closedFor === undefined && !this.#socket.paused,
        close: () => this.#close('idle', 'window complete'),
      });
    }
  }

  async run(): Promise<SessionOutcome> {
    const { buffer, plan, clock, signal } = this.#h;
    buffer.attach(this.#flow());
    // A live session opened without recent contact may start at "now" on the server (a first
    // session, or one after more than an hour): a fixed-end replay must then reach this moment.
    if (this.#live) plan.liveOpened(clock.now());
    if (buffer.over()) this.#socket.pause();
    this.#idle?.arm();
    this.#startTimers();
    const onAbort = () => this.#close('shutdown', 'shutdown');
    if (signal.aborted) onAbort();
    else signal.addEventListener('abort', onAbort, { once: true });
    this.#socket.start();

    const end = await this.#socket.ended;
    signal.removeEventListener('abort', onAbort);
    for (const cancel of this.#timers) cancel();
    this.#idle?.cancel();
    buffer.attach(undefined);
    buffer.close(false);
    return { end, closedFor: this.#closedFor, lateFrames: this.#lateFrames, stats: this.#stats, openedAt: this.#openedAt };
  }

  #logOpen(): void {
    const step = this.#step;
    const { endpoint } = this.#h;
    this.#h.log.info(
      {
        pulling_id: this.#stats.pullingId,
        mode: step.mode,
        ...(step.mode === 'archive' ? { since: formatUtc(step.since), to: formatUtc(step.to) } : {}),
        ...(step.mode === 'live' && step.until !== undefined ? { until: formatUtc(step.until) } : {}),
        url: `${endpoint.origin}${endpoint.pathname}`,
      },
      'PoD session open.',
    );
  }

  /** The PodSocket that takes the open socket over; frames reach it only after start(). */
  #takeOver(opened: OpenedSocket): PodSocket {
    const { cfg, clock, service, plan, metrics, buffer } = this.#h;
    return new PodSocket(opened, {
      clock,
      pingIntervalMs: cfg.ping_interval_secs * 1000,
      pongTimeoutMs: cfg.pong_timeout_secs * 1000,
      service,
      maxFrameBytes: cfg.max_frame_bytes,
      onContact: (at) => {
        if (this.#live) plan.liveContact(at);
      },
      onFrame: (text, bytes) => {
        if (isEmptyFrame(text)) {
          // Proofpoint's own clients take an empty message as "no events": a sign of life only.
          this.#stats.emptyFrames++;
          metrics.inc('pod_empty_frames_total', { service });
          return;
        }
        if (this.#closedFor === 'idle') this.#lateFrames++;
        this.#idle?.data();
        buffer.frame(this.#stats, text, bytes);
      },
    });
  }

  /** Reading held back by the buffer; silence counts toward an archive window's end only while reading. */
  #flow(): Flow {
    const socket = this.#socket;
    const idle = this.#idle;
    return {
      get paused() {
        return socket.paused;
      },
      pause() {
        socket.pause();
        idle?.cancel();
      },
      resume() {
        socket.resume();
        idle?.arm();
      },
    };
  }

  #startTimers(): void {
    const { cfg, buffer, plan } = this.#h;
    this.#every(cfg.stats_interval_secs * 1000, () => this.#stats.log());
    if (this.#step.mode !== 'live') return;
    let seen = buffer.handedOut;
    this.#every(cfg.checkpoint_interval_secs * 1000, () => {
      // Quiet stream: record the contact so a restart knows how long the gap really was.
      if (buffer.handedOut === seen && !buffer.filling) buffer.close(true, this.#stats);
      seen = buffer.handedOut;
    });
    const dueAt = plan.replayDueAt(this.#step);
    if (dueAt !== undefined) this.#stopAt(dueAt);
  }

  /**
   * Stops the live session for a replay that becomes available at `dueAt`: a moment on the
   * clock, not a duration, so it is checked against the clock every second as well and a clock
   * that steps forward (NTP) does not keep live running past it.
   */
  #stopAt(dueAt: number): void {
    const clock = this.#h.clock;
    const due = () => {
      if (this.#closedFor !== undefined || clock.now() < dueAt) return;
      this.#close('replay_due', 'archive replay due');
    };
    this.#timers.push(clock.setTimer(Math.max(0, dueAt - clock.now()), due));
    this.#every(1000, due);
  }

  #every(ms: number, fn: () => void): void {
    const clock = this.#h.clock;
    let cancel = clock.setTimer(ms, function tick() {
      fn();
      cancel = clock.setTimer(ms, tick);
    });
    this.#timers.push(() => cancel());
  }

  /** Our normal close; the first reason given is the one kept. */
  #close(why: ClosedFor, reason: string): void {
    this.#closedFor ??= why;
    this.#socket.close(1000, reason, this.#h.cfg.close_timeout_secs * 1000);
  }
}

export interface ArchiveIdleOptions {
  clock: Clock;
  /** `archive_idle_timeout_secs` in ms. */
  idleMs: number;
  /** Frames of the session so far (a frame seen in the last turn of the event loop defers the close). */
  stats: { readonly frames: number };
  /** The session is open, not closing, and its socket is read. */
  reading(): boolean;
  close(): void;
}

/**
 * The end of an archive window that the server never closes: a silence *while reading*. The
 * silence is measured from the later of the last data frame and the moment reading (re)started,
 * and the timer is cancelled while the socket is paused, so paused time never counts. When it
 * runs out, one more turn of the event loop lets data already waiting in the socket arrive first
 * (after a blocked loop, timers run before the socket is read).
 */
export class ArchiveIdle {
  readonly #o: ArchiveIdleOptions;
  #cancel?: () => void;
  #quietSince: number;

  constructor(o: ArchiveIdleOptions) {
    this.#o = o;
    this.#quietSince = o.clock.now();
  }

  /** Reading (again): the silence starts now. */
  arm(): void {
    this.#quietSince = this.#o.clock.now();
    if (!this.#cancel) this.#schedule(this.#o.idleMs);
  }

  /** A data frame: the silence starts again (no timer work per frame). */
  data(): void {
    this.#quietSince = this.#o.clock.now();
  }

  cancel(): void {
    this.#cancel?.();
    this.#cancel = undefined;
  }

  #schedule(ms: number): void {
    const { clock, idleMs, stats } = this.#o;
    if (!this.#o.reading()) return;
    this.#cancel = clock.setTimer(ms, () => {
      this.#cancel = undefined;
      if (!this.#o.reading()) return;
      const quiet = clock.now() - this.#quietSince;
      if (quiet < idleMs) return this.#schedule(idleMs - quiet);
      const framesBefore = stats.frames;
      setImmediate(() => {
        if (!this.#o.reading()) return;
        if (stats.frames !== framesBefore) return this.#schedule(idleMs);
        this.#o.close();
      });
    });
  }
}
