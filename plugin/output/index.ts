/** Builds the configured output. */
import type { Logger } from 'pino';
import type { OutputConfig } from '../config/schema.ts';
import type { Clock } from '../util/clock.ts';
import { ForwardSink } from './forward/sink.ts';
import { StdoutSink } from './stdout.ts';
import type { Sink } from './sink.ts';

export function createSink(cfg: OutputConfig, opts: { logger?: Logger; clock?: Clock; stream?: NodeJS.WritableStream } = {}): Sink {
  if (cfg.type === 'stdout') return new StdoutSink(cfg, { stream: opts.stream });
  return new ForwardSink(cfg, { logger: opts.logger, clock: opts.clock });
}
