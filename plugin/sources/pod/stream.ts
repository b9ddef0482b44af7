/**
 * One service's stream (message, maillog or audit): its sessions one after another, live or
 * archive (mode.ts), and the bounded buffer between its socket and the pipeline.
 *
 * - Sessions of a service never overlap: the server allows one per token and type (409), and an
 *   archive replay must not collide with the live session.
 * - Connection attempts are at least `request_period_in_seconds` apart (the Devo collector's
 *   meaning); refusals and failures back off further, capped at `retry_max_secs`.
 * - Frames become events in the batch being filled; it is handed out at `batch_max_events` or
 *   `batch_flush_ms` after its first frame, and at the end of every session (a batch never spans
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
import { formatUtc, parseTimestampMs } from '../../util/time.ts';
import { SidecarError, VendorHttpError, VendorRequestError } from '../../errors.ts';
import type { PodInputConfig, PodServiceConfig, PodServiceName } from './config.ts';
import { CursorTracker, coveredUntil, readCursor, type PodCursor } from './cursor.ts';
import { parseFrame } from './identity.ts';
import { nextStep, podStreamUrl, offsetOf, replayAfterDrop, replayAtStart, replayDone, type ModeLimits, type Replay, type Step } from './mode.ts';
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

  constructor(o: StreamOptions) {
    this.#o = o;
    this.name = o.name;
    this.#log = o.ctx.logger.child({ service: o.name });
    const period = o.svc.request_period_in_seconds * 1000;
    this.#backoff = new Backoff({ minMs: period, maxMs: Math.max(period, o.cfg.retry_max_secs * 1000) });
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
    if (this.#socket?.paused && this.#frames <= maxFrames / 2 && this.#bytes <= maxBytes / 2) this.#socket.resume();
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
    if (ctx.resetServices.has(this.name)) this.#log.warn({ start_time: svc.start_time }, 'start_time changed: this service starts over from it.');
    if (this.#replay) this.#announce(this.#replay, now);
    this.#recordOwed();
  }

  #announce(r: Replay, now: number): void {
    const target = r.until ?? now - this.#o.limits.thresholdMs;
    this.#log.info(
      { reason: r.reason, from: formatUtc(r.from), until: formatUtc(target), ...(r.until === undefined ? { until_moves: 'live takes over' } : {}) },
      r.reason === 'unclean_shutdown'
        ? 'Previous run did not shut down cleanly: replaying from the hour of the committed cursor in archive mode, one session at a time.'
        : r.reason === 'outage'
          ? 'Contact lost for longer than the live resume covers: replaying the gap in archive mode before going live.'
          : r.reason === 'live_start'
            ? 'Taking up the replay of the moments before the last live start, owed by the previous run.'
            : 'Replaying from start_time in archive mode before going live.',
    );
    if (r.clampedFrom !== undefined) {
      this.#log.warn(
        { requested_from: formatUtc(r.clampedFrom), from: formatUtc(r.from) },
        'Archive mode reaches back 30 days at most: events before that cannot be replayed.',
      );
    }
  }

  /** A fixed-end replay rides on the cursor until done, so a restart takes it up again. */
  #recordOwed(): void {
    const r = this.#replay;
    this.#tracker.setOwed(r && r.until !== undefined ? { reason: r.reason, from: r.from, until: r.until, offsetMin: r.offsetMin } : undefined);
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
        this.#replay = r;
        this.#announce(r, now);
      }
    }
    if (this.#replay && replayDone(this.#replay, now, limits, this.#lastContact)) {
      this.#log.info({ reason: this.#replay.reason, replayed_until: formatUtc(this.#replay.from) }, 'Archive replay complete; streaming live.');
      this.#replay = undefined;
      this.#recordOwed();
      this.#closeBatch(true);
    }
    const step = nextStep(this.#replay, now, limits, this.#lastContact);
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
    const base = { mode: step.mode, code: e.code, ...(http ? { status: http.status, server_text: http.body.trim().slice(0, 512) } : {}) };
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
    let closedFor: 'shutdown' | 'replay_due' | 'idle' | undefined;
    let cancelIdle: (() => void) | undefined;
    const armIdle = () => {
      cancelIdle?.();
      cancelIdle = clock.setTimer(cfg.archive_idle_timeout_secs * 1000, () => {
        closedFor = 'idle';
        socket.close(1000, 'window complete', cfg.close_timeout_secs * 1000);
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
        if (!live && closedFor === undefined) armIdle();
        this.#frame(stats, text, bytes);
      },
    });
    this.#socket = socket;
    if (live) {
      const now = clock.now();
      // A live session opened without recent contact may start at "now" on the server (a first
      // session, or one after more than an hour): a fixed-end replay must then reach this moment.
      this.#liveOpened(now);
      this.#lastContact = now;
      this.#tracker.markLive(now);
    } else {
      armIdle();
    }
    if (this.#over()) socket.pause();

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
        timers.push(
          clock.setTimer(Math.max(0, dueAt - clock.now()), () => {
            closedFor = 'replay_due';
            socket.close(1000, 'archive replay due', cfg.close_timeout_secs * 1000);
          }),
        );
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
    cancelIdle?.();
    this.#socket = undefined;
    this.#closeBatch(false);
    this.#ended(step, end, closedFor, stats);
  }

  /**
   * A live session opened without contact within the threshold may start at "now" on the server
   * (a token's first session; after a longer gap the server is documented to serve its last
   * hour, but a first session is not documented). Whatever archive mode did not reach before
   * this moment is therefore owed too: the end of a pending fixed replay moves up to now, or,
   * after a completed replay, the moments between its end and now are replayed once archive mode
   * has them. Overlaps are removed by de-duplication.
   */
  #liveOpened(now: number): void {
    const stale = this.#lastContact === undefined || now - this.#lastContact > this.#o.limits.thresholdMs;
    if (!stale) return;
    const r = this.#replay;
    if (r?.until !== undefined) {
      if (now > r.until) r.until = now;
    } else if (!r) {
      const archived = this.#tracker.current.archivedUntil;
      if (archived === undefined || archived >= now) return;
      this.#replay = { reason: 'live_start', from: archived, until: now, offsetMin: offsetOf(this.#tracker.current.ts) };
      this.#log.info(
        { from: formatUtc(archived), until: formatUtc(now) },
        'Live session opened after an archive replay: the moments in between are replayed once archive mode serves them.',
      );
    } else return;
    this.#recordOwed();
  }

  #ended(step: Step, end: SessionEnd, closedFor: 'shutdown' | 'replay_due' | 'idle' | undefined, stats: SessionStats): void {
    const { ctx } = this.#o;
    const info = { pulling_id: stats.pullingId, mode: step.mode, code: end.code, ...(end.reason ? { reason: end.reason } : {}), frames: stats.frames };
    if (step.mode === 'archive') {
      const complete = !end.error && (closedFor === 'idle' || (!end.byClient && end.closeFrame));
      if (complete && this.#replay) {
        this.#replay.from = Math.max(this.#replay.from, step.to);
        this.#tracker.markArchived(step.to);
        this.#recordOwed();
        // The window's completion commits after its last event.
        this.#closeBatch(true, stats);
        stats.end(closedFor === 'idle' ? 'window complete (idle)' : 'window complete');
        this.#log.info({ ...info, since: formatUtc(step.since), to: formatUtc(step.to) }, 'PoD archive window complete.');
        return;
      }
      stats.end(end.error ? 'failed' : closedFor ?? 'dropped');
      if (closedFor === 'shutdown') return;
      ctx.health.set(this.name, 'degraded', end.error?.message ?? `archive session ended early (code ${end.code})`);
      this.#log.warn({ ...info, err: end.error?.message }, 'PoD archive session ended before its window was complete; the window is asked again.');
      return;
    }
    stats.end(end.error ? 'failed' : closedFor ?? (end.closeFrame ? 'closed by server' : 'dropped'));
    if (closedFor === 'shutdown' || closedFor === 'replay_due') return;
    ctx.metrics.inc('pod_reconnects_total', { service: this.name });
    if (end.error) {
      ctx.health.set(this.name, 'degraded', end.error.message);
      this.#log.warn({ ...info, err: end.error.message }, 'PoD live session failed; reconnecting (the server resumes a live session dropped less than an hour ago).');
    } else if (!end.closeFrame) {
      this.#log.warn(info, 'PoD live session dropped without a close frame; reconnecting (the server resumes a live session dropped less than an hour ago).');
    } else {
      this.#log.info(info, 'PoD closed the live session; reconnecting.');
    }
  }

  #frame(stats: SessionStats, text: string, bytes: number): void {
    stats.frame(bytes);
    const f = this.#fill(stats);
    const r = parseFrame(this.name, text);
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
    if (this.#over()) this.#socket?.pause();
  }

  #fill(stats: SessionStats): Filling {
    if (this.#filling && this.#filling.stats !== stats) this.#closeBatch(false);
    if (!this.#filling) {
      const f: Filling = { stats, events: [], rejected: [], bytes: 0 };
      f.cancelFlush = this.#o.ctx.clock.setTimer(this.#o.cfg.batch_flush_ms, () => {
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
    const batch: Batch<PodCursor> = {
      service: this.name,
      pullingId: owner?.pullingId ?? this.#o.nextPullingId(),
      events: f?.events ?? [],
      cursor: this.#tracker.snapshot(),
      ...(f && f.rejected.length ? { rejected: f.rejected } : {}),
      ...(owner ? { onCommitted: owner.expect() } : {}),
    };
    this.#ready.push({ batch, frames: f ? f.events.length + f.rejected.length : 0, bytes: f?.bytes ?? 0 });
    this.#o.notify();
  }
}
