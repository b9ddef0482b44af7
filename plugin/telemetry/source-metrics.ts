/**
 * Metrics that only a source can count (requests per TAP pool, POD reconnects and 409s). Sources
 * report through `ctx.metrics`; the values are kept here and exported at scrape time by
 * telemetry/http.ts. Every name is declared in SOURCE_METRICS: an undeclared name is a bug.
 */
import type { SourceMetrics } from '../sources/source.ts';

const TAP = 'proofpoint_tap';
const POD = 'proofpoint_on_demand';
const POOLS = ['shared', 'clicksPermitted'];
const REPLAY_REASONS = ['start_time', 'unclean_shutdown', 'outage', 'live_start', 'live_drop', 'probe'];

/**
 * `sources`: the input types that report it. `known`: every value a label other than `service`
 * takes; a counter whose labels are all known is exported at 0 from start for each input (and
 * service) of those types, so `rate()` and `absent()` work before the first increment. A label
 * without known values (e.g. a close code) makes series appear as they happen.
 */
interface SourceMetricDecl {
  type: 'counter' | 'gauge';
  help: string;
  labels: readonly string[];
  sources: readonly string[];
  known?: Readonly<Record<string, readonly string[]>>;
}

export const SOURCE_METRICS = {
  tap_requests_total: { type: 'counter', help: 'TAP API requests sent, per rate-limit pool', labels: ['pool'], sources: [TAP], known: { pool: POOLS } },
  tap_requests_left: { type: 'gauge', help: "Requests left in the pool's rolling 24 h budget", labels: ['pool'], sources: [TAP] },
  tap_throttled_total: { type: 'counter', help: 'TAP API answers 429 (budget spent on the server side)', labels: ['pool'], sources: [TAP], known: { pool: POOLS } },
  tap_malformed_answers_total: { type: 'counter', help: 'TAP API answers 200 that are not the documented object of arrays (the window is retried)', labels: ['pool'], sources: [TAP], known: { pool: POOLS } },
  pod_sessions_total: { type: 'counter', help: 'PoD sessions opened, per mode (live or archive)', labels: ['service', 'mode'], sources: [POD], known: { mode: ['live', 'archive'] } },
  pod_reconnects_total: { type: 'counter', help: 'PoD sessions reopened after a drop or a failure', labels: ['service'], sources: [POD] },
  pod_conflicts_total: { type: 'counter', help: 'PoD handshakes refused with 409 (another session holds the token)', labels: ['service'], sources: [POD] },
  pod_empty_frames_total: { type: 'counter', help: 'PoD empty text frames received (signs of life, not events)', labels: ['service'], sources: [POD] },
  pod_archive_windows_retried_total: { type: 'counter', help: 'PoD archive windows asked again because the session did not end with close 1000 or a reading silence', labels: ['service', 'end'], sources: [POD] },
  pod_archive_windows_stuck: { type: 'gauge', help: 'Times the current PoD archive window was asked without completing (reported from 5 on)', labels: ['service'], sources: [POD] },
  pod_archive_rejected_total: { type: 'counter', help: 'PoD archive handshakes refused with 400 (retried, never fatal)', labels: ['service'], sources: [POD] },
  pod_archive_gaps_total: { type: 'counter', help: 'PoD archive hours the server refused as older than its 30 days (an explicit gap)', labels: ['service'], sources: [POD] },
  pod_archive_gap_seconds_total: { type: 'counter', help: 'Seconds of PoD events the server refused as older than its 30 days', labels: ['service'], sources: [POD] },
  pod_live_drop_replays_total: { type: 'counter', help: 'PoD archive replays owed because a live session ended without a normal close', labels: ['service'], sources: [POD] },
  pod_archive_replay_active: { type: 'gauge', help: 'Whether a PoD archive replay is owed or under way (start_time, outage, unclean shutdown, live drop)', labels: ['service'], sources: [POD] },
  pod_archive_replay_position_timestamp_seconds: { type: 'gauge', help: 'Where the owed PoD archive replay stands: the start of the next window it asks (0 when none is owed)', labels: ['service'], sources: [POD] },
  pod_replay_duplicates_total: { type: 'counter', help: 'Events of PoD archive replays dropped as already delivered, per replay reason', labels: ['service', 'reason'], sources: [POD], known: { reason: REPLAY_REASONS } },
  backfill_active: { type: 'gauge', help: '1 while the service collects the past (TAP windows behind live, a PoD archive replay owed), 0 when live', labels: ['service'], sources: [TAP, POD] },
  backfill_position_timestamp_seconds: { type: 'gauge', help: 'Event time the service has collected up to (TAP: collected_to; PoD: the owed replay position, or where it went live)', labels: ['service'], sources: [TAP, POD] },
  backfill_remaining_seconds: { type: 'gauge', help: 'Event time still to collect before the service is live (0 when live)', labels: ['service'], sources: [TAP, POD] },
  backfill_eta_seconds: { type: 'gauge', help: 'Estimated wall-clock seconds until the service is live, from the observed rate (0 when live, -1 while unknown)', labels: ['service'], sources: [TAP, POD] },
} as const satisfies Record<string, SourceMetricDecl>;

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

  /**
   * The values of a counter with the zero series of its known labels filled in, for each
   * (input, source type, service) given.
   */
  withZeros(name: SourceMetricName, services: Iterable<{ input: string; source: string; service: string }>): SourceMetricValue[] {
    const decl: SourceMetricDecl = SOURCE_METRICS[name];
    const out = new Map<string, SourceMetricValue>();
    const keyOf = (labels: Record<string, string>) => JSON.stringify(Object.entries(labels).sort(([a], [b]) => a.localeCompare(b)));
    const known = decl.known ?? {};
    const open = decl.labels.filter((l) => l !== 'service' && !(l in known));
    if (decl.type === 'counter' && open.length === 0) {
      for (const s of services) {
        if (!decl.sources.includes(s.source)) continue;
        let combos: Array<Record<string, string>> = [{ input_id: s.input, ...(decl.labels.includes('service') ? { service: s.service } : {}) }];
        for (const [label, values] of Object.entries(known)) combos = combos.flatMap((c) => values.map((v) => ({ ...c, [label]: v })));
        for (const labels of combos) out.set(keyOf(labels), { labels, value: 0 });
      }
    }
    for (const v of this.values(name)) out.set(keyOf(v.labels), v);
    return [...out.values()];
  }
}
