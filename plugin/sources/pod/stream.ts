/**
 * One service's stream (message, maillog or audit): its sessions one after another, live or
 * archive (mode.ts), and the bounded buffer between its socket and the pipeline.
 *
 * - Sessions of a service never overlap: the server allows one per token and type (409), and an
 *   archive replay must not collide with the live session.
 * - Connection attempts are at least `request_period_in_seconds` apart (the Devo collector's
 *   meaning); refusals and failures back off further, capped at `retry_max_secs`.
 * - Frames become events in the batch being filled; it is handed out at `batch_max_events` or
 *   `batch_flush_secs` after its first frame, and at the end of every session (a batch never spans
 *   two sessions, so its `pulling_id` is exact). Frames held here, filled or handed out and not
 *   yet taken, are bounded by `max_buffered_frames` / `max_buffered_bytes`: beyond them the socket
 *   is paused and TCP holds the server back; it resumes below half.
 * - The stream never writes state. The cursor rides on the batches; an archive window's
 *   completion and the replay still owed ride on the batch that follows the window's last frame.
 */
import type http from 'node:http';
import type { ClientOptions } from 'ws';
import type { Logger } from 'pino';
import type { Batch, RejectedInput, SourceContext, SourceEvent } from '../source.ts';
import { Backoff } from '../../util/backoff.ts';
import { BackfillProgress } from '../../telemetry/progress.ts';
import { formatUtc, parseTimestampMs } from '../../util/time.ts';
import { SidecarError, VendorHttpError, VendorRequestError } from '../../errors.ts';
import type { PodInputConfig, PodServiceConfig, PodServiceName } from './config.ts';
import { CursorTracker, coveredUntil, cursorTimeMs, readCursor, type PodCursor } from './cursor.ts';
import { parseFrame, type FrameResult } from './identity.ts';
import {
  floorHour,
  nextStep,
  podStreamUrl,
  offsetOf,
  pinPartial,
  replayAfterDrop,
  replayAtStart,
  replayCaughtUp,
  replayDone,
  windowServed,
  type ModeLimits,
  type Replay,
  type Step,
} from './mode.ts';
import { openSocket, PodSocket, type OpenedSocket, type SessionEnd } from './socket.ts';
import { PodCredentialsError, PodSessionConflictError } from './errors.ts';
import { SessionStats } from './stats.ts';

export interface StreamOptions {
  name: PodServiceName;
  cfg: PodInputConfig;
  svc: PodServiceConfig;
  ctx: SourceContext;
  /** Aborted on shutdown (ctx.signal) or when the source's consumer stops. */
  signal: AbortSignal;
  /** `<base>/v1/stream`, without a query. */
  endpoint: URL;
  agent?: http.Agent;
  wsOptions?: ClientOptions;
  limits: ModeLimits;
  nextPullingId(): number;
  /** Called when a batch is ready or the stream ended. */
  notify(): void;
}

interface Filling {
  stats: SessionStats;
  events: SourceEvent[];
  rejected: RejectedInput[];
  bytes: number;
  cancelFlush?: () => void;
}

interface Ready {
  batch: Batch<PodCursor>;
  frames: number;
  bytes: number;
}

/** Most rejected frames logged one by one per session; the rest are counted. */
const REJECTS_LOGGED = 3;
/** An archive window asked this many times without completing is reported (and still retried). */
export const WINDOW_ATTEMPTS_REPORTED = 5;
const HOUR = 3600_000;

type ArchiveStep = Extract<Step, { mode: 'archive' }>;
type ClosedFor = 'shutdown' | 'replay_due' | 'idle';

export class ServiceStream {
  readonly name: PodServiceName;
  /** Set when the service stopped for good (401, 400, 404, 405; or an unexpected error, a bug). */
  fatal?: Error;
  done = false;
  readonly #o: StreamOptions;
  readonly #log: Logger;
  readonly #ready: Ready[] = [];
  #filling?: Filling;
  #frames = 0;
  #bytes = 0;
  #tracker = new CursorTracker();
  #replay?: Replay;
  /** Last contact of a live session (or the moment up to which the stream is known covered). */
  #lastContact?: number;
  #lastAttempt = -Infinity;
  #retryDelay = 0;
  readonly #backoff: Backoff;
  #socket?: PodSocket;
  /** Batches handed out since the last idle checkpoint. */
  #handedOut = 0;
  /** The cursor of the last batch committed (batches commit in order). */
  #committed?: PodCursor;
  /** Set when a live session ended without the server's normal close: replay from this hour. */
  #dropFrom?: number;
  /** Partial windows allowed (false after the server refused one: whole past hours only). */
  #partialAllowed = true;
  /** The archive window being asked and how often it was asked without completing. */
  #window?: { since: number; to: number; attempts: number };
  readonly #windowBackoff: Backoff;
  /** Idle detection of the open archive session: armed only while the socket is read. */
  #idle?: { arm(): void; cancel(): void };
  /** The owed archive replay's progress (backfill_* metrics and the periodic line). */
  readonly #progress: BackfillProgress;

