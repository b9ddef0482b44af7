/**
 * Shared wiring for the PoD source tests: a config pointing at the simulator, a clock that can
 * jump hours ahead while timers stay real, a log capture, and the sidecar's real state store and
 * pipeline around the source with an in-memory (or forward) sink.
 */
import { SourceMetricsStore } from '../../../plugin/telemetry/source-metrics.ts';
import { Writable } from 'node:stream';
import { pino, type Logger } from 'pino';
import type { ClientOptions } from 'ws';
import { Pipeline } from '../../../plugin/pipeline/pipeline.ts';
import { StateStore } from '../../../plugin/state/store.ts';
import type { Sink } from '../../../plugin/output/sink.ts';
import type { HealthReporter, ServiceStatus, Source, SourceContext } from '../../../plugin/sources/source.ts';
import { createPodSource, podInputSchema, type PodInputConfig } from '../../../plugin/sources/pod/create.ts';
import type { PodInputConfigInput } from '../../../plugin/sources/pod/config.ts';
import type { PodSimulator } from '../../../plugin/simulator/pod/index.ts';
import { systemClock, type Clock } from '../../../plugin/util/clock.ts';
import { MemorySink } from '../../helpers/memory-sink.ts';
import { TEST_SECRETS } from '../../helpers/secrets.ts';

export const API_KEY = TEST_SECRETS.podApiKey;
export const CLUSTER = 'pphosted_test_hosted';
export const HOUR = 3600_000;

/** The simulator options every test shares: test credentials, no history surprises. */
export function simBase(clock: Clock = systemClock) {
  return { apiKey: API_KEY, clusterId: CLUSTER, clock } as const;
}

/** An input config pointed at the simulator, fast enough for tests. */
export function podConfig(sim: PodSimulator, overrides: Partial<PodInputConfigInput> = {}, services: PodInputConfigInput['services'] = { message: {}, maillog: {}, audit: {} }): PodInputConfig {
  const svc = Object.fromEntries(Object.entries(services).map(([k, v]) => [k, v && { request_period_in_seconds: 1, ...v }]));
  return podInputSchema.parse({
    id: 'pod-test',
    credentials: { cluster_id: sim.credentials.cluster_id, api_key: sim.credentials.api_key },
    override_url_base: sim.url,
    batch_flush_secs: 0.05,
    batch_max_events: 200,
    retry_max_secs: 2,
    ...overrides,
    services: svc,
  });
}

/** System time plus an offset the test can move: hours pass at once, timers stay real. */
export class OffsetClock implements Clock {
  offset = 0;
  now(): number {
    return Date.now() + this.offset;
  }
  sleep(ms: number, signal?: AbortSignal): Promise<void> {
    return systemClock.sleep(ms, signal);
  }
  setTimer(ms: number, fn: () => void): () => void {
    return systemClock.setTimer(ms, fn);
  }
  jump(ms: number): void {
    this.offset += ms;
  }
  /** Moves the clock so that an hour boundary is `ms` ahead (archive windows end on whole hours). */
  beforeHourEnd(ms: number): void {
    const now = this.now();
    this.offset += Math.ceil(now / HOUR) * HOUR - ms - now;
  }
  /** Ms until the next hour boundary. */
  toHourEnd(): number {
    const now = this.now();
    return Math.ceil(now / HOUR) * HOUR - now;
  }
}

export interface CapturedLog {
  logger: Logger;
  lines: Array<Record<string, unknown>>;
  text(): string;
}

/** A pino logger whose lines are kept as objects. */
export function captureLog(level: 'debug' | 'info' = 'info'): CapturedLog {
  const raw: string[] = [];
  const lines: Array<Record<string, unknown>> = [];
  const dest = new Writable({
    write(chunk, _enc, cb) {
      const s = chunk.toString();
      raw.push(s);
      for (const l of s.split('\n').filter(Boolean)) lines.push(JSON.parse(l) as Record<string, unknown>);
      cb();
    },
  });
  return { logger: pino({ level }, dest), lines, text: () => raw.join('') };
}

export class HealthLog implements HealthReporter {
  readonly history: Array<{ service: string; status: ServiceStatus; reason?: string }> = [];
  set(service: string, status: ServiceStatus, reason?: string): void {
    this.history.push({ service, status, reason });
  }
  last(service: string) {
    return [...this.history].reverse().find((h) => h.service === service);
  }
}

/** A SourceContext for driving a source directly (no pipeline). */
export function directContext(o: { clock?: Clock; logger?: Logger; signal: AbortSignal; cursors?: Record<string, unknown>; unclean?: boolean; health?: HealthReporter }): SourceContext {
  return {
    clock: o.clock ?? systemClock,
    userAgent: 'proofpoint-sidecar/test',
    logger: o.logger ?? pino({ level: 'silent' }),
    signal: o.signal,
    cursor: async <C>(service: string) => o.cursors?.[service] as C | undefined,
    uncleanShutdown: o.unclean ?? false,
    resetServices: new Set(),
    requestLog: { record: async () => {}, list: async () => [], prune: async () => {} },
    health: o.health ?? { set: () => {} },
    metrics: new SourceMetricsStore().forInput('pod-test'),
  };
}

export async function until(cond: () => boolean | Promise<boolean>, what: string, ms = 20_000): Promise<void> {
  const end = Date.now() + ms;
  while (!(await cond())) {
    if (Date.now() > end) throw new Error(`timed out waiting for ${what}`);
    await new Promise((r) => setTimeout(r, 10));
  }
}

export interface Sidecar {
  store: StateStore;
  pipeline: Pipeline;
  source: Source;
  sink: Sink;
  log: CapturedLog;
  /** Stops like SIGTERM does: stop reading, drain, commit, close. */
  stop(): Promise<{ clean: boolean }>;
}

/** The real StateStore + Pipeline around a PoD source, with a memory sink unless given one. */
export async function startSidecar(o: { cfg: PodInputConfig; stateDir: string; clock?: Clock; sink?: Sink; wsOptions?: ClientOptions; log?: CapturedLog; env?: NodeJS.ProcessEnv }): Promise<Sidecar> {
  const clock = o.clock ?? systemClock;
  const log = o.log ?? captureLog();
  const store = await StateStore.open(o.stateDir, { clock, logger: log.logger });
  const sink = o.sink ?? new MemorySink();
  const source = createPodSource(o.cfg, { wsOptions: o.wsOptions, clock, env: o.env ?? {} });
  const pipeline = new Pipeline({ store, sink, sources: [source], clock, logger: log.logger });
  await pipeline.start();
  return {
    store,
    pipeline,
    source,
    sink,
    log,
    async stop() {
      const r = await pipeline.stop(10_000);
      await store.close({ clean: r.clean });
      return r;
    },
  };
}

/** Messages of the records a memory sink acknowledged for a tag suffix, with their key field. */
export function delivered(sink: MemorySink, service: 'message' | 'maillog' | 'audit'): string[] {
  const field = service === 'maillog' ? 'id' : 'guid';
  return sink.records.filter((r) => r.record.service === service).map((r) => (JSON.parse(r.record.message as string) as Record<string, string>)[field]!);
}

/** Keys that occur more than once. */
export function repeats(keys: string[]): string[] {
  const seen = new Set<string>();
  const out = new Set<string>();
  for (const k of keys) (seen.has(k) ? out : seen).add(k);
  return [...out];
}
