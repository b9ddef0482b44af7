/**
 * Input `proofpoint_on_demand`: its descriptor, the one thing the rest of the sidecar imports from
 * this folder (sources/registry.ts lists it). Only light modules are imported here; the source,
 * its WebSocket stream, its checks and its probe are loaded on first use (sources/descriptor.ts).
 */
import type { SourceDescriptor } from '../descriptor.ts';
import { assertStartTimes } from '../start-time.ts';
import { parseTimestampMs } from '../../util/time.ts';
import { POD_RENAMED_KEYS, enabledPodServices, podInputSchema, podStartTimes, type PodInputConfig } from './config.ts';

const TYPE = 'proofpoint_on_demand';
const REPLAY_REASONS = ['start_time', 'unclean_shutdown', 'outage', 'live_start', 'live_drop', 'probe'];

function field(cursor: unknown, key: string): unknown {
  return cursor !== null && typeof cursor === 'object' ? (cursor as Record<string, unknown>)[key] : undefined;
}

/** `ts`: the highest event time acknowledged, as the server wrote it. */
function highestTs(cursor: unknown): number | undefined {
  const ts = field(cursor, 'ts');
  return typeof ts === 'string' ? parseTimestampMs(ts) : undefined;
}

export const podSource: SourceDescriptor<PodInputConfig, typeof TYPE> = {
  type: TYPE,
  schema: podInputSchema,
  requiredKeys: 'id, credentials.cluster_id, credentials.api_key, services',
  renamedKeys: POD_RENAMED_KEYS,
  startTimeKey: 'start_time',
  services: (cfg) => enabledPodServices(cfg),
  create: async (cfg) => (await import('./create.ts')).createPodSource(cfg),
  check: async (cfg, now) => (await import('./check.ts')).checkPodConfig(cfg, now),
  probe: async (cfg, now) => (await import('./probe.ts')).probePod(cfg, now),
  /** One feed per service: the server allows one session per token and type. */
  feeds(cfg, now) {
    assertStartTimes(podStartTimes(cfg), now);
    return enabledPodServices(cfg).map((svc) => {
      const spec = cfg.services[svc]!;
      const only = { ...cfg, services: { [svc]: spec } };
      return {
        name: svc,
        services: [{ name: svc, dedupMaxAgeMs: spec.dedup_window_secs * 1000, startTime: spec.start_time }],
        requestPools: [],
        requestWindowMs: 0,
        create: async () => (await import('./create.ts')).createPodSource(only),
      };
    });
  },
  compareCursors: async (a, b) => (await import('./create.ts')).comparePodCursors(a, b),
  cursorTime: highestTs,
  metrics: {
    pod_sessions_total: { type: 'counter', help: 'PoD sessions opened, per mode (live or archive)', labels: ['service', 'mode'], known: { mode: ['live', 'archive'] } },
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
    pod_replay_duplicates_total: { type: 'counter', help: 'Events of PoD archive replays dropped as already delivered, per replay reason', labels: ['service', 'reason'], known: { reason: REPLAY_REASONS } },
  },
  state: {
    msKeys: ['liveAt', 'archivedUntil', 'from', 'until', 'at', 'started_at'],
    droppedKeys: ['sec', 'nsec'],
    /** An owed replay stands at its next window and runs to its end; otherwise the highest `ts`, live. */
    position(cursor, now) {
      const owed = field(cursor, 'owed') as { from?: unknown; until?: unknown } | undefined;
      if (owed && typeof owed.from === 'number' && typeof owed.until === 'number') return { positionMs: owed.from, targetMs: owed.until, active: true };
      const at = highestTs(cursor);
      return at === undefined ? undefined : { positionMs: at, targetMs: now, active: false };
    },
  },
};
