/**
 * Test harness for the TAP source: a simulator and a source on one fake clock, run through the
 * real Pipeline + StateStore + MemorySink (or, for batch-level tests, a direct runner that follows
 * the same contract in memory). State outlives a restart (new source, same store).
 *
 * Time moves only when everything is quiet (no request in flight, nothing delivered or requested
 * for a few real turns): the clock then jumps to the next timer, i.e. to the end of whatever the
 * source is sleeping for. Tests assert behaviour, never timing.
 */
import { SourceMetricsStore } from '../../../plugin/telemetry/source-metrics.ts';
import { Writable } from 'node:stream';
import { pino, type Logger } from 'pino';
import { FakeClock } from '../../helpers/fake-clock.ts';
import { MemorySink, type ReceivedRecord } from '../../helpers/memory-sink.ts';
import { tmpDir } from '../../helpers/tmp.ts';
import { Pipeline } from '../../../plugin/pipeline/pipeline.ts';
import { StateStore } from '../../../plugin/state/store.ts';
import type { Batch, RequestLog, ServiceStatus, Source, SourceContext } from '../../../plugin/sources/source.ts';
import type { Clock } from '../../../plugin/util/clock.ts';
import { tapInputSchema, type TapInputConfigInput } from '../../../plugin/sources/tap/config.ts';
import { createTapSource, type TapCursor, type TapInputConfig, type TapServiceName } from '../../../plugin/sources/tap/create.ts';
import { parseInterval, startTapSimulator, type TapScenarioOptions, type TapSimulator } from '../../../plugin/simulator/tap/index.ts';

export const T0 = Date.UTC(2026, 10, 23, 12, 0, 0);
export const HOUR = 3600_000;
export const MIN = 60_000;
export const DAY = 24 * HOUR;

export interface LogLine {
  level: string;
  msg: string;
  [k: string]: unknown;
}

export function captureLogger(level = 'debug'): { logger: Logger; lines: LogLine[] } {
  const lines: LogLine[] = [];
  const stream = new Writable({
    write(chunk, _enc, cb) {
      for (const l of String(chunk).split('\n')) if (l.trim()) lines.push(JSON.parse(l) as LogLine);
      cb();
    },
  });
  const logger = pino({ level, base: undefined, formatters: { level: (label) => ({ level: label }) } }, stream);
  return { logger, lines };
}

/**
 * The fake clock as the source and pipeline see it, counting the sleeps in progress: the source
 * sleeps only when it has nothing to do until some time (next poll, budget, backoff), which is
 * exactly when a test may move time. Timers (the pipeline's sweep) are not sleeps.
 */
export class TrackingClock implements Clock {
  sleeping = 0;
  constructor(readonly fake: FakeClock) {}
  now(): number {
    return this.fake.now();
  }
  setTimer(ms: number, fn: () => void): () => void {
    return this.fake.setTimer(ms, fn);
  }
  async sleep(ms: number, signal?: AbortSignal): Promise<void> {
    this.sleeping++;
    try {
      await this.fake.sleep(ms, signal);
    } finally {
      this.sleeping--;
    }
  }
}

export class MemoryRequestLog implements RequestLog {
  readonly pools = new Map<string, number[]>();
  async record(pool: string, at: number): Promise<void> {
    const l = this.pools.get(pool) ?? [];
    l.push(at);
    l.sort((a, b) => a - b);
    this.pools.set(pool, l);
  }
  async list(pool: string, since: number): Promise<number[]> {
    return (this.pools.get(pool) ?? []).filter((t) => t >= since);
  }
  async prune(pool: string, before: number): Promise<void> {
    this.pools.set(pool, (this.pools.get(pool) ?? []).filter((t) => t >= before));
  }
}

export interface Delivered {
  service: string;
  message: string;
  time: { sec: number; nsec: number };
  key?: string;
  pullingId: number;
}

