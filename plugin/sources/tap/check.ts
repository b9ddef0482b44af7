/**
 * The warnings `proofpoint-sidecar check` prints for input `proofpoint_tap`: what the config will
 * do that an operator may not expect (history the API no longer serves, a cadence the rate
 * budget cannot fit). Loaded by the descriptor (index.ts) only when `check` runs.
 */
import { formatUtc, parseTimestampMs } from '../../util/time.ts';
import { enabledServices, tapStartTimes, type TapInputConfig } from './config.ts';
import { assertStartTimes } from '../start-time.ts';
import { poolOf } from './budget.ts';
import { tapRequestPath } from './endpoint.ts';
import { LOOKBACK_MS, MIN_WINDOW_MS } from './window.ts';

const DAY_SECS = 86_400;

/**
 * Warnings for `check`: what the config will do that an operator may not expect. Keys are named
 * relative to `inputs.proofpoint_tap` (the caller prefixes it). Throws StartTimeError (101) for a
 * start time in the future.
 */
export function checkTapConfig(cfg: TapInputConfig, now: number = Date.now()): string[] {
  assertStartTimes(tapStartTimes(cfg), now);
  const warnings: string[] = [];
  const names = enabledServices(cfg);

  for (const svc of names) {
    const text = cfg.services[svc]?.start_time_in_utc;
    const start = text === undefined || text === null ? undefined : parseTimestampMs(text);
    if (start !== undefined && start < now - LOOKBACK_MS) {
      warnings.push(
        `services.${svc}.start_time_in_utc (${text}) is more than 7 days back: the TAP API serves 7 days, ` +
          `so data older than ${formatUtc(now - LOOKBACK_MS)} cannot be fetched; collection starts at the 7-day limit`,
      );
    }
  }

  const pool = poolOf(tapRequestPath(names));
  const periods = names.map((s) => cfg.services[s]?.request_period_in_seconds ?? 60);
  const period = Math.max(Math.min(...periods), MIN_WINDOW_MS / 1000);
  for (const s of names) {
    const p = cfg.services[s]?.request_period_in_seconds ?? 60;
    if (p < MIN_WINDOW_MS / 1000) {
      warnings.push(
        `services.${s}.request_period_in_seconds (${p}) is below ${MIN_WINDOW_MS / 1000}, the smallest window the TAP API serves: it polls every ${MIN_WINDOW_MS / 1000} s`,
      );
    }
  }
  if (names.length >= 2 && new Set(periods).size > 1) {
    warnings.push(
      `services ${names.join(', ')} share one /v2/siem/all request per window, so the shortest request_period_in_seconds (${period}) applies to all of them`,
    );
  }
  const limit = cfg.max_requests_per_day;
  const settlePerDay = cfg.settle_requery_enabled ? Math.ceil(DAY_SECS / cfg.settle_window_secs) : 0;
  const pollsPerDay = Math.ceil(DAY_SECS / period);
  const perDay = pollsPerDay + settlePerDay;
  if (perDay > limit) {
    const room = limit - settlePerDay;
    const fix =
      room > 0
        ? `raise request_period_in_seconds to at least ${Math.ceil(DAY_SECS / room)}`
        : `raise settle_window_secs (settle re-queries alone need ${settlePerDay} a day)`;
    warnings.push(
      `polling every ${period} s needs ${pollsPerDay} requests a day` +
        (settlePerDay > 0 ? ` plus ${settlePerDay} settle re-queries` : '') +
        ` = ${perDay}, more than the ${limit} the rate budget allows in pool ${pool}; requests will wait for the budget and events arrive late: ${fix}`,
    );
  }
  const starts = names.map((s) => {
    const text = cfg.services[s]?.start_time_in_utc;
    return text === undefined ? now - 3600_000 : text === null ? now : (parseTimestampMs(text) ?? now);
  });
  const backfillWindows = Math.ceil((now - Math.max(Math.min(...starts), now - LOOKBACK_MS)) / 3_600_000);
  if (perDay <= limit && backfillWindows + perDay > limit) {
    warnings.push(
      `the backfill needs about ${backfillWindows} one-hour requests on top of ${perDay} a day of polling, more than ` +
        `the ${limit} allowed per 24 h in pool ${pool}; it will pause for the budget`,
    );
  }
  if (!cfg.settle_requery_enabled) {
    warnings.push(
      `settle_requery_enabled is false: TAP indexes events up to about 30 minutes late, and events indexed after their window was queried will be missed`,
    );
  }
  if (cfg.override_url_base?.startsWith('http:') && !/^http:\/\/(127\.|localhost|\[::1\])/.test(cfg.override_url_base)) {
    warnings.push(`override_url_base uses plain HTTP to a non-loopback host: the credentials travel unencrypted`);
  }
  return warnings;
}
