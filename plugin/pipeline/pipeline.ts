/**
 * Sources -> de-dup -> sink -> ordered commit.
 *
 * The contract, as Beats' input-cursor states it: cursor updates are written to the persistent
 * store only after the events have been acknowledged by the output. Here:
 *
 * - One loop per source pulls batches with the iterator protocol, and only when the sink has room
 *   (`waitForCapacity`): a full queue pauses the source, nothing is dropped.
 * - A record whose de-dup key is committed, in flight or inherited, or repeated inside one batch,
 *   is dropped and counted (pipeline/dedupe.ts decides).
 * - Each event becomes a record (pipeline/record.ts); records too large for any frame, and input
 *   the source rejected, go to the dead-letter file before their batch may commit.
 * - A batch's cursor and keys are committed in one LevelDB batch when the sink acknowledged all its
 *   records AND every earlier batch of the same source is committed (pipeline/acker.ts).
 */
import type { Logger } from 'pino';
import type { Sink } from '../output/sink.ts';
import type { Batch, BatchOutcome, RequestLog, Source, SourceContext, ServiceSpec } from '../sources/source.ts';
import { scopeOf, type StateStore } from '../state/store.ts';
import { systemClock, type Clock } from '../util/clock.ts';
import { silentLogger } from '../telemetry/logger.ts';
import { HealthRegistry } from '../telemetry/health.ts';
import { SourceMetricsStore } from '../telemetry/source-metrics.ts';
import { DeadLetterFile, type DeadLetterEntry } from './dead-letter.ts';
import { USER_AGENT } from '../util/user-agent.ts';
import { stateError } from '../state/faults.ts';
import { levelFault } from '../state/level.ts';
import { OrderedAcker, settleAll, type AckerOptions } from './acker.ts';
import { SourceDedupe, WindowSweeper } from './dedupe.ts';
import { buildRecord, encodeWithinFrame, type RecordOrigin } from './record.ts';

export interface PipelineOptions {
  store: StateStore;
  sink: Sink;
  sources: Source[];
  clock?: Clock;
  logger?: Logger;
  health?: HealthRegistry;
  /** Defaults to `<store.dir>/dead-letter.jsonl`. */
  deadLetter?: DeadLetterFile;
  /** Most de-dup keys per service (globals.dedup_max_keys). */
  dedupMaxKeys?: number;
  /** globals.dedup_sweep_interval_secs, in ms. */
  sweepIntervalMs?: number;
  /** Batches sent and not yet committed, per source, at most (bounds empty/duplicate-only batches). */
  maxPendingBatches?: number;
  /** Sent by sources as User-Agent (names the replica to the vendor). */
  userAgent?: string;
}

/** Counters per (input, service), for statistics, /metrics and tests. */
export interface ServiceCounters {
  input: string;
  source: Source['type'];
  service: string;
  tag: string;
  received: number;
  duplicates: number;
  deadLettered: number;
  /** Acknowledged by the output and committed. */
  sent: number;
  batchesCommitted: number;
  /** When the last batch committed (ms). */
  lastCommitAt?: number;
  /** The last committed cursor. */
  cursor?: unknown;
  /** The service's configured start time, as written (ServiceSpec.startTime). */
  startTime?: string;
}

/** A batch sent (or to commit without records) and not yet committed. */
interface Pending {
  batch: Batch;
  spec: ServiceSpec;
  /** Its admitted de-dup keys: in flight until it commits, then in the window. */
  keys: string[];
  outcome: BatchOutcome;
}

interface SourceRun {
  source: Source;
  specs: Map<string, ServiceSpec>;
  dedupe: SourceDedupe;
  /** The source's batches in send order; pulling pauses while its commits fail. */
  acker: OrderedAcker<Pending>;
  failed?: Error;
  done: boolean;
  /** Aborted when the pipeline stops or this source alone is stopped (feed released or lost). */
  abort: AbortController;
  loop: Promise<void>;
}

export interface AttachOptions {
  /**
   * Whether the source recovers as after a crash. Default: the state store's flag. A feed taken
   * over from a replica that did not release it is recovered as after a crash of that replica.
   */
  uncleanShutdown?: boolean;
  /**
   * Fingerprints (pipeline/dedupe.ts `fingerprint`) of keys another replica delivered, per
   * service: events with those keys are dropped as duplicates for the life of this attachment.
   */
  inheritedKeys?: ReadonlyMap<string, ReadonlySet<string>>;
  /** Replaces the input's persisted request log (coordination writes it ahead into the Lease). */
  requestLog?: RequestLog;
}

