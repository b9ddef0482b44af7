/**
 * The `demo` command's definition. What it runs (the simulators, the sidecar on them, the report)
 * is in demo-run.ts, loaded only when `demo` is the command: `run`, `check` and `state` never load
 * the simulators.
 */
import type { Argv } from 'yargs';
import type { LogLevel } from '../telemetry/logger.ts';
import { UsageError } from './common.ts';

export const command = 'demo';
export const describe = 'Built-in TAP and POD simulators -> sidecar -> stdout or a Fluent Bit (forward); no credentials needed';

/** How long the demo runs when --duration is not given. */
export const DEFAULT_DEMO_DURATION = '10s';

export interface DemoArgs {
  /** Seconds, or 10s, 2m, 1h; 0: until Ctrl-C. */
  duration?: string | number;
  output?: 'stdout' | 'forward';
  host?: string;
  port?: number;
  config?: string;
  records?: boolean;
  logLevel?: LogLevel;
}

/** `10`, `10s`, `2m`, `1h`, `0` (until Ctrl-C) -> milliseconds. */
export function parseDemoDuration(v: unknown): number {
  const m = /^\s*(\d+(?:\.\d+)?)\s*(ms|s|m|h)?\s*$/.exec(String(v));
  if (!m) throw new UsageError(`--duration must be a number of seconds or a duration like 10s, 2m, 1h (0: until Ctrl-C); got "${String(v)}"`);
  const unit = { ms: 1, s: 1000, m: 60_000, h: 3_600_000 }[(m[2] ?? 's') as 'ms' | 's' | 'm' | 'h'];
  return Math.round(Number(m[1]) * unit);
}

export const builder = (y: Argv) =>
  y
    .option('duration', {
      type: 'string',
      default: DEFAULT_DEMO_DURATION,
      describe: 'Stop after this long (seconds, or 10s, 2m, 1h); 0 runs until Ctrl-C',
    })
    .option('output', {
      choices: ['stdout', 'forward'] as const,
      describe: "Where records go: this console (stdout), or a Fluent Bit forward input (forward; default with --host, --port, or a --config whose output is forward)",
    })
    .option('host', { type: 'string', describe: 'Fluent Bit forward input host (--output forward; default 127.0.0.1)' })
    .option('port', { type: 'number', describe: 'Fluent Bit forward input port (--output forward; default 24224)' })
    .option('config', {
      alias: 'c',
      type: 'string',
      describe: "Take the output section (host, port, shared_key, tls...) from this configuration file; its inputs are not used",
    })
    .option('records', { type: 'boolean', default: false, describe: 'stdout output: print every record as a JSON line on stdout (the report goes to stderr)' })
    .option('log-level', {
      choices: ['debug', 'info', 'warn', 'error'] as const,
      default: 'warn' as const,
      describe: "The sidecar's own log level (logs go to stderr)",
    });

/**
 * Starts both simulators on loopback and a sidecar on them, runs it for --duration, stops it the
 * way SIGTERM does and prints a summary per service (demo-run.ts).
 */
export async function handler(args: DemoArgs): Promise<number> {
  const { runDemo } = await import('./demo-run.ts');
  return runDemo(args);
}
