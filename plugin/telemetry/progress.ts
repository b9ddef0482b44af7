/**
 * How far a service's backfill (TAP: windows older than live; PoD: an owed archive replay) has
 * come, what remains and when it should go live, for /metrics (`backfill_*`, per service), a
 * periodic log line and `state show` (through /state).
 *
 * The estimate comes from the observed rate at which what remains shrinks (event time covered
 * per wall-clock second, minus the 1 s/s a moving target like "now" gains), over the updates of
 * the last `rateSpanMs`; it is unknown (-1) until two updates show what remains shrinking.
 */
import type { Logger } from 'pino';
import type { SourceMetrics } from '../sources/source.ts';
import type { Clock } from '../util/clock.ts';
import { formatUtc } from '../util/time.ts';

export interface BackfillProgressOptions {
  metrics: SourceMetrics;
  logger: Logger;
  clock: Clock;
  service: string;
  /** Names the kind in the log line, e.g. "TAP messagesDelivered backfill". */
  label: string;
  /** At most one progress line per this long while active (ms). */
  logEveryMs?: number;
  /** The span of updates the rate is measured over (ms). */
  rateSpanMs?: number;
}

export interface BackfillSnapshot {
  active: boolean;
  /** Event time collected up to (ms). */
  positionMs: number;
  /** Event time still to collect before live (ms); 0 when live. */
  remainingMs: number;
  /** Wall-clock ms until live, from the observed rate; undefined when unknown. */
  etaMs?: number;
}

/** `1d 4h`, `3h 12m`, `5m 10s`, `42s`. */
export function formatDuration(ms: number): string {
  const s = Math.max(0, Math.round(ms / 1000));
  const d = Math.floor(s / 86_400);
  const h = Math.floor((s % 86_400) / 3600);
  const m = Math.floor((s % 3600) / 60);
  if (d > 0) return `${d}d ${h}h`;
  if (h > 0) return `${h}h ${m}m`;
  if (m > 0) return `${m}m ${s % 60}s`;
  return `${s}s`;
}

export class BackfillProgress {
  readonly #o: Required<BackfillProgressOptions>;
  /** (wall time, remaining) of the recent updates of the current backfill. */
  #samples: Array<{ at: number; remaining: number }> = [];
  #lastLog = -Infinity;
  #snapshot?: BackfillSnapshot;

  constructor(o: BackfillProgressOptions) {
    this.#o = { logEveryMs: 300_000, rateSpanMs: 1_800_000, ...o };
  }

  get snapshot(): BackfillSnapshot | undefined {
    return this.#snapshot;
  }

  /** The backfill stands at `positionMs` and runs until `targetMs` (event times, ms). */
  update(positionMs: number, targetMs: number): void {
    const now = this.#o.clock.now();
    const remaining = Math.max(0, targetMs - positionMs);
    const wasActive = this.#snapshot?.active === true;
    this.#samples.push({ at: now, remaining });
    while (this.#samples.length > 2 && now - this.#samples[0]!.at > this.#o.rateSpanMs) this.#samples.shift();
    const first = this.#samples[0]!;
    const elapsed = now - first.at;
    const shrunk = first.remaining - remaining;
    const etaMs = elapsed > 0 && shrunk > 0 ? Math.round(remaining / (shrunk / elapsed)) : undefined;
    this.#set({ active: true, positionMs, remainingMs: remaining, ...(etaMs !== undefined ? { etaMs } : {}) });
    if (!wasActive || now - this.#lastLog >= this.#o.logEveryMs) {
      this.#lastLog = now;
      const eta = etaMs === undefined ? 'time to live not known yet' : `live in about ${formatDuration(etaMs)} (at ${formatUtc(now + etaMs)})`;
      this.#o.logger.info(
        {
          service: this.#o.service,
          backfill_position: formatUtc(positionMs),
          backfill_target: formatUtc(targetMs),
          backfill_remaining_secs: Math.round(remaining / 1000),
          ...(etaMs !== undefined ? { backfill_eta_secs: Math.round(etaMs / 1000), backfill_live_at: formatUtc(now + etaMs) } : {}),
        },
        `${this.#o.label}: at ${formatUtc(positionMs)}, ${formatDuration(remaining)} of events to go; ${eta}`,
      );
    }
  }

  /** Nothing owed: the service is live, having collected up to `positionMs`. */
  live(positionMs: number): void {
    const wasActive = this.#snapshot?.active === true;
    this.#samples = [];
    this.#set({ active: false, positionMs, remainingMs: 0, etaMs: 0 });
    if (wasActive) {
      this.#lastLog = -Infinity;
      this.#o.logger.info({ service: this.#o.service, backfill_position: formatUtc(positionMs) }, `${this.#o.label}: done; live from ${formatUtc(positionMs)}`);
    }
  }

  #set(s: BackfillSnapshot): void {
    this.#snapshot = s;
    const m = this.#o.metrics;
    const service = { service: this.#o.service };
    m.set('backfill_active', service, s.active ? 1 : 0);
    m.set('backfill_position_timestamp_seconds', service, Math.floor(s.positionMs / 1000));
    m.set('backfill_remaining_seconds', service, Math.round(s.remainingMs / 1000));
    m.set('backfill_eta_seconds', service, s.etaMs === undefined ? -1 : Math.round(s.etaMs / 1000));
  }
}