/** The pipeline's contract, in memory: what is committed survives restarts. */
export class DirectState {
  readonly cursors = new Map<string, TapCursor>();
  readonly keys = new Map<string, Set<string>>();
  readonly delivered: Delivered[] = [];
  readonly requestLog = new MemoryRequestLog();
  readonly health = new Map<string, { status: ServiceStatus; reason?: string }>();
  /** Every health change, in order (the map above keeps only the latest per service). */
  readonly healthLog: Array<{ service: string; status: ServiceStatus; reason?: string }> = [];
  /** What the source dead-lettered, in order. */
  readonly rejectedInputs: Array<{ service: string; reason: string; raw: string }> = [];
  readonly metrics = new SourceMetricsStore();
  batches = 0;
  commits = 0;
  emptyBatches = 0;
  rejected = 0;

  consume(b: Batch<TapCursor>): void {
    this.batches++;
    const seen = this.keys.get(b.service) ?? new Set<string>();
    this.keys.set(b.service, seen);
    let sent = 0;
    for (const e of b.events) {
      if (e.key !== undefined && seen.has(e.key)) continue;
      if (e.key !== undefined) seen.add(e.key);
      this.delivered.push({ service: b.service, message: e.message, time: e.time, key: e.key, pullingId: b.pullingId });
      sent++;
    }
    if (b.events.length === 0) this.emptyBatches++;
    this.rejected += b.rejected?.length ?? 0;
    for (const r of b.rejected ?? []) this.rejectedInputs.push({ service: b.service, reason: r.reason, raw: r.raw });
    if (b.cursor !== undefined) this.cursors.set(b.service, b.cursor);
    this.commits++;
    b.onCommitted?.({ received: b.events.length, duplicates: b.events.length - sent, sent, deadLettered: b.rejected?.length ?? 0 });
  }

  messages(service: string): string[] {
    return this.delivered.filter((d) => d.service === service).map((d) => d.message);
  }
}

export interface HarnessOptions {
  scenario?: TapScenarioOptions;
  /** Config of the input; credentials and URL default to the simulator's. */
  config?: Partial<TapInputConfigInput>;
  start?: number;
  /** Committed cursors before the first run (the "stored cursor in" of a table test). */
  cursors?: Partial<Record<TapServiceName, TapCursor>>;
  /**
   * `pipeline` (default): the real Pipeline, StateStore (LevelDB in a temp dir) and MemorySink; a
   * restart stops the pipeline, closes the store and opens it again. `direct`: DirectState above,
   * for tests that look at batches themselves.
   */
  mode?: 'pipeline' | 'direct';
}

/** What a test reads back, whichever runner is behind it. */
interface Runner {
  start(source: Source, ctxFor: (signal: AbortSignal, base: SourceContext | undefined) => SourceContext): Promise<void>;
  stop(): Promise<void>;
  cursor(service: string): TapCursor | undefined;
  messages(service: string): string[];
  progress(): string;
  health(service: string): { status: ServiceStatus; reason?: string } | undefined;
  /** The source's failure, once it failed. */
  failure(): unknown;
}

/** A SourceContext over DirectState (what the pipeline would hand a source). */
export function directContext(state: DirectState, clock: Clock, logger: Logger, signal: AbortSignal): SourceContext {
  return {
    clock,
    logger,
    userAgent: 'proofpoint-sidecar/test',
    signal,
    cursor: async <C>(service: string) => state.cursors.get(service) as C | undefined,
    uncleanShutdown: false,
    resetServices: new Set(),
    requestLog: state.requestLog,
    health: {
      set: (service, status, reason) => {
        state.health.set(service, { status, reason });
        state.healthLog.push({ service, status, reason });
      },
    },
    metrics: state.metrics.forInput('tap-test'),
  };
}

class DirectRunner implements Runner {
  readonly state = new DirectState();
  #abort?: AbortController;
  #running?: Promise<void>;
  #error: unknown;
  constructor(readonly clock: Clock, readonly logger: Logger) {}

