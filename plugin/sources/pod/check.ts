/**
 * The warnings `proofpoint-sidecar check` prints for input `proofpoint_on_demand`: what the config
 * will do that an operator may not expect (history archive mode no longer serves, a reconnect
 * cadence that misses the live resume, clear-text keys). Loaded by the descriptor (index.ts) only
 * when `check` runs.
 */
import { formatUtc, parseTimestampMs } from '../../util/time.ts';
import { POD_ARCHIVE_MAX_AGE_MS, POD_LIVE_RESUME_MS, enabledPodServices, podStartTimes, type PodInputConfig } from './config.ts';
import { proxyFor } from './proxy.ts';
import { assertStartTimes } from '../start-time.ts';
import { podEndpoint } from './source.ts';

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
