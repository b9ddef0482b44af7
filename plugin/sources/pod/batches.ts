/**
 * The bounded buffer between one service's socket and the pipeline: the batch being filled and
 * the batches ready to be taken.
 *
 * - Frames become events (or dead-letter entries) of the batch being filled; it is handed out at
 *   `batch_max_events`, `batch_flush_secs` after its first frame, or when the session that filled
 *   it ends (a batch never spans two sessions, so its `pulling_id` is exact).
 * - Frames held here, filled or ready and not yet taken, are bounded by `max_buffered_frames` /
 *   `max_buffered_bytes`: beyond them the attached flow (the open session's socket) is paused,
 *   and it resumes once both are at or below half.
 * - Every batch carries a snapshot of the cursor as it stood when the batch was closed; the
 *   buffer never writes state: `onCommitted` reports the cursor the pipeline acknowledged.
 */
import type { Logger } from 'pino';
import type { Batch, RejectedInput, SourceEvent, SourceMetrics } from '../source.ts';
import type { Clock } from '../../util/clock.ts';
import type { PodInputConfig, PodServiceName } from './config.ts';
import type { CursorTracker, PodCursor } from './cursor.ts';
import { parseFrame, type FrameResult } from './identity.ts';
import type { SessionStats } from './stats.ts';

/** Most rejected frames logged one by one per session; the rest are counted. */
const REJECTS_LOGGED = 3;

/** What the buffer holds back when it is full: the open session's reading. */
export interface Flow {
  readonly paused: boolean;
  pause(): void;
  resume(): void;
}

export interface BatchBufferOptions {
  service: PodServiceName;
  cfg: Pick<PodInputConfig, 'batch_max_events' | 'batch_flush_secs' | 'max_buffered_frames' | 'max_buffered_bytes'>;
  clock: Clock;
  metrics: SourceMetrics;
  log: Logger;
  /** The service's cursor: frames raise it, batches carry snapshots of it. */
  tracker: CursorTracker;
  nextPullingId(): number;
  /** Called when a batch is ready. */
  notify(): void;
  /** The reason of the archive replay under way, labelling duplicates found in archive batches. */
  replayReason(): string | undefined;
  /** A batch was committed (in order) with this cursor. */
  onCommitted(cursor: PodCursor): void;
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

export class BatchBuffer {
  readonly #o: BatchBufferOptions;
  readonly #ready: Ready[] = [];
  #filling?: Filling;
  #frames = 0;
  #bytes = 0;
  #handedOut = 0;
  #flow?: Flow;

  constructor(o: BatchBufferOptions) {
    this.#o = o;
  }

  /** Frames and bytes held (filling or ready, not yet taken). */
  get buffered(): { frames: number; bytes: number } {
    return { frames: this.#frames, bytes: this.#bytes };
  }

  get paused(): boolean {
    return this.#flow?.paused ?? false;
  }

  /** Batches taken so far (a quiet stream hands out none between two checks). */
  get handedOut(): number {
    return this.#handedOut;
  }

  /** A batch is being filled. */
  get filling(): boolean {
    return this.#filling !== undefined;
  }

  /** The flow held back while the buffer is full; `undefined` when no session reads. */
  attach(flow: Flow | undefined): void {
    this.#flow = flow;
  }

  /** The bound is reached: the open session must not read. */
  over(): boolean {
    return this.#frames >= this.#o.cfg.max_buffered_frames || this.#bytes >= this.#o.cfg.max_buffered_bytes;
  }

  /** The next ready batch, if any; taking it may let the flow read again. */
  take(): Batch<PodCursor> | undefined {
    const r = this.#ready.shift();
    if (!r) return undefined;
    this.#frames -= r.frames;
    this.#bytes -= r.bytes;
    this.#handedOut++;
    const { max_buffered_frames: maxFrames, max_buffered_bytes: maxBytes } = this.#o.cfg;
    if (this.#flow?.paused && this.#frames <= maxFrames / 2 && this.#bytes <= maxBytes / 2) this.#flow.resume();
    return r.batch;
  }

  /** One non-empty text frame of the session `stats` belongs to: an event or a dead-letter entry. */
  frame(stats: SessionStats, text: string, bytes: number): void {
    stats.frame(bytes);
    const f = this.#fill(stats);
    let r: FrameResult;
    try {
      r = parseFrame(this.#o.service, text);
    } catch (err) {
      // One frame that cannot be handled is kept and never stops its stream.
      r = { ok: false, reason: `could not be handled: ${(err as Error).message}` };
    }
    if (r.ok) {
      this.#o.tracker.observe(r.frame.ts, r.frame.time);
      stats.observe(r.frame.ts, r.frame.time);
      f.events.push(r.frame.event);
    } else {
      stats.rejected++;
      f.rejected.push({ reason: r.reason, raw: text });
      if (stats.rejected <= REJECTS_LOGGED) {
        this.#o.log.warn({ pulling_id: stats.pullingId, reason: r.reason, bytes }, 'PoD frame is not a usable event: dead-lettered, the session goes on.');
      }
    }
    f.bytes += bytes;
    this.#frames++;
    this.#bytes += bytes;
    if (f.events.length + f.rejected.length >= this.#o.cfg.batch_max_events) this.close(false);
    if (this.over() && this.#flow && !this.#flow.paused) this.#flow.pause();
  }

  /**
   * Hands out the batch being filled. With `force`, also a batch without events, so the cursor
   * (a completed archive window, a live contact on a quiet stream) is committed; `stats` then
   * names the session it belongs to.
   */
  close(force = false, stats?: SessionStats): void {
    const f = this.#filling;
    if (!f && !force) return;
    this.#filling = undefined;
    f?.cancelFlush?.();
    const owner = f?.stats ?? stats;
    const cursor = this.#o.tracker.snapshot();
    const counted = owner?.expect();
    const replayReason = owner?.mode === 'archive' ? this.#o.replayReason() : undefined;
    const { metrics, service } = this.#o;
    const batch: Batch<PodCursor> = {
      service,
      pullingId: owner?.pullingId ?? this.#o.nextPullingId(),
      events: f?.events ?? [],
      cursor,
      ...(f && f.rejected.length ? { rejected: f.rejected } : {}),
      onCommitted: (o) => {
        this.#o.onCommitted(cursor);
        counted?.(o);
        if (replayReason && o.duplicates > 0) metrics.inc('pod_replay_duplicates_total', { service, reason: replayReason }, o.duplicates);
      },
    };
    this.#ready.push({ batch, frames: f ? f.events.length + f.rejected.length : 0, bytes: f?.bytes ?? 0 });
    this.#o.notify();
  }

  #fill(stats: SessionStats): Filling {
    if (this.#filling && this.#filling.stats !== stats) this.close(false);
    if (!this.#filling) {
      const f: Filling = { stats, events: [], rejected: [], bytes: 0 };
      f.cancelFlush = this.#o.clock.setTimer(this.#o.cfg.batch_flush_secs * 1000, () => {
        if (this.#filling === f) this.close(false);
      });
      this.#filling = f;
    }
    return this.#filling;
  }
}
