/**
 * Where each service of a TAP input stands (collected to, settled to), in memory. Positions
 * advance when a window's answer comes (for planning the next window) and go back when its body
 * turns out unreadable; they reach the store only as the cursors of committed batches.
 */
import type { Logger } from 'pino';
import type { SourceContext } from '../source.ts';
import { formatUtc, parseTimestampMs } from '../../util/time.ts';
import type { TapInputConfig, TapServiceName } from './config.ts';
import { fromCursor, toCursor } from './cursor.ts';
import type { Routed } from './deliver.ts';
import { advance, floorSec, formatInterval, minPositions, oldestAllowedStart, windowConcerns, type Positions, type Window } from './window.ts';

const HOUR_MS = 3600_000;

export class TapPositions {
  readonly #cfg: TapInputConfig;
  readonly #log: Logger;
  readonly #map = new Map<TapServiceName, Positions>();

  private constructor(cfg: TapInputConfig, log: Logger) {
    this.#cfg = cfg;
    this.#log = log;
  }

  /** Each service's committed cursor, or its configured start when it has none (or not one of ours). */
  static async load(
    ctx: SourceContext,
    cfg: TapInputConfig,
    names: readonly TapServiceName[],
    endpoint: { path: string; pool: string },
  ): Promise<TapPositions> {
    const log = ctx.logger;
    const positions = new TapPositions(cfg, log);
    const firstStart = ctx.clock.now();
    for (const svc of names) {
      const start = positions.#startOf(svc, firstStart);
      if (ctx.resetServices.has(svc)) {
        log.warn(
          { service: svc, start_time: formatUtc(start) },
          `TAP ${svc}: start_time_in_utc changed, so its cursor and de-dup state were reset; collecting again from ${formatUtc(start)}`,
        );
      }
      const stored = await ctx.cursor<unknown>(svc);
      let pos = stored === undefined ? undefined : fromCursor(stored);
      if (stored !== undefined && pos === undefined) {
        log.warn({ service: svc, cursor: stored }, `TAP ${svc}: stored cursor is not understood; starting from ${formatUtc(start)}`);
      }
      pos ??= { collectedTo: start, settledTo: start };
      positions.#map.set(svc, pos);
      ctx.health.set(svc, 'starting');
      log.info(
        { service: svc, collected_to: formatUtc(pos.collectedTo), settled_to: formatUtc(pos.settledTo), endpoint: endpoint.path, pool: endpoint.pool },
        `TAP ${svc}: collecting from ${formatUtc(pos.collectedTo)} through ${endpoint.path}`,
      );
    }
    return positions;
  }

  get(svc: TapServiceName): Positions {
    return this.#map.get(svc)!;
  }

  /** The positions the next window is planned from: the least advanced of every service. */
  min(): Positions {
    return minPositions([...this.#map.values()]);
  }

  /**
   * The API keeps 7 days: older positions move up to its limit, with a warning naming what is lost.
   * They move to `margin` inside the limit but only once they are within `margin − 4 min` of it, so
   * a backfill that starts at the limit is not nibbled a second at a time while it walks.
   */
  clamp(now: number, marginMs: number): void {
    const trigger = oldestAllowedStart(now, Math.max(60_000, marginMs - 4 * 60_000));
    const oldest = oldestAllowedStart(now, marginMs);
    for (const [svc, pos] of this.#map) {
      if (pos.collectedTo < trigger) {
        this.#log.warn(
          { service: svc, skipped_from: formatUtc(pos.collectedTo), skipped_to: formatUtc(oldest) },
          `TAP ${svc}: data older than 7 days cannot be fetched (the API accepts requests up to 7.00d back); ` +
            `events from ${formatUtc(pos.collectedTo)} to ${formatUtc(oldest)} are skipped`,
        );
        this.#map.set(svc, { collectedTo: oldest, settledTo: oldest });
      } else if (pos.settledTo < trigger) {
        this.#log.warn(
          { service: svc, unsettled_from: formatUtc(pos.settledTo), unsettled_to: formatUtc(oldest) },
          `TAP ${svc}: time from ${formatUtc(pos.settledTo)} to ${formatUtc(oldest)} is now older than 7 days and cannot be re-queried for late-indexed events`,
        );
        this.#map.set(svc, { collectedTo: pos.collectedTo, settledTo: oldest });
      }
    }
  }

  /**
   * The services a window concerns, with their positions before and after it; the positions
   * advance now and go back with `restore` if the body is unreadable. A service whose positions
   * are already past the window gets nothing (its events there are settled and delivered).
   */
  route(w: Window, sentAt: number): Routed[] {
    const cfg = this.#cfg;
    const out: Routed[] = [];
    for (const [svc, pos] of this.#map) {
      if (!windowConcerns(pos, w)) continue;
      const next = advance(pos, w, sentAt, {
        settleEnabled: cfg.settle_requery_enabled,
        settleDelayMs: cfg.settle_delay_secs * 1000,
      });
      this.#map.set(svc, next);
      out.push({ svc, before: pos, cursor: toCursor(next), rejected: [] });
    }
    if (out.length === 0) this.#log.debug({ window: formatInterval(w) }, 'TAP window concerned no service.');
    return out;
  }

  /** Puts the services of a window whose body was unreadable back where they were before it. */
  restore(routed: readonly Routed[]): void {
    for (const r of routed) this.#map.set(r.svc, r.before);
  }

  #startOf(svc: TapServiceName, now: number): number {
    const text = this.#cfg.services[svc]?.start_time_in_utc;
    // null: the Devo collector's empty start time, "from now".
    if (text === null) return floorSec(now);
    const at = text === undefined ? undefined : parseTimestampMs(text);
    return floorSec(at ?? now - HOUR_MS);
  }
}
