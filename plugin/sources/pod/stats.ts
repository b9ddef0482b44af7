/**
 * Per-session statistics: pulling id, mode and window, frames received, duplicates
 * filtered, dead-lettered, events sent, events per second, highest `ts` and lag (now minus the
 * highest `ts`). Duplicates, sent and dead-lettered are known only once the pipeline committed a
 * batch, so they come from `onCommitted`; a line is logged every interval while the session is
 * open and a last one when every batch of the ended session is committed.
 */
import type { Logger } from 'pino';
import type { BatchOutcome } from '../source.ts';
import type { Clock } from '../../util/clock.ts';
import { compareTime } from './cursor.ts';
import type { EventTime } from '../../util/time.ts';
import { formatUtc } from '../../util/time.ts';

export interface SessionStatsLine {
  pulling_id: number;
  service: string;
  mode: 'live' | 'archive';
  window?: { since: string; to: string };
  frames: number;
  /** Empty text frames: signs of life, not events. */
  empty_frames: number;
  bytes: number;
  rejected: number;
  duplicates: number;
  dead_lettered: number;
  sent: number;
  events_per_sec: number;
  highest_ts?: string;
  lag_secs?: number;
  open_secs: number;
  ended?: string;
}

export class SessionStats {
  readonly pullingId: number;
  readonly mode: 'live' | 'archive';
  readonly window?: { since: number; to: number };
  readonly #service: string;
  readonly #clock: Clock;
  readonly #logger: Logger;
  readonly #started: number;
  frames = 0;
  emptyFrames = 0;
  bytes = 0;
  rejected = 0;
  duplicates = 0;
  deadLettered = 0;
  sent = 0;
  #highest?: { ts: string; time: EventTime };
  #outstanding = 0;
  #ended?: string;
  #endedAt?: number;
  #logged = false;

  constructor(o: { pullingId: number; service: string; mode: 'live' | 'archive'; window?: { since: number; to: number }; clock: Clock; logger: Logger }) {
    this.pullingId = o.pullingId;
    this.mode = o.mode;
    this.window = o.window;
    this.#service = o.service;
    this.#clock = o.clock;
    this.#logger = o.logger;
    this.#started = o.clock.now();
  }

  frame(bytes: number): void {
    this.frames++;
    this.bytes += bytes;
  }

  observe(ts: string, time: EventTime): void {
    if (!this.#highest || compareTime(time, this.#highest.time) > 0) this.#highest = { ts, time };
  }

  /** A batch of this session was handed out; returns its onCommitted. */
  expect(): (o: BatchOutcome) => void {
    this.#outstanding++;
    return (o) => {
      this.duplicates += o.duplicates;
      this.deadLettered += o.deadLettered;
      this.sent += o.sent;
      if (--this.#outstanding === 0 && this.#ended !== undefined) this.#final();
    };
  }

  /** The session ended (`how` says why); the last line follows once its batches are committed. */
  end(how: string): void {
    if (this.#ended !== undefined) return;
    this.#ended = how;
    this.#endedAt = this.#clock.now();
    if (this.#outstanding === 0) this.#final();
  }

  line(): SessionStatsLine {
    const now = this.#clock.now();
    const openMs = (this.#endedAt ?? now) - this.#started;
    const highestMs = this.#highest ? this.#highest.time.sec * 1000 + this.#highest.time.nsec / 1e6 : undefined;
    return {
      pulling_id: this.pullingId,
      service: this.#service,
      mode: this.mode,
      ...(this.window ? { window: { since: formatUtc(this.window.since), to: formatUtc(this.window.to) } } : {}),
      frames: this.frames,
      empty_frames: this.emptyFrames,
      bytes: this.bytes,
      rejected: this.rejected,
      duplicates: this.duplicates,
      dead_lettered: this.deadLettered,
      sent: this.sent,
      events_per_sec: Math.round((this.sent / Math.max(0.001, openMs / 1000)) * 10) / 10,
      ...(this.#highest ? { highest_ts: this.#highest.ts, lag_secs: Math.round((now - highestMs!) / 100) / 10 } : {}),
      open_secs: Math.round(openMs / 100) / 10,
      ...(this.#ended !== undefined ? { ended: this.#ended } : {}),
    };
  }

  /** A periodic line while the session is open. */
  log(): void {
    if (this.#ended === undefined) this.#logger.info({ stats: this.line() }, 'PoD session statistics.');
  }

  #final(): void {
    if (this.#logged) return;
    this.#logged = true;
    this.#logger.info({ stats: this.line() }, 'PoD session ended; statistics.');
  }
}
