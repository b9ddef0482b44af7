/**
 * The archive replay one service owes and the windows it asks for it: what is owed at start,
 * after contact was lost, after a live session ended without a normal close, and what each
 * archive window's end or refusal changes. The decisions themselves are mode.ts's; this keeps
 * their state between sessions.
 *
 * - A fixed-end replay rides on the cursor (`owed`) until done, so a restart takes it up again;
 *   it is committed only with the batch that follows the last frame it covers.
 * - Nothing is skipped: a window that does not complete is asked again with backoff; only what
 *   the server no longer serves (older than its 30 days) becomes an explicit gap in the cursor.
 */
import type { Logger } from 'pino';
import type { HealthReporter, SourceMetrics } from '../source.ts';
import type { Clock } from '../../util/clock.ts';
import { Backoff } from '../../util/backoff.ts';
import { BackfillProgress } from '../../telemetry/progress.ts';
import { formatUtc } from '../../util/time.ts';
import type { PodServiceName } from './config.ts';
import { coveredUntil, cursorTimeMs, type CursorTracker, type PodCursor } from './cursor.ts';
import {
  floorHour,
  nextStep,
  offsetOf,
  pinPartial,
  replayAfterDrop,
  replayAtStart,
  replayCaughtUp,
  replayDone,
  windowServed,
  type ModeLimits,
  type Replay,
  type ReplayReason,
  type Step,
} from './mode.ts';
import type { ClosedFor } from './session.ts';
import type { SessionStats } from './stats.ts';

/** An archive window asked this many times without completing is reported (and still retried). */
export const WINDOW_ATTEMPTS_REPORTED = 5;
const HOUR = 3600_000;

export type ArchiveStep = Extract<Step, { mode: 'archive' }>;
export type LiveStep = Extract<Step, { mode: 'live' }>;

export interface ReplayPlanOptions {
  service: PodServiceName;
  limits: ModeLimits;
  clock: Clock;
  metrics: SourceMetrics;
  health: HealthReporter;
  log: Logger;
  /** The service's cursor, shared with its batches. */
  tracker: CursorTracker;
  /** Bounds of the backoff before a window that did not complete is asked again. */
  retry: { minMs: number; maxMs: number };
  /** `replay_live_interruptions`: also owe the moments between two normally closed live sessions. */
  replayLiveInterruptions: boolean;
  /** Hands out a batch, events or not, so the cursor it carries is committed. */
  checkpoint(stats?: SessionStats): void;
}

export class ReplayPlan {
  readonly #o: ReplayPlanOptions;
  #replay?: Replay;
  /** Last contact of a live session (or the moment up to which the stream is known covered). */
  #lastContact?: number;
  /** The cursor of the last batch committed (batches commit in order). */
  #committed?: PodCursor;
  /** Set when a live session ended without the server's normal close: replay from this hour. */
  #dropFrom?: number;
  /** Partial windows allowed (false after the server refused one: whole past hours only). */
  #partialAllowed = true;
  /** The archive window being asked and how often it was asked without completing. */
  #window?: { since: number; to: number; attempts: number };
  readonly #windowBackoff: Backoff;
  /** The owed archive replay's progress (backfill_* metrics and the periodic line). */
  readonly #progress: BackfillProgress;

  constructor(o: ReplayPlanOptions) {
    this.#o = o;
    this.#windowBackoff = new Backoff(o.retry);
    this.#progress = new BackfillProgress({ metrics: o.metrics, logger: o.log, clock: o.clock, service: o.service, label: `PoD ${o.service} archive replay` });
  }

  /** Why the replay under way is owed, if one is. */
  get replayReason(): string | undefined {
    return this.#replay?.reason;
  }

