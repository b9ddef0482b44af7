/**
 * Input `proofpoint_tap`: its descriptor, the one thing the rest of the sidecar imports from this
 * folder (sources/registry.ts lists it). Only light modules are imported here; the source, its
 * HTTP client and its checks are loaded on first use (sources/descriptor.ts).
 */
import type { SourceDescriptor } from '../descriptor.ts';
import { assertStartTimes } from '../start-time.ts';
import { parseTimestampMs } from '../../util/time.ts';
import { TAP_RENAMED_KEYS, enabledServices, tapInputSchema, tapStartTimes, type TapInputConfig } from './config.ts';
import { DAY_MS, TAP_POOLS } from './budget.ts';

const TYPE = 'proofpoint_tap';
const POOLS = TAP_POOLS;

/** The TAP API answers a few minutes behind now: a cursor up to an hour behind counts as live. */
const LIVE_WITHIN_MS = 3600_000;

function collectedTo(cursor: unknown): number | undefined {
  const t = cursor !== null && typeof cursor === 'object' ? (cursor as Record<string, unknown>)['collected_to'] : undefined;
  return typeof t === 'string' ? parseTimestampMs(t) : undefined;
}

export const tapSource: SourceDescriptor<TapInputConfig, typeof TYPE> = {
  type: TYPE,
  schema: tapInputSchema,
  requiredKeys: 'id, credentials.username, credentials.password, services',
  renamedKeys: TAP_RENAMED_KEYS,
  startTimeKey: 'start_time_in_utc',
  services: (cfg) => enabledServices(cfg),
  create: async (cfg) => (await import('./create.ts')).createTapSource(cfg),
  check: async (cfg, now) => (await import('./check.ts')).checkTapConfig(cfg, now),
  probe: async (cfg, now) => (await import('./probe.ts')).probeTap(cfg, now),
  /** One feed for the whole input: one credential, one request budget, one `/all` walk. */
  feeds(cfg, now) {
    assertStartTimes(tapStartTimes(cfg), now);
    const services = enabledServices(cfg).map((name) => ({
      name,
      dedupMaxAgeMs: cfg.dedup_window_secs * 1000,
      startTime: cfg.services[name]?.start_time_in_utc ?? undefined,
    }));
    return [
      {
        name: 'all',
        services,
        requestPools: TAP_POOLS,
        requestWindowMs: DAY_MS,
        create: async () => (await import('./create.ts')).createTapSource(cfg),
      },
    ];
  },
  compareCursors: async (a, b) => (await import('./create.ts')).compareTapCursors(a, b),
  /** `collected_to`: every window before it was queried. */
  cursorTime: collectedTo,
  metrics: {
    tap_requests_total: { type: 'counter', help: 'TAP API requests sent, per rate-limit pool', labels: ['pool'], known: { pool: POOLS } },
    tap_requests_left: { type: 'gauge', help: "Requests left in the pool's rolling 24 h budget", labels: ['pool'] },
    tap_throttled_total: { type: 'counter', help: 'TAP API answers 429 (budget spent on the server side)', labels: ['pool'], known: { pool: POOLS } },
    tap_malformed_answers_total: {
      type: 'counter',
      help: 'TAP API answers 200 that are not the documented object of arrays (the window is retried)',
      labels: ['pool'],
      known: { pool: POOLS },
    },
  },
  state: {
    msKeys: [],
    position(cursor, now) {
      const at = collectedTo(cursor);
      return at === undefined ? undefined : { positionMs: at, targetMs: now, active: now - at > LIVE_WITHIN_MS };
    },
  },
};
