/**
 * `check --online` for input `proofpoint_tap`: one request for a 30-second window that ended a few
 * minutes ago (the smallest window the API accepts). It costs one request of the pool's 24 h
 * budget, which a running sidecar cannot see (its request log is locked): run it while collection
 * is stopped or expect one request less.
 */
import type { Verdict } from '../descriptor.ts';
import { describeProbeError } from '../verdict.ts';
import { tapClientFor } from './client.ts';
import { enabledServices, type TapInputConfig } from './config.ts';
import { tapRequestPath } from './endpoint.ts';

export async function probeTap(cfg: TapInputConfig, now = Date.now()): Promise<Verdict[]> {
  const names = enabledServices(cfg);
  const path = tapRequestPath(names);
  const client = tapClientFor(cfg, { timeoutMs: Math.min(cfg.request_timeout_secs, 60) * 1000 });
  const end = Math.floor((now - cfg.window_lag_secs * 1000 - 60_000) / 1000) * 1000;
  const window = { start: end - 30_000, end };
  let verdict: { ok: boolean; text: string };
  try {
    const answer = await client.fetchWindow(path, window, AbortSignal.timeout(90_000));
    const events = Object.values(answer.arrays).reduce((n, a) => n + (a?.length ?? 0), 0);
    verdict = { ok: true, text: `credentials accepted; ${path} answered ${answer.status} (${events} events in a 30 s test window)` };
  } catch (err) {
    verdict = { ok: false, text: describeProbeError(err) };
  } finally {
    await client.close();
  }
  return names.map((service) => ({ service, ...verdict }));
}