  /** Starts from the cursor read back from the state store. */
  start(cursor: PodCursor | undefined, f: { uncleanShutdown: boolean; startTimeMs?: number }): void {
    const now = this.#o.clock.now();
    this.#replay = replayAtStart({ now, cursor, uncleanShutdown: f.uncleanShutdown, startTimeMs: f.startTimeMs }, this.#o.limits);
    this.#lastContact = coveredUntil(cursor);
    this.#committed = cursor;
    if (this.#replay) this.#announce(this.#replay, now);
    this.#recordOwed();
    this.#o.metrics.set('pod_archive_windows_stuck', { service: this.#o.service }, 0);
  }

  committed(cursor: PodCursor): void {
    this.#committed = cursor;
  }

  /**
   * The session to open at `now`, decided after the wait between attempts: time moved, and with
   * it the gap since the last contact and what archive mode can serve.
   */
  nextStep(now: number): Step {
    const { limits, log } = this.#o;
    if (!this.#replay && this.#lastContact !== undefined) {
      const r = replayAfterDrop(now, this.#lastContact, this.#o.tracker.current, limits);
      if (r) {
        if (this.#dropFrom !== undefined) r.from = Math.min(r.from, this.#dropFrom);
        this.#dropFrom = undefined;
        this.#replay = r;
        this.#announce(r, now);
        this.#recordOwed();
      }
    }
    if (this.#replay && replayDone(this.#replay, now, limits, this.#lastContact)) {
      log.info({ reason: this.#replay.reason, replayed_until: formatUtc(this.#replay.from) }, 'Archive replay complete; streaming live.');
      this.#replay = undefined;
      this.#recordOwed();
      this.#o.checkpoint();
    } else if (this.#replay && this.#replay.until === undefined && replayCaughtUp(this.#replay, now, limits, this.#lastContact)) {
      // Caught up through partial windows: only the whole last hour remains, asked once available.
      this.#replay = pinPartial(this.#replay);
      log.info(
        { reason: this.#replay.reason, hour: formatUtc(this.#replay.from) },
        'Archive replay caught up; streaming live. The last hour is asked again whole once archive mode has all of it.',
      );
      this.#recordOwed();
    }
    return nextStep(this.#replay, now, limits, this.#lastContact, this.#partialAllowed);
  }

  /** A sign of life of a live session. */
  liveContact(at: number): void {
    this.#lastContact = at;
    this.#o.tracker.markLive(at);
  }

  /**
   * A live session opened at `now`. Without contact within the threshold it may start at "now"
   * on the server (a token's first session; after a longer gap the server is documented to serve
   * its last hour, but a first session is not documented). Whatever archive mode did not reach
   * before this moment is therefore owed too: the end of a pending replay moves up to now, or,
   * after a completed replay, the moments between its end and now are replayed once archive mode
   * has them. After a live session that ended without a normal close, the span from the hour of
   * the committed cursor to now is owed whatever the contact. Overlaps are removed by
   * de-duplication.
   */
  liveOpened(now: number): void {
    this.#oweLiveStart(now);
    this.liveContact(now);
  }

  /** The moment a live session must stop for the archive replay that becomes available, if any. */
  replayDueAt(step: LiveStep): number | undefined {
    return step.until ?? (this.#replay?.until !== undefined ? this.#replay.until + this.#o.limits.stalenessMs : undefined);
  }

  /**
   * A live session ended; `normal` when it was the server's 1000 or the answer to our close.
   * Anything else may have lost frames in flight, and the server's live resume point is its own,
   * not our acknowledgement: the span from the hour of the committed cursor is owed.
   */
  liveEnded(normal: boolean, closedFor: ClosedFor | undefined, openedAt: number, stats: SessionStats): void {
    const now = this.#o.clock.now();
    if (normal && this.#o.replayLiveInterruptions && closedFor !== 'shutdown') {
      // Where the next live session resumes is the server's word only: owe the moments between.
      this.#dropFrom = Math.min(this.#dropFrom ?? Infinity, now);
    } else if (!normal) {
      const c = this.#committed;
      const from = floorHour(Math.min(cursorTimeMs(c) ?? Infinity, openedAt), offsetOf(c?.ts ?? this.#o.tracker.current.ts));
      this.#dropFrom = Math.min(this.#dropFrom ?? Infinity, from);
      // Stopping: the replay rides on the last batch, so the next start takes it up.
      if (closedFor === 'shutdown' && this.#takeUpDrop(now)) this.#o.checkpoint(stats);
    }
  }

  /**
   * An archive window ended normally: records it served and commits its completion after its
   * last event. False, changing nothing, when no replay is owed.
   */
  windowComplete(step: ArchiveStep, stats: SessionStats): boolean {
    const r = this.#replay;
    if (!r) return false;
    windowServed(r, step);
    if (!step.partial) this.#o.tracker.markArchived(step.to);
    if (this.#window) this.#o.metrics.set('pod_archive_windows_stuck', { service: this.#o.service }, 0);
    this.#window = undefined;
    this.#windowBackoff.reset();
    this.#recordOwed();
    this.#o.checkpoint(stats);
    return true;
  }

  /** An archive window ended without completing: how often it was asked, and the wait before the next. */
  windowFailed(step: ArchiveStep): { attempts: number; retryDelayMs: number } {
    const attempts = this.#countAttempt(step);
    return { attempts, retryDelayMs: this.#windowBackoff.next() };
  }

  /**
   * A 400 on an archive handshake: the server refused this window's times. Never fatal (live
   * goes on meanwhile): a partial window is never asked again (whole past hours only); a window
   * at the 30-day edge that the server no longer serves becomes an explicit gap; any other window
   * is asked again after a backoff, reported after WINDOW_ATTEMPTS_REPORTED refusals.
   */
  archiveRejected(step: ArchiveStep, base: Record<string, unknown>): void {
    const { clock, limits, metrics, health, service, log } = this.#o;
    const now = clock.now();
    const r = this.#replay;
    metrics.inc('pod_archive_rejected_total', { service });
    health.set(service, 'degraded', `archive window ${formatUtc(step.since)} to ${formatUtc(step.to)} refused (HTTP 400)`);
    const window = { ...base, since: formatUtc(step.since), to: formatUtc(step.to) };
    if (!r) return;
    if (step.partial) {
      this.#partialAllowed = false;
      log.warn(window, 'PoD refused a partial archive window (its toTime is not a whole past hour); from now on only whole past hours are asked, once archive mode has them. Live goes on meanwhile.');
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
    if (attempts >= WINDOW_ATTEMPTS_REPORTED) log.error(info, msg);
    else log.warn(info, msg);
  }

  #announce(r: Replay, now: number): void {
    const target = r.until ?? now - this.#o.limits.thresholdMs;
    this.#o.log.info(
      { reason: r.reason, from: formatUtc(r.from), until: formatUtc(target), ...(r.until === undefined ? { until_moves: 'live takes over' } : {}) },
      ANNOUNCEMENTS[r.reason],
    );
    if (r.clampedFrom !== undefined) {
      this.#gap({ from: r.clampedFrom, until: r.from, reason: 'older than the 30 days archive mode serves' });
      r.clampedFrom = undefined;
    }
  }

  /** A fixed-end replay rides on the cursor until done, so a restart takes it up again. */
  #recordOwed(): void {
    const { tracker, metrics, clock, limits, service } = this.#o;
    const r = this.#replay;
    tracker.setOwed(r && r.until !== undefined ? { reason: r.reason, from: r.from, until: r.until, offsetMin: r.offsetMin } : undefined);
    metrics.set('pod_archive_replay_active', { service }, r ? 1 : 0);
    metrics.set('pod_archive_replay_position_timestamp_seconds', { service }, r ? Math.floor(r.from / 1000) : 0);
    const now = clock.now();
    if (r) this.#progress.update(r.from, r.until ?? now - limits.thresholdMs);
    else this.#progress.live(now);
  }

  /** The part of liveOpened that owes what archive mode did not reach before a live start. */
  #oweLiveStart(now: number): void {
    const stale = this.#lastContact === undefined || now - this.#lastContact > this.#o.limits.thresholdMs;
    if (this.#takeUpDrop(now) || !stale) return;
    const r = this.#replay;
    if (r) {
      // Live takes over: a moving replay gets a fixed end.
      r.until = Math.max(r.until ?? now, now);
    } else {
      const archived = this.#o.tracker.current.archivedUntil;
      if (archived === undefined || archived >= now) return;
      this.#replay = { reason: 'live_start', from: archived, until: now, offsetMin: offsetOf(this.#o.tracker.current.ts) };
      this.#o.log.info(
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
    this.#o.metrics.inc('pod_live_drop_replays_total', { service: this.#o.service });
    const r = this.#replay;
    if (r) {
      if (from < r.from) {
        r.from = from;
        delete r.partialTo;
      }
      r.until = Math.max(r.until ?? now, now);
    } else {
      this.#replay = { reason: 'live_drop', from, until: now, offsetMin: offsetOf(this.#committed?.ts ?? this.#o.tracker.current.ts) };
    }
    this.#o.log.info(
      { from: formatUtc(this.#replay!.from), until: formatUtc(this.#replay!.until!) },
      'A live session ended without a normal close, so what was in flight may never be sent live again: this span is replayed once archive mode serves it.',
    );
    this.#recordOwed();
    return true;
  }

  /** Counts one more attempt of this window without completion; returns the count. */
  #countAttempt(step: ArchiveStep): number {
    const w = this.#window;
    const n = w && w.since === step.since && w.to === step.to ? w.attempts + 1 : 1;
    this.#window = { since: step.since, to: step.to, attempts: n };
    if (n >= WINDOW_ATTEMPTS_REPORTED) {
      this.#o.metrics.set('pod_archive_windows_stuck', { service: this.#o.service }, n);
    }
    return n;
  }

  /** Records and reports, once, an interval that cannot be replayed. */
  #gap(gap: { from: number; until: number; reason: string }): void {
    if (gap.until <= gap.from) return;
    const { metrics, service, tracker, log } = this.#o;
    tracker.addGap(gap);
    metrics.inc('pod_archive_gaps_total', { service });
    metrics.inc('pod_archive_gap_seconds_total', { service }, Math.round((gap.until - gap.from) / 1000));
    log.error(
      { gap_from: formatUtc(gap.from), gap_until: formatUtc(gap.until), reason: gap.reason },
      'Events in this interval cannot be replayed from the archive: an explicit gap (kept in the state, see state show).',
    );
    this.#o.checkpoint();
  }
}

/** The line that announces a replay, by why it is owed. */
const ANNOUNCEMENTS: Record<ReplayReason, string> = {
  unclean_shutdown: 'Previous run did not shut down cleanly: replaying from the hour of the committed cursor in archive mode, one session at a time.',
  live_drop: 'Taking up the replay owed after a live session ended without a normal close.',
  probe: 'Replaying what a check --online --probe-live session read from the live stream.',
  outage: 'Contact lost for longer than the live resume covers: replaying the gap in archive mode before going live.',
  live_start: 'Taking up the replay of the moments before the last live start, owed by the previous run.',
  start_time: 'Replaying from start_time in archive mode before going live.',
};
