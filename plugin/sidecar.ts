/**
 * Wiring only: config -> state -> output -> sources -> pipeline (aesthetics.md §6 `main.ts`).
 * `run` and `demo` both start a Sidecar; tests start one in-process.
 */
import type { Logger } from 'pino';
import type { Config } from './config/schema.ts';
import { createSink } from './output/index.ts';
import type { Sink } from './output/sink.ts';
import { Pipeline } from './pipeline/pipeline.ts';
import { createSources } from './sources/registry.ts';
import type { Source } from './sources/source.ts';
import { StateStore } from './state/store.ts';
import { systemClock, type Clock } from './util/clock.ts';
import { ErrorCode, SidecarError } from './errors.ts';
import { startHttpServer, type HttpServer } from './telemetry/http.ts';

export interface SidecarOptions {
  config: Config;
  logger: Logger;
  clock?: Clock;
  /** For the stdout output (tests); process.stdout by default. */
  stdout?: NodeJS.WritableStream;
  /** Replaces the sources built from config (tests). */
  sources?: Source[];
}

export class Sidecar {
  readonly config: Config;
  readonly store: StateStore;
  readonly sink: Sink;
  readonly pipeline: Pipeline;
  readonly http?: HttpServer;
  readonly #logger: Logger;
  #stopping?: Promise<{ clean: boolean }>;

  private constructor(config: Config, store: StateStore, sink: Sink, pipeline: Pipeline, logger: Logger, http?: HttpServer) {
    this.config = config;
    this.store = store;
    this.sink = sink;
    this.pipeline = pipeline;
    this.#logger = logger;
    this.http = http;
  }

  static async start(opts: SidecarOptions): Promise<Sidecar> {
    const { config, logger } = opts;
    const clock = opts.clock ?? systemClock;
    const sources = opts.sources ?? createSources(config);
    const store = await StateStore.open(config.globals.state_dir, { clock, logger });
    try {
      const sink = createSink(config.output, { logger: logger.child({ component: 'output' }), clock, stream: opts.stdout });
      const pipeline = new Pipeline({
        store,
        sink,
        sources,
        clock,
        logger,
        dedupMaxKeys: config.globals.dedup_max_keys,
        sweepIntervalMs: config.globals.dedup_sweep_interval_secs * 1000,
      });
      const listen = config.globals.http?.listen;
      let http: HttpServer | undefined;
      if (listen) {
        try {
          http = await startHttpServer(listen, { pipeline, sink, store, clock });
        } catch (err) {
          throw new SidecarError(ErrorCode.CONFIG, `Cannot listen on ${listen} (globals.http.listen): ${(err as Error).message}`, {
            exitCode: 2,
            fatal: true,
          });
        }
      }
      await pipeline.start();
      logger.info(
        {
          state_dir: store.dir,
          output: config.output.type === 'forward' ? (config.output.unix_path ?? `${config.output.host}:${config.output.port}`) : 'stdout',
          inputs: sources.map((s) => ({ type: s.type, id: s.id, services: s.services.map((x) => x.name) })),
          http: http?.url,
        },
        'Sidecar started.',
      );
      return new Sidecar(config, store, sink, pipeline, logger, http);
    } catch (err) {
      await store.close({ clean: false }).catch(() => {});
      throw err;
    }
  }

  /** Resolves when every source has ended by itself (all failed, or finite sources in tests). */
  get done(): Promise<void> {
    return this.pipeline.done;
  }

  /**
   * Stops sources, drains in-flight chunks within globals.shutdown_timeout_secs, commits, closes.
   * Idempotent.
   */
  stop(): Promise<{ clean: boolean }> {
    this.#stopping ??= (async () => {
      const timeoutMs = this.config.globals.shutdown_timeout_secs * 1000;
      const r = await this.pipeline.stop(timeoutMs);
      await this.store.close({ clean: r.clean });
      await this.http?.close();
      if (r.clean) this.#logger.info('Sidecar stopped; every acknowledged batch is committed.');
      else
        this.#logger.warn(
          { uncommitted_batches: r.uncommittedBatches, timeout_secs: this.config.globals.shutdown_timeout_secs },
          'Sidecar stopped before every batch was acknowledged; the next start re-reads them.',
        );
      return { clean: r.clean };
    })();
    return this.#stopping;
  }
}