  async start(source: Source, ctxFor: (signal: AbortSignal, base: SourceContext | undefined) => SourceContext): Promise<void> {
    this.#error = undefined;
    const abort = (this.#abort = new AbortController());
    const state = this.state;
    const ctx = ctxFor(abort.signal, directContext(state, this.clock, this.logger, abort.signal));
    this.#running = (async () => {
      try {
        for await (const b of source.run(ctx)) state.consume(b as Batch<TapCursor>);
      } catch (err) {
        this.#error = err;
      }
    })();
  }
  async stop(): Promise<void> {
    this.#abort?.abort(new Error('test stop'));
    await this.#running;
    this.#running = undefined;
  }
  cursor(service: string) {
    return this.state.cursors.get(service);
  }
  messages(service: string) {
    return this.state.messages(service);
  }
  progress() {
    return `${this.state.batches}`;
  }
  health(service: string) {
    return this.state.health.get(service);
  }
  failure() {
    return this.#error;
  }
}

class PipelineRunner implements Runner {
  readonly dir = tmpDir('tap-e2e-');
  readonly records: ReceivedRecord[] = [];
  store?: StateStore;
  pipeline?: Pipeline;
  sink?: MemorySink;
  #source?: Source;
  #lastHealth = new Map<string, { status: ServiceStatus; reason?: string }>();
  constructor(readonly clock: Clock, readonly logger: Logger) {}

