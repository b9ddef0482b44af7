/** A Source that yields what a test scripts, for pipeline tests. */
import type { Batch, InputType, Source, SourceContext, ServiceSpec } from '../../plugin/sources/source.ts';
import { eventTimeFromMs } from '../../plugin/util/time.ts';

export function spec(name: string, extra: Partial<ServiceSpec> = {}): ServiceSpec {
  return { name, tag: `test.${name}`, dedupMaxAgeMs: 3_600_000, ...extra };
}

export function ev(key: string | undefined, message = `{"id":"${key}"}`, ms = Date.UTC(2026, 10, 23, 12)) {
  return { key, message, time: eventTimeFromMs(ms) };
}

export class ScriptedSource implements Source {
  readonly type: InputType;
  readonly id: string;
  readonly services: ServiceSpec[];
  /** Batches pulled by the pipeline so far. */
  pulled = 0;
  ctx?: SourceContext;
  readonly #script: (ctx: SourceContext) => AsyncIterable<Batch>;

  constructor(id: string, services: ServiceSpec[], script: Batch[] | ((ctx: SourceContext) => AsyncIterable<Batch>), type: InputType = 'proofpoint_tap') {
    this.id = id;
    this.type = type;
    this.services = services;
    this.#script = Array.isArray(script)
      ? async function* () {
          yield* script;
        }
      : script;
  }

  async *run(ctx: SourceContext): AsyncIterable<Batch> {
    this.ctx = ctx;
    for await (const b of this.#script(ctx)) {
      this.pulled++;
      yield b;
    }
  }
}
