import { pino, type Logger, type DestinationStream } from 'pino';
import pretty from 'pino-pretty';
import { scrub } from './secrets.ts';

export type { Logger };
export type LogLevel = 'debug' | 'info' | 'warn' | 'error';

export interface LoggerOptions {
  level?: LogLevel | 'silent';
  /** Human-readable lines; defaults to whether stderr is a TTY. */
  pretty?: boolean;
  /** Where lines go; stderr by default so stdout stays free for the stdout output. */
  destination?: DestinationStream;
  name?: string;
}

/**
 * Structured JSON logs on stderr (pino); human-readable when stderr is a TTY. Every line passes
 * through `scrub()` so no registered credential is ever written.
 */
export function createLogger(opts: LoggerOptions = {}): Logger {
  const usePretty = opts.pretty ?? Boolean(process.stderr.isTTY);
  const destination: DestinationStream =
    opts.destination ??
    (usePretty
      ? pretty({ destination: 2, sync: true, colorize: true, translateTime: 'SYS:standard', ignore: 'pid,hostname' })
      : pino.destination({ dest: 2, sync: true }));
  return pino(
    {
      name: opts.name ?? 'proofpoint-sidecar',
      level: opts.level ?? 'info',
      base: undefined,
      timestamp: pino.stdTimeFunctions.isoTime,
      formatters: { level: (label) => ({ level: label }) },
      hooks: { streamWrite: (s) => scrub(s) },
    },
    destination,
  );
}

/** A logger that writes nothing, for tests that do not look at logs. */
export function silentLogger(): Logger {
  return pino({ level: 'silent' });
}
