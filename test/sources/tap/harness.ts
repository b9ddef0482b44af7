/**
 * Test harness for the TAP source: a simulator and a source on one fake clock, and a runner that
 * consumes the source's batches the way the pipeline does (sources/source.ts): drop events whose
 * key is committed or in flight, deliver the rest, commit cursor and keys together, then call
 * onCommitted. Its state outlives a restart (new source, same "store"), as LevelDB's does.
 *
 * Time moves only when everything is quiet (no request in flight, nothing delivered or requested
 * for a few real turns): the clock then jumps to the next timer, i.e. to the end of whatever the
 * source is sleeping for. Tests assert behaviour, never timing.
 */
import { Writable } from 'node:stream';
import { pino, type Logger } from 'pino';
import { FakeClock } from '../../helpers/fake-clock.ts';
import type { Batch, RequestLog, ServiceStatus, SourceContext } from '../../../plugin/sources/source.ts';
import { tapInputSchema, type TapInputConfigInput } from '../../../plugin/sources/tap/config.ts';
import { createTapSource, type TapCursor, type TapInputConfig, type TapServiceName } from '../../../plugin/sources/tap/index.ts';
import { startTapSimulator, type TapScenarioOptions, type TapSimulator } from '../../../plugin/simulator/tap/index.ts';

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
  resetServices?: TapServiceName[];
}

export class TapHarness {
  readonly clock: FakeClock;
  readonly sim: TapSimulator;
  readonly state = new DirectState();
  readonly logs: LogLine[];
  readonly #logger: Logger;
  #cfg: TapInputConfig;
  #abort?: AbortController;
  #running?: Promise<void>;
  error: unknown;
  #resetServices: Set<string>;

  private constructor(clock: FakeClock, sim: TapSimulator, cfg: TapInputConfig, o: HarnessOptions) {
    this.clock = clock;
    this.sim = sim;
    this.#cfg = cfg;
    const { logger, lines } = captureLogger();
    this.#logger = logger;
    this.logs = lines;
    for (const [s, c] of Object.entries(o.cursors ?? {})) if (c) this.state.cursors.set(s, c);
    this.#resetServices = new Set(o.resetServices ?? []);
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
    return new TapHarness(clock, sim, cfg, o);
  }

  get config(): TapInputConfig {
    return this.#cfg;
  }

  /** Changes the config for the next start (e.g. a new start_time_in_utc). */
  reconfigure(patch: Partial<TapInputConfigInput>, resetServices: TapServiceName[] = []): void {
    this.#cfg = tapInputSchema.parse({ ...this.#cfg, ...patch });
    this.#resetServices = new Set(resetServices);
    for (const s of resetServices) {
      this.state.cursors.delete(s);
      this.state.keys.delete(s);
    }
  }

  ctx(signal: AbortSignal): SourceContext {
    const state = this.state;
    return {
      clock: this.clock,
      logger: this.#logger,
      signal,
      cursor: async <C>(service: string) => state.cursors.get(service) as C | undefined,
      uncleanShutdown: false,
      resetServices: this.#resetServices,
      requestLog: state.requestLog,
      health: { set: (service, status, reason) => void state.health.set(service, { status, reason }) },
    };
  }

  /** Starts a new source on the same state (first start or restart). */
  start(): void {
    if (this.#running) throw new Error('already running');
    this.error = undefined;
    const abort = new AbortController();
    this.#abort = abort;
    const source = createTapSource(this.#cfg, { clock: this.clock });
    const ctx = this.ctx(abort.signal);
    this.#running = (async () => {
      try {
        for await (const b of source.run(ctx)) this.state.consume(b as Batch<TapCursor>);
      } catch (err) {
        this.error = err;
      }
    })();
  }

  get running(): boolean {
    return this.#running !== undefined;
  }

  async stop(): Promise<void> {
    this.#abort?.abort(new Error('test stop'));
    await this.#running;
    this.#running = undefined;
  }

  /** Moves time (only when quiet) until `pred` holds; throws if the source failed first. */
  async runUntil(pred: () => boolean, o: { maxVirtualMs?: number; realMs?: number; allowError?: boolean } = {}): Promise<void> {
    const realDeadline = Date.now() + (o.realMs ?? 30_000);
    const virtualDeadline = this.clock.now() + (o.maxVirtualMs ?? 30 * DAY);
    let last = '';
    let quiet = 0;
    while (!pred()) {
      if (this.error !== undefined && !o.allowError) throw this.error;
      if (Date.now() > realDeadline) throw new Error(`runUntil: gave up after ${o.realMs ?? 30_000} ms real time at ${new Date(this.clock.now()).toISOString()}`);
      await new Promise((r) => setTimeout(r, 1));
      const sig = `${this.sim.requests.length}|${this.state.batches}|${this.sim.pending}`;
      if (sig !== last || this.sim.pending > 0) {
        last = sig;
        quiet = 0;
        continue;
      }
      if (++quiet < 3) continue;
      quiet = 0;
      if (this.clock.now() > virtualDeadline) throw new Error('runUntil: virtual time limit reached');
      await this.clock.tick();
    }
  }

  /** Runs until every service's committed cursor has settled up to `at`. */
  async runUntilSettled(at: number, o: { maxVirtualMs?: number; realMs?: number } = {}): Promise<void> {
    const names = Object.keys(this.#cfg.services).filter((s) => this.#cfg.services[s as TapServiceName] !== undefined);
    await this.runUntil(() => names.every((s) => {
      const c = this.state.cursors.get(s);
      return c !== undefined && Date.parse(c.settled_to) >= at;
    }), o);
  }

  warnings(): LogLine[] {
    return this.logs.filter((l) => l.level === 'warn');
  }

  async close(): Promise<void> {
    await this.stop();
    await this.sim.close();
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
  for (const m of h.state.messages(service)) {
    const k = h.sim.logicalKey(service, m);
    counts.set(k, (counts.get(k) ?? 0) + 1);
  }
  const missing = [...truth.keys()].filter((k) => !counts.has(k));
  const duplicated = [...counts].filter(([, n]) => n > 1).map(([k]) => k);
  return { expected: truth.size, missing, duplicated, delivered: h.state.messages(service).length };
}
