/**
 * Metrics that only a source can count (requests per TAP pool, POD reconnects and 409s). Sources
 * report through `ctx.metrics`; the values are kept here and exported at scrape time by
 * telemetry/http.ts. Every name is declared in SOURCE_METRICS: an undeclared name is a bug.
 */
import type { SourceMetrics } from '../sources/source.ts';

export const SOURCE_METRICS = {
  tap_requests_total: { type: 'counter', help: 'TAP API requests sent, per rate-limit pool', labels: ['pool'] },
  tap_requests_left: { type: 'gauge', help: "Requests left in the pool's rolling 24 h budget", labels: ['pool'] },
  tap_throttled_total: { type: 'counter', help: 'TAP API answers 429 (budget spent on the server side)', labels: ['pool'] },
  tap_malformed_answers_total: { type: 'counter', help: 'TAP API answers 200 that are not the documented object of arrays (the window is retried)', labels: ['pool'] },
  pod_sessions_total: { type: 'counter', help: 'PoD sessions opened, per mode (live or archive)', labels: ['service', 'mode'] },
  pod_reconnects_total: { type: 'counter', help: 'PoD sessions reopened after a drop or a failure', labels: ['service'] },
  pod_conflicts_total: { type: 'counter', help: 'PoD handshakes refused with 409 (another session holds the token)', labels: ['service'] },
  pod_empty_frames_total: { type: 'counter', help: 'PoD empty text frames received (signs of life, not events)', labels: ['service'] },
  pod_archive_windows_retried_total: { type: 'counter', help: 'PoD archive windows asked again because the session did not end with close 1000 or a reading silence', labels: ['service', 'end'] },
  pod_archive_windows_stuck: { type: 'gauge', help: 'Times the current PoD archive window was asked without completing (reported from 5 on)', labels: ['service'] },
  pod_archive_rejected_total: { type: 'counter', help: 'PoD archive handshakes refused with 400 (retried, never fatal)', labels: ['service'] },
  pod_archive_gaps_total: { type: 'counter', help: 'PoD archive hours the server refused as older than its 30 days (an explicit gap)', labels: ['service'] },
  pod_archive_gap_seconds_total: { type: 'counter', help: 'Seconds of PoD events the server refused as older than its 30 days', labels: ['service'] },
  pod_live_drop_replays_total: { type: 'counter', help: 'PoD archive replays owed because a live session ended without a normal close', labels: ['service'] },
  pod_archive_replay_active: { type: 'gauge', help: 'Whether a PoD archive replay is owed or under way (start_time, outage, unclean shutdown, live drop)', labels: ['service'] },
  pod_archive_replay_position_timestamp_seconds: { type: 'gauge', help: 'Where the owed PoD archive replay stands: the start of the next window it asks (0 when none is owed)', labels: ['service'] },
  pod_replay_duplicates_total: { type: 'counter', help: 'Events of PoD archive replays dropped as already delivered, per replay reason', labels: ['service', 'reason'] },
} as const;

export type SourceMetricName = keyof typeof SOURCE_METRICS;

export interface SourceMetricValue {
  labels: Record<string, string>;
  value: number;
}

export class SourceMetricsStore {
  readonly #values = new Map<string, Map<string, SourceMetricValue>>();

  forInput(inputId: string): SourceMetrics {
    return {
      set: (name, labels, value) => this.#put(name, { input_id: inputId, ...labels }, () => value),
      inc: (name, labels, by = 1) => this.#put(name, { input_id: inputId, ...labels }, (prev) => prev + by),
    };
  }

  #put(name: string, labels: Record<string, string>, next: (prev: number) => number): void {
    if (!(name in SOURCE_METRICS)) throw new Error(`undeclared source metric "${name}" (declare it in telemetry/source-metrics.ts)`);
    let series = this.#values.get(name);
    if (!series) this.#values.set(name, (series = new Map()));
    const key = JSON.stringify(Object.entries(labels).sort(([a], [b]) => a.localeCompare(b)));
    const prev = series.get(key);
    series.set(key, { labels, value: next(prev?.value ?? 0) });
  }

  values(name: SourceMetricName): SourceMetricValue[] {
    return [...(this.#values.get(name)?.values() ?? [])];
  }
}