export interface AttachedSource {
  /** Ends when the source's loop ends. */
  loop: Promise<void>;
  /** Aborts the source (no more pulls), then waits for its batches to commit; health says why. */
  stop(reason?: string): Promise<void>;
}

export class Pipeline {
  readonly #store: StateStore;
  readonly #sink: Sink;
  readonly #sources: Source[];
  readonly #clock: Clock;
  readonly #logger: Logger;
  readonly #deadLetter: DeadLetterFile;
  readonly #sweeper: WindowSweeper;
  readonly #maxPending: number;
  readonly #abort = new AbortController();
  readonly #runs: SourceRun[] = [];
  readonly #counters = new Map<string, ServiceCounters>();
  readonly #userAgent: string;
  readonly health: HealthRegistry;
  /** What sources count themselves (TAP requests per pool, POD reconnects and 409s). */
  readonly sourceMetrics = new SourceMetricsStore();
  #started = false;
  /** Resolves when every source loop has ended (stopped, finished or failed). */
  done: Promise<void> = Promise.resolve();

  constructor(opts: PipelineOptions) {
    this.#store = opts.store;
    this.#sink = opts.sink;
    this.#sources = opts.sources;
    this.#clock = opts.clock ?? systemClock;
    this.#logger = opts.logger ?? silentLogger();
    this.health = opts.health ?? new HealthRegistry(() => this.#clock.now());
    this.#deadLetter = opts.deadLetter ?? new DeadLetterFile(opts.store.dir, () => this.#clock.now());
    this.#sweeper = new WindowSweeper({
      window: opts.store.seen,
      clock: this.#clock,
      logger: this.#logger,
      intervalMs: opts.sweepIntervalMs ?? 300_000,
      maxKeys: opts.dedupMaxKeys ?? 2_000_000,
      closed: () => opts.store.closed,
    });
    this.#maxPending = opts.maxPendingBatches ?? 1_000;
    this.#userAgent = opts.userAgent ?? USER_AGENT;
  }

  get deadLetterPath(): string {
    return this.#deadLetter.path;
  }

  /** Applies configured start times (resetting changed services), then starts every source. */
  async start(): Promise<void> {
    if (this.#started) throw new Error('Pipeline already started');
    this.#started = true;
    this.#sink.start();
    const loops: Promise<void>[] = [];
    for (const source of this.#sources) loops.push((await this.#attach(source, {})).loop);
    this.done = Promise.all(loops).then(() => undefined);
    this.#sweeper.start();
  }

  /**
   * Starts one more source on a running pipeline: coordination does this when this replica
   * acquires a feed's Lease. `stop()` of the handle aborts the source at once (it stops pulling),
   * then waits until every batch it yielded is committed, or the pipeline stops.
   */
  async attach(source: Source, opts: AttachOptions = {}): Promise<AttachedSource> {
    if (!this.#started || this.#abort.signal.aborted) throw new Error('Pipeline is not running');
    const run = await this.#attach(source, opts);
    return {
      loop: run.loop,
      stop: async (reason = 'stopped') => {
        run.abort.abort(new Error(reason));
        await run.loop;
        await settleAll([run.acker]);
        await run.acker.settled;
        this.#markStopped(run, reason);
        const i = this.#runs.indexOf(run);
        if (i >= 0 && run.acker.size === 0) this.#runs.splice(i, 1);
      },
    };
  }

  async #attach(source: Source, opts: AttachOptions): Promise<SourceRun> {
    const reset = new Set<string>();
    const specs = new Map<string, ServiceSpec>();
    for (const spec of source.services) {
      specs.set(spec.name, spec);
      const scope = scopeOf(source.id, spec.name);
      // Every scope ever attached is swept (sources come and go).
      this.#sweeper.add(scope, source.id, spec.name);
      if (await this.#store.applyStartTime(source.id, spec.name, spec.startTime)) reset.add(spec.name);
      await this.#store.seen.load(scope);
      const stored = await this.#store.getCursor(source.id, spec.name);
      const c = this.#counters.get(scope);
      if (c) Object.assign(c, { cursor: stored?.cursor, lastCommitAt: stored?.committed_at, startTime: spec.startTime });
      else this.#counters.set(scope, newCounters(source, spec, stored));
      this.health.set(source.id, spec.name, 'starting');
    }
    const abort = new AbortController();
    const onStop = () => abort.abort(this.#abort.signal.reason);
    this.#abort.signal.addEventListener('abort', onStop, { once: true });
    const dedupe = new SourceDedupe(this.#store.seen, opts.inheritedKeys);
    const acker = new OrderedAcker(this.#commitHooks(source, dedupe));
    const run: SourceRun = { source, specs, dedupe, acker, done: false, abort, loop: Promise.resolve() };
    this.#runs.push(run);
    const ctx: SourceContext = {
      clock: this.#clock,
      logger: this.#logger.child({ source: source.type, input_id: source.id }),
      signal: abort.signal,
      cursor: async <C>(service: string) => (await this.#store.getCursor<C>(source.id, service))?.cursor,
      uncleanShutdown: opts.uncleanShutdown ?? this.#store.uncleanShutdown,
      resetServices: reset,
      requestLog: opts.requestLog ?? this.#store.requests.forInput(source.id),
      health: this.health.reporterFor(source.id),
      metrics: this.sourceMetrics.forInput(source.id),
      userAgent: this.#userAgent,
    };
    run.loop = this.#runSource(run, ctx).finally(() => this.#abort.signal.removeEventListener('abort', onStop));
    return run;
  }

  async #runSource(run: SourceRun, ctx: SourceContext): Promise<void> {
    const signal = run.abort.signal;
    let it: AsyncIterator<Batch> | undefined;
    try {
      it = run.source.run(ctx)[Symbol.asyncIterator]();
      for (;;) {
        // Backpressure: pull the next batch only when the output has room. After stop, the
        // source is only finishing what it holds, so take it without waiting.
        if (!signal.aborted) {
          await this.#sink.waitForCapacity(signal).catch(() => {});
          while ((run.acker.size >= this.#maxPending || run.acker.fault !== undefined) && !signal.aborted) {
            await run.acker.changed(signal);
          }
        }
        const r = await it.next();
        if (r.done) break;
        await this.#accept(run, r.value);
      }
    } catch (err) {
      await this.#sourceFailed(run, it, err as Error);
    } finally {
      run.done = true;
    }
  }

  /**
   * A failed source is stopped whole: its sessions would otherwise go on reading (a PoD WebSocket
   * consumes the live stream) into a loop nobody pulls, and what they read would be gone. Abort
   * first (sessions watch the signal), then close the iterator (its finally blocks close sockets).
   * Nothing it held is acknowledged; `stop()` reports the run unclean, so the next start replays
   * from the committed cursor.
   */
  async #sourceFailed(run: SourceRun, it: AsyncIterator<Batch> | undefined, err: Error): Promise<void> {
    const { source } = run;
    run.failed = err;
    if (!run.abort.signal.aborted) run.abort.abort(err);
    await it?.return?.().catch((closeErr: Error) => {
      this.#logger.warn({ input_id: source.id, err: closeErr.message }, 'Failed source did not close cleanly.');
    });
    this.#logger.error(
      { input: source.type, input_id: source.id, err: { message: err.message, code: (err as { code?: unknown }).code } },
      'Source failed and stopped; other inputs go on. It resumes from its last committed cursor at the next start.',
    );
    for (const spec of source.services) {
      if (this.health.get(source.id, spec.name)?.status !== 'failed') this.health.set(source.id, spec.name, 'failed', err.message);
    }
  }

  /** De-duplicates, dead-letters, encodes and sends one batch; its commit follows the ack. */
  async #accept(run: SourceRun, batch: Batch): Promise<void> {
    const { source } = run;
    const spec = run.specs.get(batch.service);
    if (!spec) throw new Error(`Source ${source.id} yielded a batch for unknown service "${batch.service}"`);
    const scope = scopeOf(source.id, batch.service);
    const counters = this.#counters.get(scope)!;
    const events = batch.events;
    const outcome: BatchOutcome = { received: events.length, duplicates: 0, sent: 0, deadLettered: 0 };
    const admitted = await run.dedupe.decide(scope, batch.service, events.map((e) => e.key));

    const origin: RecordOrigin = { tag: spec.tag, source: source.type, service: batch.service, inputId: source.id, pullingId: batch.pullingId };
    const encoded: Buffer[] = [];
    const dead: DeadLetterEntry[] = [];
    const maxBytes = this.#sink.maxRecordBytes(spec.tag);
    for (const e of events) {
      if (!admitted.admit(e.key)) {
        outcome.duplicates++;
        continue;
      }
      const r = encodeWithinFrame(this.#sink, buildRecord(e, origin, this.#clock.now()), maxBytes);
      // One event the encoder cannot write, or too large, never stops its feed: it is kept with the reason.
      if (r.ok) encoded.push(r.bytes);
      else dead.push({ input: source.id, service: batch.service, reason: r.reason, raw: e.message });
    }
    for (const r of batch.rejected ?? []) dead.push({ input: source.id, service: batch.service, reason: r.reason, raw: r.raw });
    outcome.deadLettered = dead.length;
    outcome.sent = encoded.length;
    counters.received += outcome.received;
    counters.duplicates += outcome.duplicates;
    if (dead.length > 0) await this.#writeDeadLetters(source.id, batch.service, dead, counters);

    const keys = admitted.keys;
    run.dedupe.hold(batch.service, keys);
    const entry = run.acker.push({ batch, spec, keys, outcome });
    if (encoded.length === 0) {
      entry.ack();
      return;
    }
    this.#sink.send(spec.tag, encoded).then(entry.ack, (err: Error) => {
      // Only when the sink closed before the ack: the batch stays uncommitted and is read again
      // after a restart.
      entry.fail();
      this.#logger.debug({ input_id: source.id, service: batch.service, err: err.message }, 'Batch not acknowledged before close.');
    });
  }

  async #writeDeadLetters(input: string, service: string, dead: DeadLetterEntry[], counters: ServiceCounters): Promise<void> {
    await this.#deadLetter.write(dead);
    counters.deadLettered += dead.length;
    this.#logger.warn(
      { input_id: input, service, count: dead.length, file: this.#deadLetter.path, reason: dead[0]!.reason },
      'Input written to the dead-letter file.',
    );
  }

  /** How a source's ordered commits write the state, count, report health and log. */
  #commitHooks(source: Source, dedupe: SourceDedupe): AckerOptions<Pending> {
    return {
      clock: this.#clock,
      commit: ({ batch, spec, keys }) =>
        this.#store.commit({ input: source.id, service: batch.service, cursor: batch.cursor, keys, keysTtlMs: spec.dedupMaxAgeMs }),
      committed: (p) => {
        dedupe.release(p.batch.service, p.keys);
        countCommitted(this.#counters.get(scopeOf(source.id, p.batch.service))!, p, this.#clock.now(), this.#logger);
      },
      describe: (err) => ({ error: stateError(err, this.#store.dir, 'write'), cause: levelFault(err).cause }),
      ...commitReporting(source, this.health, this.#logger, this.#clock),
      // Stopping, the stop makes the last attempt (acker.ts settleAll).
      stopping: () => this.#abort.signal.aborted || this.#store.closed,
      canCommit: () => !this.#store.closed,
    };
  }

  /** Sources whose commits are failing now, with the cause (for the stop summary). */
  commitFailures(): Array<{ input: string; code: unknown; cause: string; pendingBatches: number }> {
    return this.#runs
      .filter((r) => r.acker.fault)
      .map((r) => ({ input: r.source.id, code: r.acker.fault!.error.code, cause: r.acker.fault!.cause, pendingBatches: r.acker.size }));
  }

  /** Deletes expired de-dup keys and keys beyond the per-service maximum. */
  sweep(): Promise<void> {
    return this.#sweeper.sweep();
  }

  /** Every (input, service)'s counters. */
  counters(): ServiceCounters[] {
    return [...this.#counters.values()].map((c) => ({ ...c }));
  }

  /** Records sent and not yet committed, across sources. */
  pendingBatches(): number {
    return this.#runs.reduce((n, r) => n + r.acker.size, 0);
  }

  /**
   * Stops sources, waits (up to `timeoutMs` in all, on the injected clock) for what they still
   * yield to be acknowledged and committed, then closes the sink. Returns whether everything sent
   * was committed and no source failed: if not, the state is closed as unclean so sources recover
   * on the next start (a failed source may have read past what it yielded).
   */
  async stop(timeoutMs: number): Promise<{ clean: boolean; uncommittedBatches: number; failedSources: string[] }> {
    const deadline = this.#clock.now() + timeoutMs;
    const left = () => Math.max(0, deadline - this.#clock.now());
    this.#abort.abort(new Error('stopping'));
    this.#sweeper.stop();
    await withTimeout(Promise.all(this.#runs.map((r) => r.loop)), left(), this.#clock);
    await withTimeout(settleAll(this.#runs.map((r) => r.acker)), left(), this.#clock);
    await this.#sink.close(left());
    await Promise.all(this.#runs.map((r) => r.acker.settled));
    await this.#sweeper.running;
    const uncommitted = this.pendingBatches();
    const sourcesDone = this.#runs.every((r) => r.done);
    const failedSources = this.#runs.filter((r) => r.failed !== undefined).map((r) => r.source.id);
    for (const run of this.#runs) this.#markStopped(run);
    return { clean: uncommitted === 0 && sourcesDone && failedSources.length === 0, uncommittedBatches: uncommitted, failedSources };
  }

  #markStopped(run: SourceRun, reason?: string): void {
    for (const spec of run.source.services) {
      if (this.health.get(run.source.id, spec.name)?.status !== 'failed') this.health.set(run.source.id, spec.name, 'stopped', reason);
    }
  }
}

/** How a source's failing and recovered commits show in health and the log. */
function commitReporting(
  source: Source,
  health: HealthRegistry,
  logger: Logger,
  clock: Clock,
): Pick<AckerOptions<Pending>, 'failing' | 'recovered'> {
  return {
    failing: ({ fault, err, retryInMs, head, pending }) => {
      for (const spec of source.services) health.setCommitFailing(source.id, spec.name, fault.cause);
      const fields = {
        input_id: source.id,
        service: head.batch.service,
        code: fault.error.code,
        level_code: levelFault(err).levelCode,
        cause: fault.cause,
        attempt: fault.attempts,
        pending_batches: pending,
        ...(retryInMs === undefined ? {} : { retry_in_ms: retryInMs }),
      };
      const msg = 'Cursor commit failed: pulling from this input is paused until a commit succeeds; the batch is kept and retried.';
      if (fault.attempts === 1) logger.error(fields, msg);
      else logger.warn(fields, msg);
    },
    recovered: (fault) => {
      for (const spec of source.services) health.setCommitFailing(source.id, spec.name, undefined);
      logger.info(
        { input_id: source.id, failed_for_ms: clock.now() - fault.since, attempts: fault.attempts },
        'Cursor commits succeed again; pulling resumes.',
      );
    },
  };
}

/** Counts a committed batch, then tells its source (`Batch.onCommitted`). */
function countCommitted(c: ServiceCounters, p: Pending, now: number, logger: Logger): void {
  const { batch } = p;
  c.sent += p.outcome.sent;
  c.batchesCommitted++;
  c.lastCommitAt = now;
  if (batch.cursor !== undefined) c.cursor = batch.cursor;
  try {
    batch.onCommitted?.(p.outcome);
  } catch (err) {
    logger.warn({ err: (err as Error).message }, 'A batch commit callback threw; the batch stays committed.');
  }
}

function newCounters(source: Source, spec: ServiceSpec, stored: { cursor: unknown; committed_at: number } | undefined): ServiceCounters {
  return {
    input: source.id,
    source: source.type,
    service: spec.name,
    tag: spec.tag,
    received: 0,
    duplicates: 0,
    deadLettered: 0,
    sent: 0,
    batchesCommitted: 0,
    cursor: stored?.cursor,
    lastCommitAt: stored?.committed_at,
    startTime: spec.startTime,
  };
}

/** `p`, or undefined once `ms` passed on `clock`. */
function withTimeout<T>(p: Promise<T>, ms: number, clock: Clock): Promise<T | undefined> {
  return new Promise((resolve, reject) => {
    const cancel = clock.setTimer(ms, () => resolve(undefined));
    p.then(
      (v) => {
        cancel();
        resolve(v);
      },
      (e) => {
        cancel();
        reject(e);
      },
    );
  });
}
