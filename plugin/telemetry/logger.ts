import { pino, type Logger, type DestinationStream } from 'pino';
import pretty from 'pino-pretty';
import { scrubLogLine } from './secrets.ts';

export type { Logger };
export type LogLevel = 'debug' | 'info' | 'warn' | 'error';

export interface LoggerOptions {
  level?: LogLevel | 'silent';
  /** Human-readable lines; defaults to whether stderr is a TTY (JSON when a destination is given). */
  pretty?: boolean;
  /** Where lines go (pretty-printed first if `pretty`: then a Writable); stderr by default so stdout stays free for the stdout output. */
  destination?: DestinationStream;
  name?: string;
}

/**
 * Structured JSON logs on stderr (pino); human-readable when stderr is a TTY. Every line, as
 * serialized (JSON-escaped), passes through `scrubLogLine()` before anything writes or
 * pretty-prints it, so no credential is written in any form.
 */
export function createLogger(opts: LoggerOptions = {}): Logger {
  const usePretty = opts.pretty ?? (opts.destination === undefined && Boolean(process.stderr.isTTY));
  const destination: DestinationStream = usePretty
    ? pretty({
        destination: opts.destination ?? 2,
        sync: true,
        colorize: opts.destination === undefined,
        translateTime: 'SYS:standard',
        ignore: 'pid,hostname',
      })
    : (opts.destination ?? pino.destination({ dest: 2, sync: true }));
  return pino(
    {
      name: opts.name ?? 'proofpoint-sidecar',
      level: opts.level ?? 'info',
      base: undefined,
      timestamp: pino.stdTimeFunctions.isoTime,
      formatters: { level: (label) => ({ level: label }) },
      // pino's default `err` serializer turns a plain object ({ code, message }) into
      // `"type":"Object","stack":""`: only real Errors get its treatment.
      serializers: { err: (e: unknown) => (e instanceof Error ? pino.stdSerializers.err(e) : e) },
      hooks: { streamWrite: scrubLogLine },
    },
    destination,
  );
}

/** A logger that writes nothing, for tests that do not look at logs. */
export function silentLogger(): Logger {
  return pino({ level: 'silent' });
}
