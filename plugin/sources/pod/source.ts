/**
 * Input `proofpoint_on_demand`: one stream per configured service (stream.ts), their batches
 * merged into the source's one iterator, round robin, so a busy maillog stream does not starve
 * audit. The pipeline pulls a batch only when the output has room; until then every stream fills
 * its own bounded buffer and then pauses its socket.
 *
 * Errors: a service refused for good (401, 400, 404, 405) stops alone and is reported `failed`
 * in health; the source throws only when every service has stopped that way.
 */
import type http from 'node:http';
import type { ClientOptions } from 'ws';
import type { Batch, ServiceSpec, Source, SourceContext } from '../source.ts';
import { enabledPodServices, POD_ARCHIVE_MAX_AGE_MS, POD_DEFAULT_TAGS, POD_DEFAULT_URL_BASE, POD_SERVICES, type PodInputConfig, type PodServiceName } from './config.ts';
import type { PodCursor } from './cursor.ts';
import type { ModeLimits } from './mode.ts';
import { ServiceStream } from './stream.ts';

export interface PodSourceOptions {
  wsOptions?: ClientOptions;
  /** Proxy agent (proxy.ts), when the environment asks for one. */
  agent?: http.Agent;
}

export { enabledPodServices };

export function podEndpoint(cfg: PodInputConfig): URL {
  const base = (cfg.override_url_base ?? POD_DEFAULT_URL_BASE).replace(/\/+$/, '');
  return new URL(`${base}/v1/stream`);
}

export function podLimits(cfg: PodInputConfig): ModeLimits {
  return {
    thresholdMs: cfg.archive_threshold_secs * 1000,
    stalenessMs: cfg.archive_staleness_secs * 1000,
    windowMs: cfg.archive_window_secs * 1000,
    maxAgeMs: POD_ARCHIVE_MAX_AGE_MS,
  };
}

export class PodSource implements Source<PodCursor> {
  readonly type = 'proofpoint_on_demand' as const;
  readonly id: string;
  readonly services: readonly ServiceSpec[];
  readonly #cfg: PodInputConfig;
  readonly #opts: PodSourceOptions;
  #lastPullingId = 0;
  /** The streams of the current run, for tests and statistics. */
  streams: readonly ServiceStream[] = [];

  constructor(cfg: PodInputConfig, opts: PodSourceOptions = {}) {
    this.#cfg = cfg;
    this.#opts = opts;
    this.id = cfg.id;
    this.services = enabledPodServices(cfg).map((name) => {
      const svc = cfg.services[name]!;
      return { name, tag: svc.override_tag_base ?? POD_DEFAULT_TAGS[name], dedupMaxAgeMs: svc.dedup_window_secs * 1000, startTime: svc.start_time };
    });
  }

  async *run(ctx: SourceContext): AsyncIterable<Batch<PodCursor>> {
    // Also aborted when the consumer stops iterating, so no socket outlives the run.
    const stop = new AbortController();
    const onAbort = () => stop.abort(ctx.signal.reason);
    if (ctx.signal.aborted) onAbort();
    else ctx.signal.addEventListener('abort', onAbort, { once: true });
    let wake: (() => void) | undefined;
    const notify = () => {
      const w = wake;
      wake = undefined;
      w?.();
    };
    const endpoint = podEndpoint(this.#cfg);
    const limits = podLimits(this.#cfg);
    const streams = this.services.map(
      (spec) =>
        new ServiceStream({
          name: spec.name as PodServiceName,
          cfg: this.#cfg,
          svc: this.#cfg.services[spec.name as PodServiceName]!,
          ctx,
          signal: stop.signal,
          endpoint,
          agent: this.#opts.agent,
          wsOptions: this.#opts.wsOptions,
          limits,
          nextPullingId: () => (this.#lastPullingId = Math.max(ctx.clock.now(), this.#lastPullingId + 1)),
          notify,
        }),
    );
    this.streams = streams;
    const runs = streams.map((s) => s.run());
    let turn = 0;
    try {
      for (;;) {
        let batch: Batch<PodCursor> | undefined;
        for (let k = 0; k < streams.length && !batch; k++) {
          const i = (turn + k) % streams.length;
          batch = streams[i]!.take();
          if (batch) turn = i + 1;
        }
        if (batch) {
          yield batch;
          continue;
        }
        if (streams.every((s) => s.done)) break;
        await new Promise<void>((resolve) => (wake = resolve));
      }
      await Promise.all(runs);
    } finally {
      ctx.signal.removeEventListener('abort', onAbort);
      stop.abort(new Error('source stopped'));
    }
    const fatal = streams.map((s) => s.fatal);
    if (streams.length > 0 && fatal.every((e) => e !== undefined)) throw fatal[0];
  }
}
