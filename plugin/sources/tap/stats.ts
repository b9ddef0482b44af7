/**
 * Statistics of one TAP pull cycle: one window, its retries included. Requests are known when the
 * window's answer comes; received, duplicates filtered, sent and dead-lettered only once the
 * pipeline committed a batch, so they come from `onCommitted`. The cycle's one line is logged when
 * every batch of the window is committed, so its counts are what Fluent Bit acknowledged.
 */
import type { Logger } from 'pino';
import type { BatchOutcome } from '../source.ts';
import type { Clock } from '../../util/clock.ts';
import { formatUtc } from '../../util/time.ts';
import type { Window } from './window.ts';

export interface CycleStatsLine {
  requests: number;
  received: number;
  duplicates: number;
  sent: number;
  dead_lettered: number;
  events_per_second: number;
}

export interface CycleStatsOptions {
  pullingId: number;
  window: Window;
  /** When the cycle's first request was sent. */
  started: number;
  /** Requests made for the window, retries included. */
  requests: number;
  clock: Clock;
  logger: Logger;
  /** Requests left per pool when the line is logged. */
  requestsLeft: () => Record<string, number>;
  /** Called once, after the line is logged. */
  onFinished?: (c: CycleStats) => void;
}

export class CycleStats {
  readonly pullingId: number;
  readonly window: Window;
  readonly #o: CycleStatsOptions;
  received = 0;
  duplicates = 0;
  sent = 0;
  deadLettered = 0;
  #pending = 0;
  #sealed = false;
  #logged = false;

  constructor(o: CycleStatsOptions) {
    this.pullingId = o.pullingId;
    this.window = o.window;
    this.#o = o;
  }

  /** A batch of this cycle was handed out; returns its onCommitted. */
  expect(): (o: BatchOutcome) => void {
    this.#pending++;
    return (o) => {
      this.received += o.received;
      this.duplicates += o.duplicates;
      this.sent += o.sent;
      this.deadLettered += o.deadLettered;
      if (--this.#pending === 0 && this.#sealed) this.#final();
    };
  }

  /** Every batch of the window is handed out: the line follows once they are committed. */
  seal(): void {
    this.#sealed = true;
    if (this.#pending === 0) this.#final();
  }

  line(): CycleStatsLine {
    const secs = Math.max(0.001, (this.#o.clock.now() - this.#o.started) / 1000);
    return {
      requests: this.#o.requests,
      received: this.received,
      duplicates: this.duplicates,
      sent: this.sent,
      dead_lettered: this.deadLettered,
      events_per_second: Math.round((this.sent / secs) * 10) / 10,
    };
  }

  #final(): void {
    if (this.#logged) return;
    this.#logged = true;
    const left = this.#o.requestsLeft();
    const s = this.line();
    const w = this.window;
    this.#o.logger.info(
      { pulling_id: this.pullingId, kind: w.kind, from: formatUtc(w.start), to: formatUtc(w.end), ...s, requests_left: left },
      // The documented statistics line (docs/operations.md): operators read its values in the text.
      `TAP pull ${this.pullingId} (${w.kind}) ${formatUtc(w.start)} -> ${formatUtc(w.end)}: ` +
        `${s.requests} request(s), ${s.received} received, ${s.duplicates} duplicates filtered, ${s.sent} sent, ` +
        `${s.events_per_second} events/s; requests left: shared ${left['shared']}, clicksPermitted ${left['clicksPermitted']}`,
    );
    this.#o.onFinished?.(this);
  }
}
