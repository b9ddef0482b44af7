/**
 * One service's stream (message, maillog or audit): its sessions one after another, live or
 * archive, and the bounded buffer between its socket and the pipeline.
 *
 * - Sessions of a service never overlap: the server allows one per token and type (409), and an
 *   archive replay must not collide with the live session.
 * - Connection attempts are at least `request_period_in_seconds` apart (the Devo collector's
 *   meaning); refusals and failures back off further, capped at `retry_max_secs`.
 * - Which session comes next and what each one's end owes is replay-plan.ts's (on mode.ts's
 *   rules); one session's course is session.ts's; frames are held and batched in batches.ts,
 *   which pauses the socket when its bounds are reached.
 * - The stream never writes state. The cursor rides on the batches; an archive window's
 *   completion and the replay still owed ride on the batch that follows the window's last frame.
 */
import type http from 'node:http';
import type { ClientOptions } from 'ws';
import type { Logger } from 'pino';
import type { Batch, SourceContext } from '../source.ts';
import { Backoff } from '../../util/backoff.ts';
import { formatUtc, parseTimestampMs } from '../../util/time.ts';
import { SidecarError, VendorHttpError, VendorRequestError } from '../../errors.ts';
import type { PodInputConfig, PodServiceConfig, PodServiceName } from './config.ts';
import { CursorTracker, readCursor, type PodCursor } from './cursor.ts';
import { podStreamUrl, type ModeLimits, type Step } from './mode.ts';
import { openSocket, type OpenedSocket } from './socket.ts';
import { PodCredentialsError, PodSessionConflictError } from './errors.ts';
import { BatchBuffer } from './batches.ts';
import { ReplayPlan, WINDOW_ATTEMPTS_REPORTED, type ArchiveStep } from './replay-plan.ts';
import { archiveEnd, liveEnd, runSession, type SessionOutcome } from './session.ts';

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

export class ServiceStream {
  readonly name: PodServiceName;
  /** Set when the service stopped for good (401, 400, 404, 405; or an unexpected error, a bug). */
  fatal?: Error;
  done = false;
  readonly #o: StreamOptions;
  readonly #log: Logger;
  readonly #tracker = new CursorTracker();
  readonly #buffer: BatchBuffer;
  readonly #plan: ReplayPlan;
  #lastAttempt = -Infinity;
  #retryDelay = 0;
  readonly #backoff: Backoff;