  async start(source: Source): Promise<void> {
    this.store = await StateStore.open(this.dir, { clock: this.clock, logger: this.logger });
    this.sink = new MemorySink();
    this.#source = source;
    this.pipeline = new Pipeline({ store: this.store, sink: this.sink, sources: [source], clock: this.clock, logger: this.logger });
    await this.pipeline.start();
  }
  async stop(): Promise<void> {
    if (!this.pipeline) return;
    await this.pipeline.stop(10_000);
    for (const spec of this.#source?.services ?? []) {
      const h = this.pipeline.health.get(this.#source!.id, spec.name);
      if (h) this.#lastHealth.set(spec.name, { status: h.status, reason: h.reason });
    }
    this.records.push(...this.sink!.records);
    for (const c of this.pipeline.counters()) if (c.cursor !== undefined) this.#storedCursors.set(c.service, c.cursor as TapCursor);
    await this.store!.close();
    this.pipeline = undefined;
    this.sink = undefined;
  }
  cursor(service: string): TapCursor | undefined {
    const c = this.pipeline?.counters().find((x) => x.service === service);
    return (c?.cursor as TapCursor | undefined) ?? this.#storedCursors.get(service);
  }
  readonly #storedCursors = new Map<string, TapCursor>();
  /** Seeds the store before the first start: a start time record, then the cursor. */
  async seed(input: string, cursors: Partial<Record<string, TapCursor>>, startTimes: Record<string, string | undefined>): Promise<void> {
    const store = await StateStore.open(this.dir, { clock: this.clock, logger: this.logger });
    for (const [service, cursor] of Object.entries(cursors)) {
      await store.applyStartTime(input, service, startTimes[service]);
      await store.commit({ input, service, cursor, keys: [], keysTtlMs: DAY });
      this.#storedCursors.set(service, cursor!);
    }
    await store.close();
  }
  /** Cursors as committed in LevelDB (read with the store closed or open). */
  async storedCursor(input: string, service: string): Promise<TapCursor | undefined> {
    if (this.store && !this.store.closed) return (await this.store.getCursor<TapCursor>(input, service))?.cursor;
    const store = await StateStore.open(this.dir, { clock: this.clock, logger: this.logger });
    try {
      return (await store.getCursor<TapCursor>(input, service))?.cursor;
    } finally {
      await store.close();
    }
  }
  messages(service: string): string[] {
    return [...this.records, ...(this.sink?.records ?? [])].filter((r) => r.record['service'] === service).map((r) => r.record['message'] as string);
  }
  progress() {
    const committed = this.pipeline?.counters().reduce((n, c) => n + c.batchesCommitted, 0) ?? 0;
    return `${this.sink?.sends.length ?? 0}|${committed}|${this.pipeline?.pendingBatches() ?? 0}`;
  }
  health(service: string) {
    const h = this.pipeline?.health.get(this.#source!.id, service);
    return h ? { status: h.status, reason: h.reason } : this.#lastHealth.get(service);
  }
  failure() {
    const failed = this.#source?.services.map((s) => this.pipeline?.health.get(this.#source!.id, s.name)).find((h) => h?.status === 'failed');
    return failed?.reason;
  }
}

export class TapHarness {
  readonly clock: FakeClock;
  /** What the source and the pipeline are given. */
  readonly tracking: TrackingClock;
  readonly sim: TapSimulator;
  readonly logs: LogLine[];
  readonly runner: Runner;
  readonly #logger: Logger;
  #cfg: TapInputConfig;
  #running = false;

  private constructor(clock: FakeClock, sim: TapSimulator, cfg: TapInputConfig, mode: 'pipeline' | 'direct') {
    this.clock = clock;
    this.tracking = new TrackingClock(clock);
    this.sim = sim;
    this.#cfg = cfg;
    const { logger, lines } = captureLogger();
    this.#logger = logger;
    this.logs = lines;
    this.runner = mode === 'direct' ? new DirectRunner(this.tracking, logger) : new PipelineRunner(this.tracking, logger);
  }

  static async create(o: HarnessOptions = {}): Promise<TapHarness> {
    const clock = new FakeClock(o.start ?? T0);
    const sim = await startTapSimulator({ clock, ...o.scenario });
    const cfg = tapInputSchema.parse({
      id: 'tap-test',
      credentials: sim.credentials,
      override_url_base: sim.url,
      services: { clicksBlocked: {}, clicksPermitted: {}, messagesBlocked: {}, messagesDelivered: {} },
      ...o.config,
    });
    const h = new TapHarness(clock, sim, cfg, o.mode ?? 'pipeline');
    if (o.cursors) {
      if (h.runner instanceof PipelineRunner) {
        const starts = Object.fromEntries(Object.keys(o.cursors).map((s) => [s, cfg.services[s as TapServiceName]?.start_time_in_utc ?? undefined]));
        await h.runner.seed(cfg.id, o.cursors, starts);
      } else {
        for (const [s, c] of Object.entries(o.cursors)) if (c) (h.runner as DirectRunner).state.cursors.set(s, c);
      }
    }
    return h;
  }

  get config(): TapInputConfig {
    return this.#cfg;
  }

  /** The direct runner's state (mode: 'direct' only). */
  get state(): DirectState {
    if (!(this.runner instanceof DirectRunner)) throw new Error('state is for mode: direct');
    return this.runner.state;
  }

  /** Changes the config for the next start (e.g. a new start_time_in_utc). */
  reconfigure(patch: Partial<TapInputConfigInput>): void {
    this.#cfg = tapInputSchema.parse({ ...this.#cfg, ...patch });
  }

  /** Starts a new source on the same state (first start or restart). */
  async start(): Promise<void> {
    if (this.#running) throw new Error('already running');
    this.#running = true;
    const source = createTapSource(this.#cfg, { clock: this.clock });
    await this.runner.start(source, (_signal, base) => base!);
  }

  async stop(): Promise<void> {
    if (!this.#running) return;
    this.#running = false;
    await this.runner.stop();
  }

  async restart(): Promise<void> {
    await this.stop();
    await this.start();
  }

  cursor(service: TapServiceName): TapCursor | undefined {
    return this.runner.cursor(service);
  }

  messages(service: TapServiceName): string[] {
    return this.runner.messages(service);
  }

  get services(): TapServiceName[] {
    return (Object.keys(this.#cfg.services) as TapServiceName[]).filter((s) => this.#cfg.services[s] !== undefined);
  }

  /** Moves time (only when quiet) until `pred` holds; throws if the source failed first. */
  async runUntil(pred: () => boolean, o: DriveOptions & { allowFailure?: boolean } = {}): Promise<void> {
    await driveUntil(this.tracking, this.sim, () => this.runner.progress(), () => {
      const failure = this.runner.failure();
      if (failure !== undefined && !o.allowFailure) throw failure instanceof Error ? failure : new Error(`source failed: ${String(failure)}`);
      return pred();
    }, o);
  }

  /** Runs until every service's committed cursor has settled up to `at`. */
  async runUntilSettled(at: number, o: { maxVirtualMs?: number; realMs?: number } = {}): Promise<void> {
    await this.runUntil(
      () =>
        this.services.every((s) => {
          const c = this.cursor(s);
          return c !== undefined && Date.parse(c.settled_to) >= at;
        }),
      o,
    );
  }

  warnings(): LogLine[] {
    return this.logs.filter((l) => l.level === 'warn');
  }

  async close(): Promise<void> {
    await this.stop();
    await this.sim.close();
  }
}

export interface DriveOptions {
  /** Virtual time the run may take (default 30 days). */
  maxVirtualMs?: number;
  /** Real time the run may take (default 30 s). */
  realMs?: number;
}

/**
 * Moves the fake clock to its next timer whenever the source sleeps (it has nothing to do until
 * some time) and nothing is in flight at the simulator or changing in `progress()` for a few real
 * turns. Stops when `pred` holds. Time never moves while the source works, so a request is stamped
 * by the simulator with the time the source sent it.
 */
export async function driveUntil(clock: TrackingClock, sim: Pick<TapSimulator, 'requests' | 'pending'>, progress: () => string, pred: () => boolean, o: DriveOptions = {}): Promise<void> {
  const realDeadline = Date.now() + (o.realMs ?? 30_000);
  const virtualDeadline = clock.now() + (o.maxVirtualMs ?? 30 * DAY);
  let last = '';
  let quiet = 0;
  while (!pred()) {
    if (Date.now() > realDeadline) {
      throw new Error(`driveUntil: gave up after ${o.realMs ?? 30_000} ms real time at ${new Date(clock.now()).toISOString()}`);
    }
    await new Promise((r) => setTimeout(r, 1));
    const sig = `${sim.requests.length}|${sim.pending}|${progress()}`;
    if (sig !== last || sim.pending > 0 || clock.sleeping === 0) {
      last = sig;
      quiet = 0;
      continue;
    }
    if (++quiet < 2) continue;
    quiet = 0;
    if (clock.now() > virtualDeadline) throw new Error('driveUntil: virtual time limit reached');
    await clock.fake.tick();
  }
}

/**
 * Compares what was delivered for a service with the simulator's truth over [from, to): every
 * expected event version exactly once, nothing else from that span. Events delivered from outside
 * the span (windows overlap its edges) are ignored.
 */
export function compareWithTruth(h: TapHarness, service: TapServiceName, from: number, to: number, threatStatus?: string[]) {
  const truth = h.sim.truth(service, from, to, { threatStatus });
  const counts = new Map<string, number>();
  for (const m of h.messages(service)) {
    const k = h.sim.logicalKey(service, m);
    counts.set(k, (counts.get(k) ?? 0) + 1);
  }
  const missing = [...truth.keys()].filter((k) => !counts.has(k));
  const duplicated = [...counts].filter(([, n]) => n > 1).map(([k]) => k);
  return { expected: truth.size, missing, duplicated, delivered: h.messages(service).length };
}

/**
 * Every request the simulator received was a valid window: `interval` (never sinceSeconds or
 * sinceTime), format=json, 30 s to 1 h, not older than 7 days, ending in the past, and not refused.
 */
export function invalidRequests(sim: TapSimulator): string[] {
  const bad: string[] = [];
  for (const r of sim.requests) {
    const what = `${r.path}?${new URLSearchParams(Object.entries(r.query).flatMap(([k, vs]) => vs.map((v): [string, string] => [k, v]))).toString()} at ${new Date(r.at).toISOString()}`;
    const q = r.query;
    if (q['interval']?.length !== 1 || q['sinceSeconds'] || q['sinceTime']) bad.push(`not one explicit interval: ${what}`);
    if (q['format']?.[0] !== 'json') bad.push(`not format=json: ${what}`);
    if (r.status === 400 && r.refusal !== undefined) bad.push(`refused (${r.refusal}): ${what}`);
    const w = r.window ?? (q['interval']?.[0] ? parseInterval(q['interval'][0]) : undefined);
    if (!w) bad.push(`no window: ${what}`);
    else {
      if (w.end - w.start < 30_000 || w.end - w.start > HOUR) bad.push(`length ${(w.end - w.start) / 1000} s: ${what}`);
      if (w.start < r.at - 7 * DAY) bad.push(`older than 7 days: ${what}`);
      if (w.end > r.at) bad.push(`ends in the future: ${what}`);
    }
  }
  return bad;
}
