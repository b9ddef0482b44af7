/**
 * Sources -> de-dup -> sink -> ordered commit (design.md §4).
 *
 * The contract, as Beats' input-cursor states it: cursor updates are written to the persistent
 * store only after the events have been acknowledged by the output. Here:
 *
 * - One loop per source pulls batches with the iterator protocol, and only when the sink has room
 *   (`waitForCapacity`): a full queue pauses the source, nothing is dropped.
 * - A record whose de-dup key is committed (in the LevelDB window) or in flight (in a batch sent
 *   and not yet committed) is dropped and counted; so is a repeat inside one batch.
 * - Records too large for any frame, and input the source rejected, go to the dead-letter file
 *   before their batch may commit.
 * - A batch's cursor and keys are committed in one LevelDB batch when the sink acknowledged all its
 *   records AND every earlier batch of the same source is committed: an ack that arrives out of
 *   order never moves the cursor past an unacknowledged batch.
 */
import type { Logger } from 'pino';
import type { Sink } from '../output/sink.ts';
import type { Batch, BatchOutcome, RequestLog, Source, SourceContext, ServiceSpec } from '../sources/source.ts';
import { scopeOf, type StateStore } from '../state/store.ts';
import { systemClock, type Clock } from '../util/clock.ts';
import { clampEventTime } from '../util/time.ts';
import { silentLogger } from '../telemetry/logger.ts';
import { HealthRegistry } from '../telemetry/health.ts';
import { SourceMetricsStore } from '../telemetry/source-metrics.ts';
import { DeadLetterFile, type DeadLetterEntry } from './dead-letter.ts';
import { USER_AGENT } from '../util/user-agent.ts';
import { fingerprint } from '../coordination/carried-state.ts';
import { stateError } from '../state/faults.ts';
import { levelFault } from '../state/level.ts';

/** Retries of a failed commit wait 1 s, doubling to at most 30 s. */
export const COMMIT_RETRY_MIN_MS = 1_000;
export const COMMIT_RETRY_MAX_MS = 30_000;

/** A source whose oldest acknowledged batch cannot be committed (the state refuses writes). */
interface CommitFault {
  /** The state error (STATE_IO, STATE_CORRUPT) naming LevelDB's cause. */
  error: Error & { code?: unknown };
  cause: string;
  since: number;
  attempts: number;
  cancelRetry?: () => void;
}

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

interface Pending {
  batch: Batch;
  spec: ServiceSpec;
  keys: string[];
  acked: boolean;
  failed: boolean;
  outcome: BatchOutcome;
}

interface SourceRun {
  source: Source;
  specs: Map<string, ServiceSpec>;
  pending: Pending[];
  /** Keys of records sent and not yet committed, per service. */
  inFlight: Map<string, Set<string>>;
  /** Serialises commits of this source. */
  committing: Promise<void>;
  /** Called (and cleared) whenever a batch of this source commits. */
  waiters: Array<() => void>;
  failed?: Error;
  /** Set while commits fail: pulling pauses until one succeeds (retried on a timer). */
  commitFault?: CommitFault;
  done: boolean;
  /** Aborted when the pipeline stops or this source alone is stopped (feed released or lost). */
  abort: AbortController;
  inherited?: ReadonlyMap<string, ReadonlySet<string>>;
  loop: Promise<void>;
}