  constructor(o: StreamOptions) {
    this.#o = o;
    this.name = o.name;
    this.#log = o.ctx.logger.child({ service: o.name });
    this.#progress = new BackfillProgress({ metrics: o.ctx.metrics, logger: this.#log, clock: o.ctx.clock, service: o.name, label: `PoD ${o.name} archive replay` });
    const period = o.svc.request_period_in_seconds * 1000;
    this.#backoff = new Backoff({ minMs: period, maxMs: Math.max(period, o.cfg.retry_max_secs * 1000) });
    this.#windowBackoff = new Backoff({ minMs: period, maxMs: Math.max(period, o.cfg.retry_max_secs * 1000) });
  }

  /** Frames and bytes held (filling or ready, not yet taken). */
  get buffered(): { frames: number; bytes: number } {
    return { frames: this.#frames, bytes: this.#bytes };
  }

  get paused(): boolean {
    return this.#socket?.paused ?? false;
  }

  /** The next ready batch, if any; taking it may let the socket read again. */
  take(): Batch<PodCursor> | undefined {
    const r = this.#ready.shift();
    if (!r) return undefined;
    this.#frames -= r.frames;
    this.#bytes -= r.bytes;
    this.#handedOut++;
    const { max_buffered_frames: maxFrames, max_buffered_bytes: maxBytes } = this.#o.cfg;
    if (this.#socket?.paused && this.#frames <= maxFrames / 2 && this.#bytes <= maxBytes / 2) {
      this.#socket.resume();
      // Silence counts toward an archive window's end only from here: reading again.
      this.#idle?.arm();
    }
    return r.batch;
  }

  /** Runs sessions until the signal aborts or a fatal error; never throws. */
  async run(): Promise<void> {
    const { signal } = this.#o;
    try {
      await this.#init();
      while (!signal.aborted && !this.fatal) await this.#once();
    } catch (err) {
      if (!signal.aborted) {
        this.fatal = err as Error;
        this.#log.error({ err: { message: (err as Error).message, stack: (err as Error).stack } }, 'PoD stream stopped by an unexpected error; the other services go on.');
        this.#o.ctx.health.set(this.name, 'failed', (err as Error).message);
      }
    } finally {
      this.#closeBatch();
      this.done = true;
      this.#o.notify();
    }
  }

  async #init(): Promise<void> {
    const { ctx, svc, limits } = this.#o;
    const { cursor, problem } = readCursor(await ctx.cursor<unknown>(this.name));
    if (problem) this.#log.warn({ problem }, 'Stored PoD cursor not understood; starting as if there were none.');
    this.#tracker = new CursorTracker(cursor);
    const now = ctx.clock.now();
    const startTimeMs = cursor === undefined && svc.start_time !== undefined ? parseTimestampMs(svc.start_time) : undefined;
    this.#replay = replayAtStart({ now, cursor, uncleanShutdown: ctx.uncleanShutdown, startTimeMs }, limits);
    this.#lastContact = coveredUntil(cursor);
    this.#committed = cursor;
    if (ctx.resetServices.has(this.name)) this.#log.warn({ start_time: svc.start_time }, 'start_time changed: this service starts over from it.');
    if (this.#replay) this.#announce(this.#replay, now);
    this.#recordOwed();
    ctx.metrics.set('pod_archive_windows_stuck', { service: this.name }, 0);
  }

  #announce(r: Replay, now: number): void {
    const target = r.until ?? now - this.#o.limits.thresholdMs;
    this.#log.info(
      { reason: r.reason, from: formatUtc(r.from), until: formatUtc(target), ...(r.until === undefined ? { until_moves: 'live takes over' } : {}) },
      r.reason === 'unclean_shutdown'
        ? 'Previous run did not shut down cleanly: replaying from the hour of the committed cursor in archive mode, one session at a time.'
        : r.reason === 'live_drop'
          ? 'Taking up the replay owed after a live session ended without a normal close.'
          : r.reason === 'probe'
            ? 'Replaying what a check --online --probe-live session read from the live stream.'
        : r.reason === 'outage'
          ? 'Contact lost for longer than the live resume covers: replaying the gap in archive mode before going live.'
          : r.reason === 'live_start'
            ? 'Taking up the replay of the moments before the last live start, owed by the previous run.'
            : 'Replaying from start_time in archive mode before going live.',
    );
    if (r.clampedFrom !== undefined) {
      this.#gap({ from: r.clampedFrom, until: r.from, reason: 'older than the 30 days archive mode serves' });
      r.clampedFrom = undefined;
    }
  }

  /** A fixed-end replay rides on the cursor until done, so a restart takes it up again. */
  #recordOwed(): void {
    const r = this.#replay;
    this.#tracker.setOwed(r && r.until !== undefined ? { reason: r.reason, from: r.from, until: r.until, offsetMin: r.offsetMin } : undefined);
    const metrics = this.#o.ctx.metrics;
    const service = { service: this.name };
    metrics.set('pod_archive_replay_active', service, r ? 1 : 0);
    metrics.set('pod_archive_replay_position_timestamp_seconds', service, r ? Math.floor(r.from / 1000) : 0);
    const now = this.#o.ctx.clock.now();
    if (r) this.#progress.update(r.from, r.until ?? now - this.#o.limits.thresholdMs);
    else this.#progress.live(now);
  }

  async #once(): Promise<void> {
    const { ctx, signal, limits, svc } = this.#o;
    const clock = ctx.clock;
    const wait = Math.max(this.#lastAttempt + svc.request_period_in_seconds * 1000 - clock.now(), this.#retryDelay);
    if (wait > 0) {
      try {
        await clock.sleep(wait, signal);
      } catch {
        return;
      }
    }
    // Decided after the wait: time moved, and with it the gap and what archive mode can serve.
    const now = clock.now();
    if (!this.#replay && this.#lastContact !== undefined) {
      const r = replayAfterDrop(now, this.#lastContact, this.#tracker.current, limits);
      if (r) {
        if (this.#dropFrom !== undefined) r.from = Math.min(r.from, this.#dropFrom);
        this.#dropFrom = undefined;
        this.#replay = r;
        this.#announce(r, now);
        this.#recordOwed();
      }
    }
    if (this.#replay && replayDone(this.#replay, now, limits, this.#lastContact)) {
      this.#log.info({ reason: this.#replay.reason, replayed_until: formatUtc(this.#replay.from) }, 'Archive replay complete; streaming live.');
      this.#replay = undefined;
      this.#recordOwed();
      this.#closeBatch(true);
    } else if (this.#replay && this.#replay.until === undefined && replayCaughtUp(this.#replay, now, limits, this.#lastContact)) {
      // Caught up through partial windows: only the whole last hour remains, asked once available.
      this.#replay = pinPartial(this.#replay);
      this.#log.info(
        { reason: this.#replay.reason, hour: formatUtc(this.#replay.from) },
        'Archive replay caught up; streaming live. The last hour is asked again whole once archive mode has all of it.',
      );
      this.#recordOwed();
    }
    const step = nextStep(this.#replay, now, limits, this.#lastContact, this.#partialAllowed);
    this.#lastAttempt = now;
    const url = this.#url(step);
    let opened: OpenedSocket;
    try {
      opened = await openSocket({
        url,
        apiKey: this.#o.cfg.credentials.api_key,
        service: this.name,
        handshakeTimeoutMs: this.#o.cfg.handshake_timeout_secs * 1000,
        maxFrameBytes: this.#o.cfg.max_frame_bytes,
        perMessageDeflate: this.#o.cfg.per_message_deflate,
        closeTimeoutMs: this.#o.cfg.close_timeout_secs * 1000,
        agent: this.#o.agent,
        wsOptions: this.#o.wsOptions,
        userAgent: ctx.userAgent,
        signal,
      });
    } catch (err) {
      if (signal.aborted) return;
      this.#refused(err as Error, step);
      return;
    }
    this.#backoff.reset();
    this.#retryDelay = 0;
    this.#o.ctx.metrics.inc('pod_sessions_total', { service: this.name, mode: step.mode });
    await this.#session(opened, step);
  }

  #refused(err: Error, step: Step): void {
    const health = this.#o.ctx.health;
    const e = err instanceof SidecarError ? err : new VendorRequestError(`PoD ${this.name} connection failed: ${err.message}`, err);
    const http = e instanceof VendorHttpError || e instanceof PodCredentialsError ? e : undefined;
    const base = { mode: step.mode, code: e.code, ...(http ? { status: http.status, server_text: http.body } : {}) };
    if (step.mode === 'archive' && http?.status === 400) {
      this.#archiveRejected(step, base);
      return;
    }
    if (e.fatal) {
      this.fatal = e;
      health.set(this.name, 'failed', e.message);
      this.#log.error(base, `${e.message}. This service is stopped until restart; the other services go on.`);
      return;
    }
    this.#retryDelay = this.#backoff.next();
    health.set(this.name, 'degraded', e.message);
    if (e instanceof PodSessionConflictError) {
      this.#o.ctx.metrics.inc('pod_conflicts_total', { service: this.name });
      this.#log.warn(
        { ...base, retry_in_secs: Math.round(this.#retryDelay / 1000) },
        'PoD answered 409: another session holds this token for this type (another collector, or our previous session still closing on the server). Retrying.',
      );
    } else {
      this.#log.warn({ ...base, err: e.message, retry_in_secs: Math.round(this.#retryDelay / 1000) }, 'PoD session could not be opened; retrying.');
    }
  }

  /**
   * A 400 on an archive handshake: the server refused this window's times. Never fatal (live
   * goes on meanwhile): a partial window is never asked again (whole past hours only); a window
   * at the 30-day edge that the server no longer serves becomes an explicit gap; any other window
   * is asked again after a backoff, reported after WINDOW_ATTEMPTS_REPORTED refusals.
   */
  #archiveRejected(step: ArchiveStep, base: Record<string, unknown>): void {
    const { ctx, limits } = this.#o;
    const now = ctx.clock.now();
    const r = this.#replay;
    ctx.metrics.inc('pod_archive_rejected_total', { service: this.name });
    ctx.health.set(this.name, 'degraded', `archive window ${formatUtc(step.since)} to ${formatUtc(step.to)} refused (HTTP 400)`);
    const window = { ...base, since: formatUtc(step.since), to: formatUtc(step.to) };
    if (!r) return;
    if (step.partial) {
      this.#partialAllowed = false;
      this.#log.warn(window, 'PoD refused a partial archive window (its toTime is not a whole past hour); from now on only whole past hours are asked, once archive mode has them. Live goes on meanwhile.');
      return;
    }
    if (step.since <= now - limits.maxAgeMs + HOUR) {
      this.#gap({ from: step.since, until: step.to, reason: `refused by the server at the 30-day edge: ${String(base.server_text ?? '')}`.slice(0, 300) });
      r.from = Math.max(r.from, step.to);
      this.#recordOwed();
      return;
    }
    const attempts = this.#countAttempt(step);
    r.notBefore = now + this.#windowBackoff.next();
    this.#recordOwed();
    const msg = 'PoD refused an archive window (HTTP 400); it is asked again later, never skipped. Live goes on meanwhile.';
    const info = { ...window, attempts, retry_in_secs: Math.round((r.notBefore - now) / 1000) };
    if (attempts >= WINDOW_ATTEMPTS_REPORTED) this.#log.error(info, msg);
    else this.#log.warn(info, msg);
  }

  /** Counts one more attempt of this window without completion; returns the count. */
  #countAttempt(step: ArchiveStep): number {
    const w = this.#window;
    const n = w && w.since === step.since && w.to === step.to ? w.attempts + 1 : 1;
    this.#window = { since: step.since, to: step.to, attempts: n };
    if (n >= WINDOW_ATTEMPTS_REPORTED) {
      this.#o.ctx.metrics.set('pod_archive_windows_stuck', { service: this.name }, n);
    }
    return n;
  }

  /** Records and reports, once, an interval that cannot be replayed. */
  #gap(gap: { from: number; until: number; reason: string }): void {
    if (gap.until <= gap.from) return;
    const { ctx } = this.#o;
    this.#tracker.addGap(gap);
    ctx.metrics.inc('pod_archive_gaps_total', { service: this.name });
    ctx.metrics.inc('pod_archive_gap_seconds_total', { service: this.name }, Math.round((gap.until - gap.from) / 1000));
    this.#log.error(
      { gap_from: formatUtc(gap.from), gap_until: formatUtc(gap.until), reason: gap.reason },
      'Events in this interval cannot be replayed from the archive: an explicit gap (kept in the state, see state show).',
    );
    this.#closeBatch(true);
  }

  #url(step: Step): URL {
    const { endpoint, cfg } = this.#o;
    return podStreamUrl(endpoint, cfg.credentials.cluster_id, this.name, step.mode === 'archive' ? step : undefined);
  }


  async #session(opened: OpenedSocket, step: Step): Promise<void> {
    const { ctx, cfg, signal } = this.#o;
    const clock = ctx.clock;
    const stats = new SessionStats({
      pullingId: this.#o.nextPullingId(),
      service: this.name,
      mode: step.mode,
      ...(step.mode === 'archive' ? { window: { since: step.since, to: step.to } } : {}),
      clock,
      logger: this.#log,
    });
    ctx.health.set(this.name, 'ok');
    const live = step.mode === 'live';
    const openedAt = clock.now();
    this.#log.info(
      {
        pulling_id: stats.pullingId,
        mode: step.mode,
        ...(step.mode === 'archive' ? { since: formatUtc(step.since), to: formatUtc(step.to) } : {}),
        ...(live && step.until !== undefined ? { until: formatUtc(step.until) } : {}),
        url: `${this.#o.endpoint.origin}${this.#o.endpoint.pathname}`,
      },
      'PoD session open.',
    );
    let closedFor: ClosedFor | undefined;
    /** Data frames received after the idle close was decided: the window was not complete. */
    let lateFrames = 0;
    let cancelIdle: (() => void) | undefined;
    // An archive window that the server never closes ends after a silence *while reading*: the
    // silence is measured from the later of the last data frame and the moment reading (re)started,
    // and the timer is cancelled while the socket is paused, so paused time never counts. When it
    // runs out, one more turn of the event loop lets data already waiting in the socket arrive
    // first (after a blocked loop, timers run before the socket is read).
    const idleMs = cfg.archive_idle_timeout_secs * 1000;
    let quietSince = clock.now();
    const idle = {
      /** Reading (again): the silence starts now. */
      arm: () => {
        quietSince = clock.now();
        if (!cancelIdle) schedule(idleMs);
      },
      /** A data frame: the silence starts again (no timer work per frame). */
      data: () => {
        quietSince = clock.now();
      },
      cancel: () => {
        cancelIdle?.();
        cancelIdle = undefined;
      },
    };
    const schedule = (ms: number): void => {
      if (live || closedFor !== undefined || socket.paused) return;
      cancelIdle = clock.setTimer(ms, () => {
        cancelIdle = undefined;
        if (closedFor !== undefined || socket.paused) return;
        const quiet = clock.now() - quietSince;
        if (quiet < idleMs) return schedule(idleMs - quiet);
        const framesBefore = stats.frames;
        setImmediate(() => {
          if (closedFor !== undefined || socket.paused) return;
          if (stats.frames !== framesBefore) return schedule(idleMs);
          closedFor = 'idle';
          socket.close(1000, 'window complete', cfg.close_timeout_secs * 1000);
        });
      });
    };
    const socket = new PodSocket(opened, {
      clock,
      pingIntervalMs: cfg.ping_interval_secs * 1000,
      pongTimeoutMs: cfg.pong_timeout_secs * 1000,
      service: this.name,
      maxFrameBytes: cfg.max_frame_bytes,
      onContact: (at) => {
        if (!live) return;
        this.#lastContact = at;
        this.#tracker.markLive(at);
      },
      onFrame: (text, bytes) => {
        if (isEmptyFrame(text)) {
          // Proofpoint's own clients take an empty message as "no events": a sign of life only.
          stats.emptyFrames++;
          ctx.metrics.inc('pod_empty_frames_total', { service: this.name });
          return;
        }
        if (closedFor === 'idle') lateFrames++;
        if (!live) idle.data();
        this.#frame(stats, text, bytes);
      },
    });
    this.#socket = socket;
    if (!live) this.#idle = idle;
    if (live) {
      const now = clock.now();
      // A live session opened without recent contact may start at "now" on the server (a first
      // session, or one after more than an hour): a fixed-end replay must then reach this moment.
      this.#liveOpened(now);
      this.#lastContact = now;
      this.#tracker.markLive(now);
    }
    if (this.#over()) socket.pause();
    if (!live) idle.arm();

    const timers: Array<() => void> = [];
    const every = (ms: number, fn: () => void) => {
      let cancel = clock.setTimer(ms, function tick() {
        fn();
        cancel = clock.setTimer(ms, tick);
      });
      timers.push(() => cancel());
    };
    every(cfg.stats_interval_secs * 1000, () => stats.log());
    if (live) {
      let seen = this.#handedOut;
      every(cfg.checkpoint_interval_secs * 1000, () => {
        // Quiet stream: record the contact so a restart knows how long the gap really was.
        if (this.#handedOut === seen && !this.#filling) this.#closeBatch(true, stats);
        seen = this.#handedOut;
      });
      // Stop for a replay that becomes available while this session runs.
      const dueAt = step.until ?? (this.#replay?.until !== undefined ? this.#replay.until + this.#o.limits.stalenessMs : undefined);
      if (dueAt !== undefined) {
        // A moment on the clock, not a duration: checked against the clock every second as well,
        // so a clock that steps forward (NTP) does not keep live running past it.
        const due = () => {
          if (closedFor !== undefined || clock.now() < dueAt) return;
          closedFor = 'replay_due';
          socket.close(1000, 'archive replay due', cfg.close_timeout_secs * 1000);
        };
        timers.push(clock.setTimer(Math.max(0, dueAt - clock.now()), due));
        every(1000, due);
      }
    }
    const onAbort = () => {
      closedFor ??= 'shutdown';
      socket.close(1000, 'shutdown', cfg.close_timeout_secs * 1000);
    };
    if (signal.aborted) onAbort();
    else signal.addEventListener('abort', onAbort, { once: true });
    socket.start();

    const end = await socket.ended;
    signal.removeEventListener('abort', onAbort);
    for (const t of timers) t();
    idle.cancel();
    this.#idle = undefined;
    this.#socket = undefined;
    this.#closeBatch(false);
    if (step.mode === 'archive') this.#archiveEnded(step, end, closedFor, lateFrames, stats);
    else this.#liveEnded(end, closedFor, stats, openedAt);
  }

  /**
   * A live session opened. Without contact within the threshold it may start at "now" on the
   * server (a token's first session; after a longer gap the server is documented to serve its
   * last hour, but a first session is not documented). Whatever archive mode did not reach
   * before this moment is therefore owed too: the end of a pending replay moves up to now, or,
   * after a completed replay, the moments between its end and now are replayed once archive mode
   * has them. After a live session that ended without a normal close, the span from the hour of
   * the committed cursor to now is owed whatever the contact. Overlaps are removed by
   * de-duplication.
   */
  #liveOpened(now: number): void {
    const stale = this.#lastContact === undefined || now - this.#lastContact > this.#o.limits.thresholdMs;
    if (this.#takeUpDrop(now) || !stale) return;
    const r = this.#replay;
    if (r) {
      // Live takes over: a moving replay gets a fixed end.
      r.until = Math.max(r.until ?? now, now);
    } else {
      const archived = this.#tracker.current.archivedUntil;
      if (archived === undefined || archived >= now) return;
      this.#replay = { reason: 'live_start', from: archived, until: now, offsetMin: offsetOf(this.#tracker.current.ts) };
      this.#log.info(
        { from: formatUtc(archived), until: formatUtc(now) },
        'Live session opened after an archive replay: the moments in between are replayed once archive mode serves them.',
      );
    }
    this.#recordOwed();
  }

  /** Turns a pending live drop into a replay up to `now` (merged with one pending); true if there was one. */
  #takeUpDrop(now: number): boolean {
    const from = this.#dropFrom;
    if (from === undefined) return false;
    this.#dropFrom = undefined;
    this.#o.ctx.metrics.inc('pod_live_drop_replays_total', { service: this.name });
    const r = this.#replay;
    if (r) {
      if (from < r.from) {
        r.from = from;
        delete r.partialTo;
      }
      r.until = Math.max(r.until ?? now, now);
    } else {
      this.#replay = { reason: 'live_drop', from, until: now, offsetMin: offsetOf(this.#committed?.ts ?? this.#tracker.current.ts) };
    }
    this.#log.info(
      { from: formatUtc(this.#replay!.from), until: formatUtc(this.#replay!.until!) },
      'A live session ended without a normal close, so what was in flight may never be sent live again: this span is replayed once archive mode serves it.',
    );
    this.#recordOwed();
    return true;
  }

  #archiveEnded(step: ArchiveStep, end: SessionEnd, closedFor: ClosedFor | undefined, lateFrames: number, stats: SessionStats): void {
    const { ctx } = this.#o;
    const info = { pulling_id: stats.pullingId, mode: step.mode, code: end.code, ...(end.reason ? { reason: end.reason } : {}), frames: stats.frames, since: formatUtc(step.since), to: formatUtc(step.to) };
    // Positive evidence only: the server's normal close, or our close after a silence while reading.
    const closedNormally = !end.byClient && end.closeFrame && end.code === 1000;
    const quietEnd = closedFor === 'idle' && lateFrames === 0;
    const r = this.#replay;
    if (!end.error && (closedNormally || quietEnd) && r) {
      windowServed(r, step);
      if (!step.partial) this.#tracker.markArchived(step.to);
      if (this.#window) ctx.metrics.set('pod_archive_windows_stuck', { service: this.name }, 0);
      this.#window = undefined;
      this.#windowBackoff.reset();
      this.#recordOwed();
      // The window's completion commits after its last event.
      this.#closeBatch(true, stats);
      stats.end(quietEnd ? 'window complete (idle)' : 'window complete');
      this.#log.info(
        { ...info, ...(step.partial ? { partial: true } : {}) },
        step.partial ? 'PoD partial archive window served; its hour is asked again whole once archive mode has all of it.' : 'PoD archive window complete.',
      );
      return;
    }
    const how = end.error ? 'failed' : closedFor === 'idle' ? 'frames after the idle close' : closedFor ?? (end.closeFrame ? `closed by the server with ${end.code}` : 'dropped');
    stats.end(how);
    if (closedFor === 'shutdown') return;
    const attempts = this.#countAttempt(step);
    ctx.metrics.inc('pod_archive_windows_retried_total', { service: this.name, end: end.error ? 'error' : closedFor === 'idle' ? 'late_frames' : String(end.code) });
    this.#retryDelay = this.#windowBackoff.next();
    ctx.health.set(this.name, 'degraded', end.error?.message ?? `archive window ended without completing (${how}), asked ${attempts} time(s)`);
    const line = { ...info, ended: how, attempts, retry_in_secs: Math.round(this.#retryDelay / 1000), ...(end.error ? { err: end.error.message } : {}) };
    if (attempts >= WINDOW_ATTEMPTS_REPORTED) {
      this.#log.error(line, 'PoD archive window keeps ending without completing; it is asked again with backoff, never skipped. Run check --online --probe to see how this tenant ends archive windows.');
    } else {
      this.#log.warn(line, 'PoD archive session ended before its window was complete (only close 1000 or a silence while reading completes one); the window is asked again.');
    }
  }

  #liveEnded(end: SessionEnd, closedFor: ClosedFor | undefined, stats: SessionStats, openedAt: number): void {
    const { ctx } = this.#o;
    const info = { pulling_id: stats.pullingId, mode: 'live', code: end.code, ...(end.reason ? { reason: end.reason } : {}), frames: stats.frames };
    stats.end(end.error ? 'failed' : closedFor ?? (end.closeFrame ? 'closed by server' : 'dropped'));
    // A normal close: the server's 1000, or the answer to ours. Anything else may have lost
    // frames in flight, and the server's live resume point is its own, not our acknowledgement.
    const normal = !end.error && end.closeFrame && (end.byClient || end.code === 1000);
    if (normal && this.#o.cfg.replay_live_interruptions && closedFor !== 'shutdown') {
      // Where the next live session resumes is the server's word only: owe the moments between.
      this.#dropFrom = Math.min(this.#dropFrom ?? Infinity, ctx.clock.now());
    } else if (!normal) {
      const c = this.#committed;
      const from = floorHour(Math.min(cursorTimeMs(c) ?? Infinity, openedAt), offsetOf(c?.ts ?? this.#tracker.current.ts));
      this.#dropFrom = Math.min(this.#dropFrom ?? Infinity, from);
      // Stopping: the replay rides on the last batch, so the next start takes it up.
      if (closedFor === 'shutdown' && this.#takeUpDrop(ctx.clock.now())) this.#closeBatch(true, stats);
    }
    if (closedFor === 'shutdown' || closedFor === 'replay_due') return;
    ctx.metrics.inc('pod_reconnects_total', { service: this.name });
    if (end.error) {
      ctx.health.set(this.name, 'degraded', end.error.message);
      this.#log.warn({ ...info, err: end.error.message }, 'PoD live session failed; reconnecting.');
    } else if (!end.closeFrame) {
      this.#log.warn(info, 'PoD live session dropped without a close frame; reconnecting.');
    } else if (!normal) {
      this.#log.warn(info, 'PoD closed the live session with an abnormal code; reconnecting.');
    } else {
      this.#log.info(info, 'PoD closed the live session; reconnecting.');
    }
  }

  #frame(stats: SessionStats, text: string, bytes: number): void {
    stats.frame(bytes);
    const f = this.#fill(stats);
    let r: FrameResult;
    try {
      r = parseFrame(this.name, text);
    } catch (err) {
      // One frame that cannot be handled is kept and never stops its stream.
      r = { ok: false, reason: `could not be handled: ${(err as Error).message}` };
    }
    if (r.ok) {
      this.#tracker.observe(r.frame.ts, r.frame.time);
      stats.observe(r.frame.ts, r.frame.time);
      f.events.push(r.frame.event);
    } else {
      stats.rejected++;
      f.rejected.push({ reason: r.reason, raw: text });
      if (stats.rejected <= REJECTS_LOGGED) {
        this.#log.warn({ pulling_id: stats.pullingId, reason: r.reason, bytes }, 'PoD frame is not a usable event: dead-lettered, the session goes on.');
      }
    }
    f.bytes += bytes;
    this.#frames++;
    this.#bytes += bytes;
    if (f.events.length + f.rejected.length >= this.#o.cfg.batch_max_events) this.#closeBatch(false);
    if (this.#over() && this.#socket && !this.#socket.paused) {
      this.#socket.pause();
      this.#idle?.cancel();
    }
  }

  #fill(stats: SessionStats): Filling {
    if (this.#filling && this.#filling.stats !== stats) this.#closeBatch(false);
    if (!this.#filling) {
      const f: Filling = { stats, events: [], rejected: [], bytes: 0 };
      f.cancelFlush = this.#o.ctx.clock.setTimer(this.#o.cfg.batch_flush_secs * 1000, () => {
        if (this.#filling === f) this.#closeBatch(false);
      });
      this.#filling = f;
    }
    return this.#filling;
  }

  #over(): boolean {
    return this.#frames >= this.#o.cfg.max_buffered_frames || this.#bytes >= this.#o.cfg.max_buffered_bytes;
  }

  /**
   * Hands out the batch being filled. With `force`, also a batch without events, so the cursor
   * (a completed archive window, a live contact on a quiet stream) is committed.
   */
  #closeBatch(force = false, stats?: SessionStats): void {
    const f = this.#filling;
    if (!f && !force) return;
    this.#filling = undefined;
    f?.cancelFlush?.();
    const owner = f?.stats ?? stats;
    const cursor = this.#tracker.snapshot();
    const counted = owner?.expect();
    const replayReason = owner?.mode === 'archive' ? this.#replay?.reason : undefined;
    const metrics = this.#o.ctx.metrics;
    const batch: Batch<PodCursor> = {
      service: this.name,
      pullingId: owner?.pullingId ?? this.#o.nextPullingId(),
      events: f?.events ?? [],
      cursor,
      ...(f && f.rejected.length ? { rejected: f.rejected } : {}),
      onCommitted: (o) => {
        this.#committed = cursor;
        counted?.(o);
        if (replayReason && o.duplicates > 0) metrics.inc('pod_replay_duplicates_total', { service: this.name, reason: replayReason }, o.duplicates);
      },
    };
    this.#ready.push({ batch, frames: f ? f.events.length + f.rejected.length : 0, bytes: f?.bytes ?? 0 });
    this.#o.notify();
  }
}

/** Empty (or whitespace-only) text frame: no event. The common case, a JSON object, is decided at once. */
function isEmptyFrame(text: string): boolean {
  return text.charCodeAt(0) !== 123 && text.trim() === '';
}
