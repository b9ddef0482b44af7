import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import type { Argv } from 'yargs';
import { loadConfigObject } from '../config/load.ts';
import { Sidecar } from '../sidecar.ts';
import { createLogger } from '../telemetry/logger.ts';
import { reportError } from './common.ts';
import { runUntilSignal } from './run.ts';

export const command = 'demo';
export const describe = 'Built-in TAP and POD simulators -> sidecar -> stdout; no credentials needed';
export const builder = (y: Argv) =>
  y
    .option('duration', { type: 'number', describe: 'Stop after this many seconds (default: until Ctrl-C)' })
    .option('log-level', { choices: ['debug', 'info', 'warn', 'error'] as const, default: 'info' as const, describe: 'Log level (logs go to stderr)' });

/**
 * Starts both simulators on loopback and a sidecar with a temporary state directory and the
 * stdout output: records appear on stdout, logs and per-cycle statistics on stderr. TAP starts two
 * hours back, so its backfill shows events at once; POD streams live.
 */
export async function handler(args: { duration?: number; logLevel?: 'debug' | 'info' | 'warn' | 'error' }): Promise<number> {
  const logger = createLogger({ level: args.logLevel ?? 'info', name: 'proofpoint-sidecar-demo' });
  const stateDir = mkdtempSync(path.join(tmpdir(), 'proofpoint-sidecar-demo-'));
  // Loaded here: the other commands (and a replica in production) never load the simulators.
  const [{ startTapSimulator }, { startPodSimulator }] = await Promise.all([import('../simulator/tap/index.ts'), import('../simulator/pod/index.ts')]);
  const tap = await startTapSimulator({ ratesPerHour: { clicksBlocked: 60, clicksPermitted: 120, messagesBlocked: 60, messagesDelivered: 240 } });
  const pod = await startPodSimulator({ rate: { message: 1, maillog: 2, audit: 0.2 } });
  try {
    const start = new Date(Date.now() - 2 * 3600_000).toISOString();
    const { config } = loadConfigObject({
      globals: { name: 'proofpoint-sidecar-demo', log_level: args.logLevel ?? 'info', state_dir: stateDir, shutdown_timeout_secs: 5 },
      output: { type: 'stdout' },
      inputs: {
        proofpoint_tap: {
          id: 'demo-tap',
          credentials: tap.credentials,
          override_url_base: tap.url,
          window_lag_secs: 30,
          services: {
            clicksBlocked: { start_time_in_utc: start, request_period_in_seconds: 10 },
            clicksPermitted: { start_time_in_utc: start, request_period_in_seconds: 10 },
            messagesBlocked: { start_time_in_utc: start, request_period_in_seconds: 10 },
            messagesDelivered: { start_time_in_utc: start, request_period_in_seconds: 10 },
          },
        },
        proofpoint_on_demand: {
          id: 'demo-pod',
          credentials: pod.credentials,
          override_url_base: pod.url,
          services: { message: { request_period_in_seconds: 5 }, maillog: { request_period_in_seconds: 5 }, audit: { request_period_in_seconds: 5 } },
        },
      },
    });
    logger.info({ tap_simulator: tap.url, pod_simulator: pod.url, state_dir: stateDir }, 'Demo: simulators started; records follow on stdout. Ctrl-C stops.');
    let sidecar: Sidecar;
    try {
      sidecar = await Sidecar.start({ config, logger });
    } catch (err) {
      return reportError(err);
    }
    return await runUntilSignal(sidecar, logger, args.duration !== undefined ? { durationMs: args.duration * 1000 } : {});
  } finally {
    await Promise.all([tap.close(), pod.close()]);
    rmSync(stateDir, { recursive: true, force: true });
  }
}
