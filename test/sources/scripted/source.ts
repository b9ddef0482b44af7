/** The `scripted_lines` source: one batch of the configured lines, then it waits for shutdown. */
import type { Batch, ServiceSpec, Source, SourceContext } from '../../../plugin/sources/source.ts';
import { eventTimeFromMs } from '../../../plugin/util/time.ts';
import { SCRIPTED_TYPE, type ScriptedCursor, type ScriptedInputConfig } from './index.ts';

export class ScriptedLinesSource implements Source<ScriptedCursor> {
  readonly type = SCRIPTED_TYPE;
  readonly id: string;
  readonly services: ServiceSpec[];
  readonly #cfg: ScriptedInputConfig;

  constructor(cfg: ScriptedInputConfig) {
    this.#cfg = cfg;
    this.id = cfg.id;
    this.services = [{ name: 'lines', tag: 'test.scripted.lines', dedupMaxAgeMs: 3_600_000 }];
  }

  async *run(ctx: SourceContext): AsyncIterable<Batch<ScriptedCursor>> {
    const { lines, first_at_ms: first } = this.#cfg.services.lines;
    const events = lines.map((line, i) => ({ key: `${i}`, message: JSON.stringify({ line }), time: eventTimeFromMs(first + i * 1000) }));
    ctx.metrics.inc('scripted_lines_total', { service: 'lines' }, lines.length);
    yield { service: 'lines', pullingId: 1, events, cursor: { count: lines.length, last_at_ms: first + (lines.length - 1) * 1000 } };
    if (!ctx.signal.aborted) await new Promise((r) => ctx.signal.addEventListener('abort', r, { once: true }));
  }
}
