import type { Argv } from 'yargs';
import { Sidecar } from '../sidecar.ts';
import { loadWithLogger, reportError, withConfig, type ConfigArgs } from './common.ts';

export const command = 'run';
export const describe = 'Run the sidecar: collect, forward, checkpoint on acknowledgement';
export const builder = (y: Argv) => withConfig(y);

/**
 * Runs until SIGTERM/SIGINT (then drains within globals.shutdown_timeout_secs, commits, exits 0)
 * or until every input has stopped by itself (exits 1 when one failed).
 */
export async function handler(args: ConfigArgs): Promise<number> {
  const { config, logger } = loadWithLogger(args.config);
  let sidecar: Sidecar;
  try {
    sidecar = await Sidecar.start({ config, logger });
  } catch (err) {
    return reportError(err);
  }
  return runUntilSignal(sidecar, logger);
}

export async function runUntilSignal(sidecar: Sidecar, logger: import('pino').Logger, opts: { durationMs?: number } = {}): Promise<number> {
  let signals = 0;
  const stopped = new Promise<string>((resolve) => {
    const onSignal = (sig: NodeJS.Signals) => {
      signals++;
      if (signals === 1) {
        logger.info({ signal: sig }, 'Stopping: draining in-flight events.');
        resolve(sig);
      } else {
        logger.warn({ signal: sig }, 'Second signal: exiting without waiting; unacknowledged events are read again at the next start.');
        process.exit(1);
      }
    };
    process.on('SIGTERM', onSignal);
    process.on('SIGINT', onSignal);
    if (opts.durationMs !== undefined) setTimeout(() => resolve('duration'), opts.durationMs).unref();
  });
  const ended = await Promise.race([stopped, sidecar.done.then(() => 'sources-ended')]);
  await sidecar.stop();
  if (ended === 'sources-ended') {
    const failed = sidecar.pipeline.health.all().filter((h) => h.status === 'failed');
    if (failed.length > 0) {
      logger.error({ failed: failed.map((f) => `${f.input}/${f.service}: ${f.reason}`) }, 'Every input has stopped; exiting.');
      return 1;
    }
  }
  return 0;
}
