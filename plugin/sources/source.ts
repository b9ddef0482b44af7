/**
 * The contract between a source and the pipeline.
 *
 * A source reads its vendor feed and yields batches of events, each with the cursor the batch
 * advances to. It never writes cursors or de-dup keys: the pipeline persists a batch's cursor and
 * keys in one atomic LevelDB batch, and only after the output acknowledged every record of that
 * batch and of every batch the same source yielded before it. A source therefore keeps its own
 * in-memory position ahead of the committed one and reads the committed one only at start.
 *
 * Backpressure is the iterator protocol itself: the pipeline asks for the next batch only when the
 * output has room, so a source that awaits `next()` is paused (a poller delays its next request, a
 * stream stops reading its socket). Nothing is dropped to make room.
 *
 * Shutdown: when `ctx.signal` aborts, a source stops reading, yields whatever complete batch it
 * holds, and returns. The pipeline then drains, commits and closes.
 */
import type { Logger } from 'pino';
import type { Clock } from '../util/clock.ts';
import type { EventTime } from '../util/time.ts';

/** An input type id: the key of its section under `inputs` (sources/registry.ts lists them). */
export type InputType = string;

/** One vendor event, ready to become a forward record (pipeline/pipeline.ts encodes it). */
export interface SourceEvent {
  /**
   * Identity for de-duplication, unique within (input, service) for the de-dup window.
   * Undefined: the event is never treated as a duplicate.
   */
  key?: string;
  /** From the event (TAP clickTime/messageTime, POD ts); receipt time when absent. */
  time: EventTime;
  /** The vendor event as one line of compact JSON, as it came. */
  message: string;
}

/** Vendor input that could not be made into an event; it goes to the dead-letter file. */
export interface RejectedInput {
  reason: string;
  /** The input as received (text), whole. */
  raw: string;
}

/** What happened to a batch, reported once its cursor and keys are committed. */
export interface BatchOutcome {
  received: number;
  duplicates: number;
  sent: number;
  deadLettered: number;
}

export interface Batch<C = unknown> {
  /** Service name as in config (`clicksBlocked`, `maillog`, ...). */
  service: string;
  /** Id of the pull cycle or session that produced the batch (record field `pulling_id`). */
  pullingId: number;
  events: SourceEvent[];
  /** The position after this batch; undefined leaves the committed cursor where it is. */
  cursor?: C;
  rejected?: RejectedInput[];
  /** Called after the batch is committed (cursor and keys persisted). Must not throw. */
  onCommitted?: (outcome: BatchOutcome) => void;
}

export interface ServiceSpec {
  /** Service name as in config. */
  name: string;
  /** Fluent tag and `devo_tag` (override_tag_base or the default table name). */
  tag: string;
  /** How long a de-dup key is remembered after its batch is committed. */
  dedupMaxAgeMs: number;
  /**
   * The configured start time, as written. Stored with the state; when it changes, the service's
   * cursor and de-dup keys are reset (as the Devo collectors do) and a warning says so.
   */
  startTime?: string;
}

/** A persisted sliding log of request times, per rate-limit pool; survives restarts. */
export interface RequestLog {
  /** Records one request sent at `at` (ms). */
  record(pool: string, at: number): Promise<void>;
  /** Request times (ms, ascending) at or after `since`. */
  list(pool: string, since: number): Promise<number[]>;
  /** Forgets requests before `before`. */
  prune(pool: string, before: number): Promise<void>;
}

export type ServiceStatus = 'starting' | 'ok' | 'degraded' | 'failed' | 'stopped';

export interface HealthReporter {
  /** `failed` means fatal for that service (e.g. error 100): it stays stopped until restart. */
  set(service: string, status: ServiceStatus, reason?: string): void;
}

export interface SourceContext {
  clock: Clock;
  logger: Logger;
  /** Aborted on shutdown. */
  signal: AbortSignal;
  /** The last committed cursor of a service, or undefined (first start, or reset). */
  cursor<C>(service: string): Promise<C | undefined>;
  /** True when the previous process did not shut down cleanly (crash, kill -9). */
  uncleanShutdown: boolean;
  /** Services whose state was reset at this start because their start time changed. */
  resetServices: ReadonlySet<string>;
  /** This input's persisted request log (rate budgets). */
  requestLog: RequestLog;
  health: HealthReporter;
  metrics: SourceMetrics;
  /** Sent as the User-Agent header of vendor requests and sessions. */
  userAgent: string;
}

export interface Source<C = unknown> {
  readonly type: InputType;
  /** `inputs.<type>.id`: used in state keys, records (`input_id`) and metrics. */
  readonly id: string;
  readonly services: readonly ServiceSpec[];
  /**
   * Runs until the signal aborts (then returns) or a fatal error. Retryable errors are handled
   * inside with backoff and reported through logs and health; only unrecoverable errors throw.
   */
  run(ctx: SourceContext): AsyncIterable<Batch<C>>;
}

/**
 * Source-specific metrics, exported on /metrics with the input's `input_id` label. The names are
 * declared once, with their help text, in telemetry/source-metrics.ts.
 */
export interface SourceMetrics {
  /** Sets a gauge (e.g. TAP requests left in a pool). */
  set(name: string, labels: Record<string, string>, value: number): void;
  /** Adds to a counter (e.g. POD 409 answers). */
  inc(name: string, labels: Record<string, string>, by?: number): void;
}
