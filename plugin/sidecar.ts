/**
 * Wiring only: config -> state -> output -> sources -> pipeline, each part built from the config
 * and handed to the next. `stop()` stops the sources, drains the output, then closes the state.
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
import { USER_AGENT, userAgentFor } from './util/user-agent.ts';
import { Coordinator } from './coordination/coordinator.ts';
import { FeedRunner } from './coordination/feed-runner.ts';
import { feedsOf } from './coordination/feeds.ts';
import { replicaIdentity } from './coordination/identity.ts';
import type { LeaseApi } from './coordination/lease-api.ts';

export interface SidecarOptions {
  config: Config;
  logger: Logger;
  clock?: Clock;
  /** For the stdout output (tests); process.stdout by default. */
  stdout?: NodeJS.WritableStream;
  /** Replaces the sources built from config (tests). */
  sources?: Source[];
  /** Replaces the Kubernetes client when globals.coordination is set (tests). */
  leaseApi?: LeaseApi;
  /** Replaces the replica identity (tests); default POD_NAME or the hostname, plus a random suffix. */
  identity?: string;
}

export class Sidecar {
  readonly config: Config;
  readonly store: StateStore;
  readonly sink: Sink;
  readonly pipeline: Pipeline;
  readonly http?: HttpServer;
  /** Set when globals.coordination is: which feeds this replica holds. */
  readonly coordinator?: Coordinator;
  readonly #logger: Logger;
  #stopping?: Promise<{ clean: boolean }>;

  private constructor(config: Config, store: StateStore, sink: Sink, pipeline: Pipeline, logger: Logger, http?: HttpServer, coordinator?: Coordinator) {
    this.config = config;
    this.coordinator = coordinator;
    this.store = store;
    this.sink = sink;
    this.pipeline = pipeline;
    this.#logger = logger;
    this.http = http;
  }

  static async start(opts: SidecarOptions): Promise<Sidecar> {
    const { config, logger } = opts;
    const clock = opts.clock ?? systemClock;
    const coordination = config.globals.coordination;
    // Coordinated: no source runs until its feed's Lease is held.
    const feeds = coordination ? feedsOf(config, coordination.lease_prefix) : undefined;
    const sources = opts.sources ?? (coordination ? [] : await createSources(config));
    const identity = coordination ? (opts.identity ?? replicaIdentity()) : undefined;
    const userAgent = identity ? userAgentFor(identity) : USER_AGENT;
    let leaseApi: LeaseApi | undefined;
    if (coordination) {
      leaseApi = opts.leaseApi ?? (await (await import('./coordination/kubernetes.ts')).createKubernetesLeaseApi(coordination, { userAgent }));
    }
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
        userAgent,
      });
      const coordinator =
        coordination && feeds && leaseApi && identity
          ? new Coordinator({
              api: leaseApi,
              identity,
              feeds,
              timing: {
                leaseDurationMs: coordination.lease_duration_secs * 1000,
                renewDeadlineMs: coordination.renew_deadline_secs * 1000,
                retryPeriodMs: coordination.retry_period_secs * 1000,
              },
              handlers: new FeedRunner({ pipeline, store, clock, logger, carryKeys: coordination.carry_dedup_keys }),
              clock,
              logger,
            })
          : undefined;
      const listen = config.globals.http?.listen;
      let http: HttpServer | undefined;
      if (listen) {
        try {
          http = await startHttpServer(listen, { pipeline, sink, store, clock, coordinator });
        } catch (err) {
          throw new SidecarError(ErrorCode.CONFIG, `Cannot listen on ${listen} (globals.http.listen): ${(err as Error).message}`, {
            exitCode: 2,
            fatal: true,
          });
        }
      }
      await pipeline.start();
      coordinator?.start();
      logger.info(
        {
          state_dir: store.dir,
          output: config.output.type === 'forward' ? (config.output.unix_path ?? `${config.output.host}:${config.output.port}`) : 'stdout',
          inputs: sources.map((s) => ({ type: s.type, id: s.id, services: s.services.map((x) => x.name) })),
          ...(coordinator && feeds && leaseApi
            ? { replica: coordinator.identity, namespace: leaseApi.namespace, feeds: feeds.map((f) => ({ feed: f.id, lease: f.lease })) }
            : {}),
          http: http?.url,
        },
        coordinator ? 'Sidecar started; feeds are pulled once their Leases are held.' : 'Sidecar started.',
      );
      return new Sidecar(config, store, sink, pipeline, logger, http, coordinator);
    } catch (err) {
      await store.close({ clean: false }).catch(() => {});
      throw err;
    }
  }

  /**
   * Resolves when every source has ended by itself (all failed, or finite sources in tests).
   * Coordinated, sources come and go with Leases: never.
   */
  get done(): Promise<void> {
    return this.coordinator ? new Promise<void>(() => {}) : this.pipeline.done;
  }

  /**
   * Stops sources, drains in-flight chunks within globals.shutdown_timeout_secs, commits, closes.
   * Idempotent.
   */
  stop(): Promise<{ clean: boolean }> {
    this.#stopping ??= (async () => {
      const timeoutMs = this.config.globals.shutdown_timeout_secs * 1000;
      // Held Leases are renewed while the pipeline drains, and released after the final commit.
      this.coordinator?.stopAcquiring();
      const r = await this.pipeline.stop(timeoutMs);
      await this.coordinator?.release(r.clean);
      await this.store.close({ clean: r.clean });
      await this.http?.close();
      const commitFailures = this.pipeline.commitFailures();
      if (r.clean) this.#logger.info('Sidecar stopped; every acknowledged batch is committed.');
      else if (commitFailures.length > 0)
        this.#logger.error(
          { uncommitted_batches: r.uncommittedBatches, inputs: commitFailures.map((f) => ({ input_id: f.input, code: f.code, pending_batches: f.pendingBatches })) },
          `Sidecar stopped while commits are failing: ${commitFailures[0]!.cause}; the next start re-reads the uncommitted batches.`,
        );
      else if (r.failedSources.length > 0)
        this.#logger.warn(
          { failed_inputs: r.failedSources, uncommitted_batches: r.uncommittedBatches },
          'Sidecar stopped after an input failed; the next start recovers as after a crash and re-reads from the committed cursors.',
        );
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
