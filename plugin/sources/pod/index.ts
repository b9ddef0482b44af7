/**
 * Input `proofpoint_on_demand` (issue 4): the source factory and the checks
 * `proofpoint-sidecar check` runs on its config. The rest of the sidecar imports the PoD source
 * only from here.
 */
import type { ClientOptions } from 'ws';
import type { Source } from '../source.ts';
import { systemClock, type Clock } from '../../util/clock.ts';
import { formatUtc, parseTimestampMs } from '../../util/time.ts';
import { POD_ARCHIVE_MAX_AGE_MS, POD_LIVE_RESUME_MS, podStartTimes, type PodInputConfig } from './config.ts';
import { assertStartTimes } from '../start-time.ts';
import { compareTime, coveredUntil, cursorTime, readCursor, type PodCursor } from './cursor.ts';
import { proxyFor } from './proxy.ts';
import { enabledPodServices, podEndpoint, PodSource } from './source.ts';

export { PodSource, enabledPodServices } from './source.ts';
export { StartTimeError } from '../start-time.ts';
export type { PodCursor } from './cursor.ts';
export { PodCredentialsError, PodSessionConflictError, PodSessionError } from './errors.ts';
export { POD_SERVICES, POD_DEFAULT_TAGS, podInputSchema, type PodInputConfig, type PodServiceName } from './config.ts';

export interface CreatePodSourceOptions {
  /** Extra ws client options (tests: a CA for wss://). Auth, limits and TLS verification stay ours. */
  wsOptions?: ClientOptions;
  /** The clock that decides whether a start time is in the future (default: the system clock). */
  clock?: Clock;
  /** Environment for HTTPS_PROXY / NO_PROXY (default: process.env). */
  env?: NodeJS.ProcessEnv;
}

/**
 * Builds the source: one WebSocket session per configured service. Throws StartTimeError
 * (101) for a start time in the future, as the Devo collector refuses it at config time.
 */
export function createPodSource(cfg: PodInputConfig, opts: CreatePodSourceOptions = {}): Source<PodCursor> {
  assertStartTimes(podStartTimes(cfg), (opts.clock ?? systemClock).now());
  const proxy = proxyFor(podEndpoint(cfg), opts.env ?? process.env);
  return new PodSource(cfg, { wsOptions: opts.wsOptions, agent: proxy?.agent });
}

/**
 * Warnings for `check`: what the config will do that an operator may not expect. Keys are named
 * relative to `inputs.proofpoint_on_demand` (the caller prefixes it). Throws StartTimeError
 * (101) for a start time in the future.
 */
export function checkPodConfig(cfg: PodInputConfig, now: number = Date.now(), env: NodeJS.ProcessEnv = process.env): string[] {
  assertStartTimes(podStartTimes(cfg), now);
  const warnings: string[] = [];
  const names = enabledPodServices(cfg);
  if (names.length === 0) warnings.push('no services configured: add services.message, services.maillog and/or services.audit');
  for (const svc of names) {
    const s = cfg.services[svc]!;
    const start = s.start_time === undefined ? undefined : parseTimestampMs(s.start_time);
    if (start !== undefined && start < now - POD_ARCHIVE_MAX_AGE_MS) {
      warnings.push(
        `services.${svc}.start_time (${s.start_time}) is more than 30 days back: archive mode serves 30 days, ` +
          `so events before ${formatUtc(now - POD_ARCHIVE_MAX_AGE_MS)} cannot be replayed`,
      );
    }
    if (s.request_period_in_seconds * 1000 >= POD_LIVE_RESUME_MS - cfg.archive_threshold_secs * 1000) {
      warnings.push(
        `services.${svc}.request_period_in_seconds (${s.request_period_in_seconds}) is so long that a reconnect may miss the server's one-hour live resume; every drop would then be replayed in archive mode`,
      );
    }
  }
  const endpoint = podEndpoint(cfg);
  if (endpoint.protocol === 'ws:') warnings.push(`override_url_base (${cfg.override_url_base}) is not TLS: the api_key would travel in clear text`);
  if (cfg.archive_staleness_secs >= cfg.archive_threshold_secs) {
    warnings.push(
      `archive_staleness_secs (${cfg.archive_staleness_secs}) is not below archive_threshold_secs (${cfg.archive_threshold_secs}): a replay after an outage could never catch up with the live session`,
    );
  }
  if (cfg.ping_interval_secs + cfg.pong_timeout_secs > 300) {
    warnings.push(`ping_interval_secs + pong_timeout_secs (${cfg.ping_interval_secs + cfg.pong_timeout_secs}) exceed 300 s, beyond reported server idle timeouts`);
  }
  if (cfg.max_frame_bytes < 8 * 1_048_576) {
    warnings.push(`max_frame_bytes (${cfg.max_frame_bytes}) is small: PoD message events with attachments exceed 1 MiB, and a larger frame ends the session`);
  }
  const proxy = proxyFor(endpoint, env);
  if (proxy) warnings.push(`connections go through the proxy ${proxy.display} (HTTPS_PROXY/NO_PROXY)`);
  return warnings;
}

/**
 * Orders two PoD cursors of one service by how far the stream is known covered (live contact or
 * completed archive), then by the highest event time; -1, 0, 1. An unreadable cursor counts as
 * no progress. Coordination uses it when a feed moves between replicas.
 */
export function comparePodCursors(a: unknown, b: unknown): number {
  const ca = readCursor(a).cursor;
  const cb = readCursor(b).cursor;
  if (!ca || !cb) return ca ? 1 : cb ? -1 : 0;
  const ta = cursorTime(ca);
  const tb = cursorTime(cb);
  const byTime = ta && tb ? compareTime(ta, tb) : ta ? 1 : tb ? -1 : 0;
  return Math.sign((coveredUntil(ca) ?? 0) - (coveredUntil(cb) ?? 0) || byTime);
}