  constructor(o: StreamOptions) {
    this.#o = o;
    this.name = o.name;
    const { ctx, cfg } = o;
    this.#log = ctx.logger.child({ service: o.name });
    const period = o.svc.request_period_in_seconds * 1000;
    const retry = { minMs: period, maxMs: Math.max(period, cfg.retry_max_secs * 1000) };
    this.#backoff = new Backoff(retry);
    this.#plan = new ReplayPlan({
      service: o.name,
      limits: o.limits,
      clock: ctx.clock,
      metrics: ctx.metrics,
      health: ctx.health,
      log: this.#log,
      tracker: this.#tracker,
      retry,
      replayLiveInterruptions: cfg.replay_live_interruptions,
      checkpoint: (stats) => this.#buffer.close(true, stats),
    });
    this.#buffer = new BatchBuffer({
      service: o.name,
      cfg,
      clock: ctx.clock,
      metrics: ctx.metrics,
      log: this.#log,
      tracker: this.#tracker,
      nextPullingId: o.nextPullingId,
      notify: o.notify,
      replayReason: () => this.#plan.replayReason,
      onCommitted: (cursor) => this.#plan.committed(cursor),
    });
  }

  /** Frames and bytes held (filling or ready, not yet taken). */
  get buffered(): { frames: number; bytes: number } {
    return this.#buffer.buffered;
  }

  get paused(): boolean {
    return this.#buffer.paused;
  }

  /** The next ready batch, if any; taking it may let the socket read again. */
  take(): Batch<PodCursor> | undefined {
    return this.#buffer.take();
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
      this.#buffer.close();
      this.done = true;
      this.#o.notify();
    }
  }

  async #init(): Promise<void> {
    const { ctx, svc } = this.#o;
    const { cursor, problem } = readCursor(await ctx.cursor<unknown>(this.name));
    if (problem) this.#log.warn({ problem }, 'Stored PoD cursor not understood; starting as if there were none.');
    this.#tracker.restore(cursor);
    const startTimeMs = cursor === undefined && svc.start_time !== undefined ? parseTimestampMs(svc.start_time) : undefined;
    if (ctx.resetServices.has(this.name)) this.#log.warn({ start_time: svc.start_time }, 'The start_time of this service changed: it starts over from it.');
    this.#plan.start(cursor, { uncleanShutdown: ctx.uncleanShutdown, startTimeMs });
  }

  /** One attempt: wait for its turn, open the session the plan asks for, run it to its end. */
  async #once(): Promise<void> {
    if (!(await this.#waitTurn())) return;
    const now = this.#o.ctx.clock.now();
    const step = this.#plan.nextStep(now);
    this.#lastAttempt = now;
    const opened = await this.#open(step);
    if (!opened) return;
    this.#backoff.reset();
    this.#retryDelay = 0;
    const { ctx, cfg, signal, endpoint } = this.#o;
    ctx.metrics.inc('pod_sessions_total', { service: this.name, mode: step.mode });
    ctx.health.set(this.name, 'ok');
    const outcome = await runSession(opened, step, {
      service: this.name,
      cfg,
      clock: ctx.clock,
      signal,
      log: this.#log,
      metrics: ctx.metrics,
      endpoint,
      buffer: this.#buffer,
      plan: this.#plan,
      nextPullingId: this.#o.nextPullingId,
    });
    if (step.mode === 'archive') this.#archiveEnded(step, outcome);
    else this.#liveEnded(outcome);
  }

  /** Waits until the request period and any backoff passed; false when aborted meanwhile. */
  async #waitTurn(): Promise<boolean> {
    const { ctx, signal, svc } = this.#o;
    const wait = Math.max(this.#lastAttempt + svc.request_period_in_seconds * 1000 - ctx.clock.now(), this.#retryDelay);
    if (wait <= 0) return true;
    try {
      await ctx.clock.sleep(wait, signal);
      return true;
    } catch {
      return false;
    }
  }

  /** The open socket of `step`'s session, or undefined when it was refused (handled) or aborted. */
  async #open(step: Step): Promise<OpenedSocket | undefined> {
    const { ctx, cfg, signal, endpoint } = this.#o;
    try {
      return await openSocket({
        url: podStreamUrl(endpoint, cfg.credentials.cluster_id, this.name, step.mode === 'archive' ? step : undefined),
        apiKey: cfg.credentials.api_key,
        service: this.name,
        handshakeTimeoutMs: cfg.handshake_timeout_secs * 1000,
        maxFrameBytes: cfg.max_frame_bytes,
        perMessageDeflate: cfg.per_message_deflate,
        closeTimeoutMs: cfg.close_timeout_secs * 1000,
        agent: this.#o.agent,
        wsOptions: this.#o.wsOptions,
        userAgent: ctx.userAgent,
        signal,
      });
    } catch (err) {
      if (!signal.aborted) this.#refused(err as Error, step);
      return undefined;
    }
  }

  #refused(err: Error, step: Step): void {
    const health = this.#o.ctx.health;
    const e = err instanceof SidecarError ? err : new VendorRequestError(`PoD ${this.name} connection failed: ${err.message}`, err);
    const http = e instanceof VendorHttpError || e instanceof PodCredentialsError ? e : undefined;
    const base = { mode: step.mode, code: e.code, ...(http ? { status: http.status, server_text: http.body } : {}) };
    if (step.mode === 'archive' && http?.status === 400) {
      this.#plan.archiveRejected(step, base);
      return;
    }
    if (e.fatal) {
      this.fatal = e;
      health.set(this.name, 'failed', e.message);
      this.#log.error({ ...base, err: e.message }, 'PoD refused this service for good: it is stopped until restart; the other services go on.');
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

  #archiveEnded(step: ArchiveStep, { end, closedFor, lateFrames, stats }: SessionOutcome): void {
    const { ctx } = this.#o;
    const info = { pulling_id: stats.pullingId, mode: step.mode, code: end.code, ...(end.reason ? { reason: end.reason } : {}), frames: stats.frames, since: formatUtc(step.since), to: formatUtc(step.to) };
    const e = archiveEnd(end, closedFor, lateFrames);
    // The window's completion commits after its last event.
    if (e.complete && this.#plan.windowComplete(step, stats)) {
      stats.end(e.quiet ? 'window complete (idle)' : 'window complete');
      this.#log.info(
        { ...info, ...(step.partial ? { partial: true } : {}) },
        step.partial ? 'PoD partial archive window served; its hour is asked again whole once archive mode has all of it.' : 'PoD archive window complete.',
      );
      return;
    }
    stats.end(e.how);
    if (closedFor === 'shutdown') return;
    const { attempts, retryDelayMs } = this.#plan.windowFailed(step);
    ctx.metrics.inc('pod_archive_windows_retried_total', { service: this.name, end: e.retried });
    this.#retryDelay = retryDelayMs;
    ctx.health.set(this.name, 'degraded', end.error?.message ?? `archive window ended without completing (${e.how}), asked ${attempts} time(s)`);
    const line = { ...info, ended: e.how, attempts, retry_in_secs: Math.round(this.#retryDelay / 1000), ...(end.error ? { err: end.error.message } : {}) };
    if (attempts >= WINDOW_ATTEMPTS_REPORTED) {
      this.#log.error(line, 'PoD archive window keeps ending without completing; it is asked again with backoff, never skipped. Run check --online --probe to see how this tenant ends archive windows.');
    } else {
      this.#log.warn(line, 'PoD archive session ended before its window was complete (only close 1000 or a silence while reading completes one); the window is asked again.');
    }
  }

  #liveEnded({ end, closedFor, stats, openedAt }: SessionOutcome): void {
    const { ctx } = this.#o;
    const info = { pulling_id: stats.pullingId, mode: 'live', code: end.code, ...(end.reason ? { reason: end.reason } : {}), frames: stats.frames };
    const { normal, how } = liveEnd(end, closedFor);
    stats.end(how);
    this.#plan.liveEnded(normal, closedFor, openedAt, stats);
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
}