export interface AttachOptions {
  /**
   * Whether the source recovers as after a crash. Default: the state store's flag. A feed taken
   * over from a replica that did not release it is recovered as after a crash of that replica.
   */
  uncleanShutdown?: boolean;
  /**
   * Fingerprints (carried-state.ts `fingerprint`) of keys another replica delivered, per service:
   * events with those keys are dropped as duplicates for the life of this attachment.
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
  readonly #dedupMaxKeys: number;
  readonly #sweepIntervalMs: number;
  readonly #maxPending: number;
  readonly #abort = new AbortController();
  readonly #runs: SourceRun[] = [];
  readonly #counters = new Map<string, ServiceCounters>();
  /** Every (input, service) ever attached, for the de-dup sweep (sources come and go). */
  readonly #specs = new Map<string, { input: string; spec: ServiceSpec }>();
  readonly #userAgent: string;
  readonly health: HealthRegistry;
  /** What sources count themselves (TAP requests per pool, POD reconnects and 409s). */
  readonly sourceMetrics = new SourceMetricsStore();
  #cancelSweep?: () => void;
  #sweeping?: Promise<void>;
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
    this.#dedupMaxKeys = opts.dedupMaxKeys ?? 2_000_000;
    this.#sweepIntervalMs = opts.sweepIntervalMs ?? 300_000;
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
    this.#scheduleSweep();
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
        await this.#allCommitted([run]);
        await run.committing;
        for (const spec of source.services) {
          if (this.health.get(source.id, spec.name)?.status !== 'failed') this.health.set(source.id, spec.name, 'stopped', reason);
        }
        const i = this.#runs.indexOf(run);
        if (i >= 0 && run.pending.length === 0) this.#runs.splice(i, 1);
      },
    };
  }

  async #attach(source: Source, opts: AttachOptions): Promise<SourceRun> {
    const reset = new Set<string>();
    const specs = new Map<string, ServiceSpec>();
    for (const spec of source.services) {
      specs.set(spec.name, spec);
      this.#specs.set(scopeOf(source.id, spec.name), { input: source.id, spec });
      if (await this.#store.applyStartTime(source.id, spec.name, spec.startTime)) reset.add(spec.name);
      await this.#store.seen.load(scopeOf(source.id, spec.name));
      const stored = await this.#store.getCursor(source.id, spec.name);
      const scope = scopeOf(source.id, spec.name);
      const c = this.#counters.get(scope);
      if (c) {
        c.cursor = stored?.cursor;
        c.lastCommitAt = stored?.committed_at;
        c.startTime = spec.startTime;
      } else {
        this.#counters.set(scope, {
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
        });
      }
      this.health.set(source.id, spec.name, 'starting');
    }
    const abort = new AbortController();
    const onStop = () => abort.abort(this.#abort.signal.reason);
    this.#abort.signal.addEventListener('abort', onStop, { once: true });
    const run: SourceRun = {
      source,
      specs,
      pending: [],
      inFlight: new Map(),
      committing: Promise.resolve(),
      waiters: [],
      done: false,
      abort,
      loop: Promise.resolve(),
      ...(opts.inheritedKeys && opts.inheritedKeys.size > 0 ? { inherited: opts.inheritedKeys } : {}),
    };
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
    const { source } = run;
    const signal = run.abort.signal;
    let it: AsyncIterator<Batch> | undefined;
    try {
      it = source.run(ctx)[Symbol.asyncIterator]();
      for (;;) {
        // Backpressure: pull the next batch only when the output has room. After stop, the
        // source is only finishing what it holds, so take it without waiting.
        if (!signal.aborted) {
          await this.#sink.waitForCapacity(signal).catch(() => {});
          while ((run.pending.length >= this.#maxPending || run.commitFault !== undefined) && !signal.aborted) {
            await new Promise<void>((resolve) => {
              run.waiters.push(resolve);
              signal.addEventListener('abort', () => resolve(), { once: true });
            });
          }
        }
        const r = await it.next();
        if (r.done) break;
        await this.#accept(run, r.value);
      }
    } catch (err) {
      run.failed = err as Error;
      // A failed source is stopped whole: its sessions would otherwise go on reading (a PoD
      // WebSocket consumes the live stream) into a loop nobody pulls, and what they read would be
      // gone. Abort first (sessions watch the signal), then close the iterator (its finally
      // blocks close sockets). Nothing it held is acknowledged; `stop()` reports the run unclean,
      // so the next start replays from the committed cursor.
      if (!run.abort.signal.aborted) run.abort.abort(err);
      await it?.return?.().catch((closeErr: Error) => {
        this.#logger.warn({ input_id: source.id, err: closeErr.message }, 'Failed source did not close cleanly.');
      });
      this.#logger.error(
        { input: source.type, input_id: source.id, err: { message: (err as Error).message, code: (err as { code?: unknown }).code } },
        'Source failed and stopped; other inputs go on. It resumes from its last committed cursor at the next start.',
      );
      for (const spec of source.services) {
        if (this.health.get(source.id, spec.name)?.status !== 'failed') this.health.set(source.id, spec.name, 'failed', (err as Error).message);
      }
    } finally {
      run.done = true;
    }
  }

  /** De-duplicates, dead-letters, encodes and sends one batch; its commit follows the ack. */
  async #accept(run: SourceRun, batch: Batch): Promise<void> {
    const { source } = run;
    const spec = run.specs.get(batch.service);
    if (!spec) throw new Error(`Source ${source.id} yielded a batch for unknown service "${batch.service}"`);
    const scope = scopeOf(source.id, batch.service);
    const counters = this.#counters.get(scope)!;
    let inFlight = run.inFlight.get(batch.service);
    if (!inFlight) run.inFlight.set(batch.service, (inFlight = new Set()));

    const events = batch.events;
    const outcome: BatchOutcome = { received: events.length, duplicates: 0, sent: 0, deadLettered: 0 };

    // Keys already delivered: in flight now, or committed. In-flight keys are decided before the
    // store look-up, because a batch that commits during the look-up leaves in-flight for the store
    // after the look-up was made.
    const known = new Set<string>();
    const candidates: string[] = [];
    for (const e of events) {
      if (e.key === undefined) continue;
      if (inFlight.has(e.key)) known.add(e.key);
      else candidates.push(e.key);
    }
    const committed = await this.#store.seen.has(scope, candidates);
    const inherited = run.inherited?.get(batch.service);
    candidates.forEach((k, i) => {
      if (committed[i] || (inherited !== undefined && inherited.size > 0 && inherited.has(fingerprint(k)))) known.add(k);
    });

    const batchKeys = new Set<string>();
    const encoded: Buffer[] = [];
    const dead: DeadLetterEntry[] = [];
    const maxBytes = this.#sink.maxRecordBytes(spec.tag);
    for (const e of events) {
      if (e.key !== undefined) {
        if (known.has(e.key) || batchKeys.has(e.key)) {
          outcome.duplicates++;
          continue;
        }
      }
      const { time, clamped } = clampEventTime(e.time, this.#clock.now());
      const record: Record<string, unknown> = {
        message: e.message,
        devo_tag: spec.tag,
        source: source.type,
        service: batch.service,
        input_id: source.id,
        pulling_id: batch.pullingId,
      };
      if (clamped) record.time_clamped = true;
      let buf: Buffer;
      try {
        buf = this.#sink.encode({ time, record });
      } catch (err) {
        // One event the encoder cannot write never stops its feed: it is kept with the reason.
        dead.push({ input: source.id, service: batch.service, reason: `cannot be encoded: ${(err as Error).message}`, raw: e.message });
        if (e.key !== undefined) batchKeys.add(e.key);
        continue;
      }
      if (buf.length > maxBytes) {
        dead.push({
          input: source.id,
          service: batch.service,
          reason: `record of ${buf.length} bytes is larger than the largest frame allows (${maxBytes} bytes; output.max_frame_bytes)`,
          raw: e.message,
        });
        // Still remembered: a re-read of the same event must not be dead-lettered twice.
        if (e.key !== undefined) batchKeys.add(e.key);
        continue;
      }
      if (e.key !== undefined) batchKeys.add(e.key);
      encoded.push(buf);
    }
    for (const r of batch.rejected ?? []) dead.push({ input: source.id, service: batch.service, reason: r.reason, raw: r.raw });
    outcome.deadLettered = dead.length;
    outcome.sent = encoded.length;
    counters.received += outcome.received;
    counters.duplicates += outcome.duplicates;

    if (dead.length > 0) {
      await this.#deadLetter.write(dead);
      counters.deadLettered += dead.length;
      this.#logger.warn(
        { input_id: source.id, service: batch.service, count: dead.length, file: this.#deadLetter.path, reason: dead[0]!.reason },
        'Input written to the dead-letter file.',
      );
    }

    const keys = [...batchKeys];
    for (const k of keys) inFlight.add(k);
    const pending: Pending = { batch, spec, keys, acked: false, failed: false, outcome };
    run.pending.push(pending);
    if (encoded.length === 0) {
      pending.acked = true;
      this.#commitReady(run);
      return;
    }
    this.#sink.send(spec.tag, encoded).then(
      () => {
        pending.acked = true;
        this.#commitReady(run);
      },
      (err: Error) => {
        // Only when the sink closed before the ack: the batch stays uncommitted and is read again
        // after a restart.
        pending.failed = true;
        this.#logger.debug({ input_id: source.id, service: batch.service, err: err.message }, 'Batch not acknowledged before close.');
      },
    );
  }

  /** Commits the longest acknowledged prefix of a source's pending batches, in order. */
  #commitReady(run: SourceRun): void {
    run.committing = run.committing.then(async () => {
      while (run.pending.length > 0 && run.pending[0]!.acked) {
        const p = run.pending[0]!;
        const { batch, spec, keys } = p;
        try {
          await this.#store.commit({
            input: run.source.id,
            service: batch.service,
            cursor: batch.cursor,
            keys,
            keysTtlMs: spec.dedupMaxAgeMs,
          });
        } catch (err) {
          // The batch stays pending so the cursor never moves past it; pulling pauses and the
          // commit is retried on a timer, so a quiet stream recovers without another ack.
          this.#commitFailed(run, batch.service, err);
          return;
        }
        if (run.commitFault) this.#commitRecovered(run);
        run.pending.shift();
        const inFlight = run.inFlight.get(batch.service);
        for (const k of keys) inFlight?.delete(k);
        const c = this.#counters.get(scopeOf(run.source.id, batch.service))!;
        c.sent += p.outcome.sent;
        c.batchesCommitted++;
        c.lastCommitAt = this.#clock.now();
        if (batch.cursor !== undefined) c.cursor = batch.cursor;
        for (const w of run.waiters.splice(0)) w();
        try {
          batch.onCommitted?.(p.outcome);
        } catch (err) {
          this.#logger.warn({ err: (err as Error).message }, 'onCommitted callback threw.');
        }
      }
    });
  }

  #commitFailed(run: SourceRun, service: string, err: unknown): void {
    const { source } = run;
    const error = stateError(err, this.#store.dir, 'write');
    const cause = levelFault(err).cause;
    const fault: CommitFault = run.commitFault ?? { error, cause, since: this.#clock.now(), attempts: 0 };
    fault.error = error;
    fault.cause = cause;
    fault.attempts++;
    fault.cancelRetry?.();
    fault.cancelRetry = undefined;
    run.commitFault = fault;
    for (const spec of source.services) this.health.setCommitFailing(source.id, spec.name, cause);
    // Stopping, the stop makes the last attempt (#allCommitted).
    const stopping = this.#abort.signal.aborted || this.#store.closed;
    const retryMs = Math.min(COMMIT_RETRY_MIN_MS * 2 ** (fault.attempts - 1), COMMIT_RETRY_MAX_MS);
    const fields = {
      input_id: source.id,
      service,
      code: error.code,
      level_code: levelFault(err).levelCode,
      cause,
      attempt: fault.attempts,
      pending_batches: run.pending.length,
      ...(stopping ? {} : { retry_in_ms: retryMs }),
    };
    const msg = 'Cursor commit failed: pulling from this input is paused until a commit succeeds; the batch is kept and retried.';
    if (fault.attempts === 1) this.#logger.error(fields, msg);
    else this.#logger.warn(fields, msg);
    if (stopping) return;
    fault.cancelRetry = this.#clock.setTimer(retryMs, () => {
      fault.cancelRetry = undefined;
      if (!this.#store.closed && run.commitFault === fault) this.#commitReady(run);
    });
  }

  #commitRecovered(run: SourceRun): void {
    const fault = run.commitFault!;
    fault.cancelRetry?.();
    run.commitFault = undefined;
    for (const spec of run.source.services) this.health.setCommitFailing(run.source.id, spec.name, undefined);
    this.#logger.info(
      { input_id: run.source.id, failed_for_ms: this.#clock.now() - fault.since, attempts: fault.attempts },
      'Cursor commits succeed again; pulling resumes.',
    );
  }

  /** Sources whose commits are failing now, with the cause (for the stop summary). */
  commitFailures(): Array<{ input: string; code: unknown; cause: string; pendingBatches: number }> {
    return this.#runs
      .filter((r) => r.commitFault)
      .map((r) => ({ input: r.source.id, code: r.commitFault!.error.code, cause: r.commitFault!.cause, pendingBatches: r.pending.length }));
  }

  #scheduleSweep(): void {
    this.#cancelSweep = this.#clock.setTimer(this.#sweepIntervalMs, () => {
      this.#sweeping = this.sweep()
        .catch((err) => this.#logger.warn({ err: (err as Error).message }, 'De-dup sweep failed; retried next interval.'))
        .finally(() => {
          this.#sweeping = undefined;
          if (!this.#abort.signal.aborted) this.#scheduleSweep();
        });
    });
  }

  /** Deletes expired de-dup keys and keys beyond the per-service maximum. */
  async sweep(): Promise<void> {
    for (const [scope, { input, spec }] of this.#specs) {
      if (this.#store.closed) return;
      const r = await this.#store.seen.sweep(scope, this.#dedupMaxKeys);
      if (r.expired + r.evicted > 0) {
        this.#logger.debug({ input_id: input, service: spec.name, ...r }, 'De-dup window swept.');
      }
      if (r.evicted > 0) {
        this.#logger.warn(
          { input_id: input, service: spec.name, evicted: r.evicted, max_keys: this.#dedupMaxKeys },
          'De-dup window is full: the oldest keys were forgotten before their age limit (globals.dedup_max_keys).',
        );
      }
    }
  }

  /** Every (input, service)'s counters. */
  counters(): ServiceCounters[] {
    return [...this.#counters.values()].map((c) => ({ ...c }));
  }

  /** Records sent and not yet committed, across sources. */
  pendingBatches(): number {
    return this.#runs.reduce((n, r) => n + r.pending.length, 0);
  }

  /**
   * Stops sources, waits (up to `timeoutMs` in all) for what they still yield to be acknowledged
   * and committed, then closes the sink. Returns whether everything sent was committed and no
   * source failed: if not, the state is closed as unclean so sources recover on the next start
   * (a failed source may have read past what it yielded).
   */
  async stop(timeoutMs: number): Promise<{ clean: boolean; uncommittedBatches: number; failedSources: string[] }> {
    const deadline = Date.now() + timeoutMs;
    const left = () => Math.max(0, deadline - Date.now());
    this.#abort.abort(new Error('stopping'));
    this.#cancelSweep?.();
    await withTimeout(Promise.all(this.#runs.map((r) => r.loop)), left());
    await withTimeout(this.#allCommitted(), left());
    await this.#sink.close(left());
    await Promise.all(this.#runs.map((r) => r.committing));
    await this.#sweeping;
    const uncommitted = this.pendingBatches();
    const sourcesDone = this.#runs.every((r) => r.done);
    const failedSources = this.#runs.filter((r) => r.failed !== undefined).map((r) => r.source.id);
    for (const run of this.#runs) {
      for (const spec of run.source.services) {
        if (this.health.get(run.source.id, spec.name)?.status !== 'failed') this.health.set(run.source.id, spec.name, 'stopped');
      }
    }
    return { clean: uncommitted === 0 && sourcesDone && failedSources.length === 0, uncommittedBatches: uncommitted, failedSources };
  }

  async #allCommitted(runs: SourceRun[] = this.#runs): Promise<void> {
    const attempted = new Set<SourceRun>();
    for (;;) {
      // A source whose commits fail gets one more attempt now; waiting longer would only hold up
      // the stop (its batches are read again after the restart).
      for (const r of runs) {
        const f = r.commitFault;
        if (!f || attempted.has(r)) continue;
        attempted.add(r);
        f.cancelRetry?.();
        f.cancelRetry = undefined;
        this.#commitReady(r);
        await r.committing;
      }
      const waiting = runs.filter((r) => r.pending.length > 0 && !r.pending.every((p) => p.failed) && !(r.commitFault && attempted.has(r)));
      if (waiting.length === 0) return;
      await Promise.race([
        ...waiting.map((r) => new Promise<void>((resolve) => r.waiters.push(resolve))),
        // A batch can also fail (sink closed) without committing: look again now and then.
        new Promise<void>((resolve) => setTimeout(resolve, 50)),
      ]);
    }
  }
}

function withTimeout<T>(p: Promise<T>, ms: number): Promise<T | undefined> {
  return new Promise((resolve, reject) => {
    const t = setTimeout(() => resolve(undefined), ms);
    p.then(
      (v) => {
        clearTimeout(t);
        resolve(v);
      },
      (e) => {
        clearTimeout(t);
        reject(e);
      },
    );
  });
}
