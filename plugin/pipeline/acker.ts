/**
 * Ordered commit for one source. The output acknowledges batches in any order; their state (the
 * cursor and de-dup keys) is committed strictly in the order the batches were sent: a batch
 * commits when it is acknowledged AND every earlier batch of the source has committed, so an ack
 * that arrives out of order never moves the cursor past an unacknowledged batch. Commits run one
 * at a time.
 *
 * A commit that fails (the state refuses writes) keeps its batch at the head, records a fault and
 * retries on the injected clock, backing off from COMMIT_RETRY_MIN_MS to COMMIT_RETRY_MAX_MS, so
 * a quiet stream recovers without another ack. Nothing behind the head commits meanwhile.
 */
import type { Clock } from '../util/clock.ts';

/** Retries of a failed commit wait 1 s, doubling to at most 30 s. */
export const COMMIT_RETRY_MIN_MS = 1_000;
export const COMMIT_RETRY_MAX_MS = 30_000;

/** A source whose oldest acknowledged batch cannot be committed. */
export interface CommitFault {
  /** The state error (STATE_IO, STATE_CORRUPT) naming LevelDB's cause. */
  error: Error & { code?: unknown };
  cause: string;
  since: number;
  attempts: number;
  cancelRetry?: () => void;
}

export interface AckerOptions<T> {
  clock: Clock;
  /** Writes one batch's state; rejects when the state refuses it. */
  commit(item: T): Promise<void>;
  /** After `item` committed (and left the queue). */
  committed(item: T): void;
  /** The state error and LevelDB's cause for a failed commit. */
  describe(err: unknown): { error: CommitFault['error']; cause: string };
  /** After each failed attempt, before any retry is scheduled. */
  failing(attempt: FailedAttempt<T>): void;
  /** After the first commit that succeeds while a fault was recorded. */
  recovered(fault: CommitFault): void;
  /** True while stopping: the stop makes the last attempt, no retry is scheduled. */
  stopping(): boolean;
  /** False once the state is closed: a retry due then does nothing. */
  canCommit(): boolean;
}

export interface FailedAttempt<T> {
  fault: CommitFault;
  /** What the commit threw. */
  err: unknown;
  /** Undefined when no retry is scheduled (stopping). */
  retryInMs: number | undefined;
  /** The batch whose commit failed (the head of the queue). */
  head: T;
  /** Batches queued, the head included. */
  pending: number;
}

interface Entry<T> {
  item: T;
  acked: boolean;
  failed: boolean;
}

export class OrderedAcker<T> {
  readonly #o: AckerOptions<T>;
  readonly #queue: Entry<T>[] = [];
  /** Serialises commits. */
  #committing: Promise<void> = Promise.resolve();
  /** Resolved (and cleared) whenever the queue or the fault changes. */
  #waiters: Array<() => void> = [];
  #fault?: CommitFault;

  constructor(opts: AckerOptions<T>) {
    this.#o = opts;
  }

  /** Batches sent (or queued to commit) and not yet committed. */
  get size(): number {
    return this.#queue.length;
  }

  /** Set while commits fail; cleared by the next commit that succeeds. */
  get fault(): CommitFault | undefined {
    return this.#fault;
  }

  /** Settles when the commit running now (if any) and those it chained have finished. */
  get settled(): Promise<void> {
    return this.#committing;
  }

  /** True when every queued batch failed (its send was refused by a closed output). */
  get allFailed(): boolean {
    return this.#queue.every((e) => e.failed);
  }

  /** Queues a batch behind every earlier one; returns its entry's ack and failure signals. */
  push(item: T): { ack(): void; fail(): void } {
    const entry: Entry<T> = { item, acked: false, failed: false };
    this.#queue.push(entry);
    return {
      ack: () => {
        entry.acked = true;
        this.commitReady();
      },
      fail: () => {
        // The batch stays queued and uncommitted: it is read again after a restart.
        entry.failed = true;
        this.#notify();
      },
    };
  }

  /** Resolves at the next change of the queue or of the fault. */
  changed(signal?: AbortSignal): Promise<void> {
    return new Promise<void>((resolve) => {
      this.#waiters.push(resolve);
      signal?.addEventListener('abort', () => resolve(), { once: true });
    });
  }

  /** Commits the longest acknowledged prefix of the queue, in order. */
  commitReady(): void {
    this.#committing = this.#committing.then(async () => {
      while (this.#queue.length > 0 && this.#queue[0]!.acked) {
        const head = this.#queue[0]!;
        try {
          await this.#o.commit(head.item);
        } catch (err) {
          this.#failed(err, head.item);
          return;
        }
        if (this.#fault) this.#recovered();
        this.#queue.shift();
        this.#o.committed(head.item);
        this.#notify();
      }
    });
  }

  /** One attempt now, in place of the scheduled retry (a stop does this once). */
  async retryNow(): Promise<void> {
    if (!this.#fault) return;
    this.#fault.cancelRetry?.();
    this.#fault.cancelRetry = undefined;
    this.commitReady();
    await this.#committing;
  }

  #failed(err: unknown, head: T): void {
    const { error, cause } = this.#o.describe(err);
    const fault: CommitFault = this.#fault ?? { error, cause, since: this.#o.clock.now(), attempts: 0 };
    fault.error = error;
    fault.cause = cause;
    fault.attempts++;
    fault.cancelRetry?.();
    fault.cancelRetry = undefined;
    this.#fault = fault;
    const stopping = this.#o.stopping();
    const retryMs = Math.min(COMMIT_RETRY_MIN_MS * 2 ** (fault.attempts - 1), COMMIT_RETRY_MAX_MS);
    this.#o.failing({ fault, err, retryInMs: stopping ? undefined : retryMs, head, pending: this.#queue.length });
    this.#notify();
    if (stopping) return;
    fault.cancelRetry = this.#o.clock.setTimer(retryMs, () => {
      fault.cancelRetry = undefined;
      if (this.#o.canCommit() && this.#fault === fault) this.commitReady();
    });
  }

  #recovered(): void {
    const fault = this.#fault!;
    fault.cancelRetry?.();
    this.#fault = undefined;
    this.#o.recovered(fault);
  }

  #notify(): void {
    for (const w of this.#waiters.splice(0)) w();
  }
}

/**
 * Waits until every batch of `ackers` is committed or cannot be: its send failed (the output
 * closed), or its source's commits fail and had their one last attempt here. Waiting longer for
 * a failing state would only hold up a stop; those batches are read again after the restart.
 */
export async function settleAll<T>(ackers: ReadonlyArray<OrderedAcker<T>>): Promise<void> {
  const attempted = new Set<OrderedAcker<T>>();
  const unattempted = (a: OrderedAcker<T>) => a.fault !== undefined && !attempted.has(a);
  for (;;) {
    for (const a of ackers) {
      if (!unattempted(a)) continue;
      attempted.add(a);
      await a.retryNow();
    }
    // A fault recorded while another attempt ran gets its own attempt before any wait.
    if (ackers.some(unattempted)) continue;
    const waiting = ackers.filter((a) => a.size > 0 && !a.allFailed && !(a.fault && attempted.has(a)));
    if (waiting.length === 0) return;
    await Promise.race(waiting.map((a) => a.changed()));
  }
}
