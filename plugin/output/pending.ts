/**
 * What an output holds and has not acknowledged yet, and the bound on it (`queue_max_bytes`).
 * Both outputs count through it; the pipeline waits on `waitForCapacity` before sending more, so
 * memory stays under the bound plus one batch however long the output is away; `drained` lets
 * `close()` wait for the last acknowledgements.
 */
import type { Clock } from '../util/clock.ts';

interface Waiter {
  resolve(): void;
  reject(err: unknown): void;
}

export class PendingRecords {
  readonly #maxBytes: number;
  readonly #clock: Clock;
  #records = 0;
  #bytes = 0;
  readonly #capacityWaiters = new Set<Waiter>();
  readonly #drainWaiters = new Set<() => void>();

  constructor(maxBytes: number, clock: Clock) {
    this.#maxBytes = maxBytes;
    this.#clock = clock;
  }

  get records(): number {
    return this.#records;
  }

  get bytes(): number {
    return this.#bytes;
  }

  add(records: number, bytes: number): void {
    this.#records += records;
    this.#bytes += bytes;
  }

  /** Acknowledged (or given up): wakes whoever waits for room or for the drain. */
  remove(records: number, bytes: number): void {
    this.#records -= records;
    this.#bytes -= bytes;
    if (this.#bytes < this.#maxBytes && this.#capacityWaiters.size > 0) {
      const ws = [...this.#capacityWaiters];
      this.#capacityWaiters.clear();
      for (const w of ws) w.resolve();
    }
    if (this.#records === 0) for (const d of [...this.#drainWaiters]) d();
  }

  /** Resolves once the held bytes are below the bound; rejects when `signal` aborts. */
  waitForCapacity(signal?: AbortSignal): Promise<void> {
    if (this.#bytes < this.#maxBytes) return Promise.resolve();
    if (signal?.aborted) return Promise.reject(signal.reason);
    return new Promise<void>((resolve, reject) => {
      const onAbort = () => {
        this.#capacityWaiters.delete(w);
        reject(signal!.reason);
      };
      const w: Waiter = {
        resolve: () => {
          signal?.removeEventListener('abort', onAbort);
          resolve();
        },
        reject: (err) => {
          signal?.removeEventListener('abort', onAbort);
          reject(err);
        },
      };
      this.#capacityWaiters.add(w);
      signal?.addEventListener('abort', onAbort, { once: true });
    });
  }

  /** Rejects everyone waiting for room (the output is closing). */
  rejectWaiters(err: unknown): void {
    for (const w of this.#capacityWaiters) w.reject(err);
    this.#capacityWaiters.clear();
  }

  /** Resolves when nothing is held any more, or after `timeoutMs`, whichever comes first. */
  async drained(timeoutMs: number): Promise<void> {
    if (this.#records === 0) return;
    await new Promise<void>((resolve) => {
      const done = () => {
        cancel();
        this.#drainWaiters.delete(done);
        resolve();
      };
      const cancel = this.#clock.setTimer(timeoutMs, done);
      this.#drainWaiters.add(done);
    });
  }
}
