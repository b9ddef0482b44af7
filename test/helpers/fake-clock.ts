/**
 * A manual clock for tests: time moves only when the test says so, and timers due by then fire
 * in order. `sleep()` and `setTimer()` behave as the system clock's do, so code under test cannot
 * tell the difference.
 */
import type { Clock } from '../../plugin/util/clock.ts';

interface Timer {
  at: number;
  seq: number;
  fn: () => void;
}

export class FakeClock implements Clock {
  #now: number;
  #seq = 0;
  #timers: Timer[] = [];

  constructor(start: number | string = Date.UTC(2026, 10, 23, 12, 0, 0)) {
    this.#now = typeof start === 'string' ? Date.parse(start) : start;
  }

  now(): number {
    return this.#now;
  }

  setTimer(ms: number, fn: () => void): () => void {
    const t: Timer = { at: this.#now + Math.max(0, ms), seq: this.#seq++, fn };
    this.#timers.push(t);
    return () => {
      this.#timers = this.#timers.filter((x) => x !== t);
    };
  }

  sleep(ms: number, signal?: AbortSignal): Promise<void> {
    return new Promise((resolve, reject) => {
      if (signal?.aborted) return reject(signal.reason);
      const cancel = this.setTimer(ms, () => {
        signal?.removeEventListener('abort', onAbort);
        resolve();
      });
      const onAbort = () => {
        cancel();
        reject(signal!.reason);
      };
      signal?.addEventListener('abort', onAbort, { once: true });
    });
  }

  /** Number of timers waiting. */
  get pending(): number {
    return this.#timers.length;
  }

  /** The time of the next timer, if any. */
  get nextAt(): number | undefined {
    return this.#timers.reduce<number | undefined>((m, t) => (m === undefined || t.at < m ? t.at : m), undefined);
  }

  /**
   * Moves time forward by `ms`, firing due timers in order and letting promise callbacks run
   * between them (so a loop that sleeps again inside the window is honoured).
   */
  async advance(ms: number): Promise<void> {
    const end = this.#now + ms;
    for (;;) {
      await flushMicrotasks();
      const due = this.#timers.filter((t) => t.at <= end).sort((a, b) => a.at - b.at || a.seq - b.seq)[0];
      if (!due) break;
      this.#timers = this.#timers.filter((t) => t !== due);
      this.#now = Math.max(this.#now, due.at);
      due.fn();
    }
    this.#now = end;
    await flushMicrotasks();
  }

  /** Jumps to the next timer and fires it; returns false when there is none. */
  async tick(): Promise<boolean> {
    const at = this.nextAt;
    if (at === undefined) return false;
    await this.advance(Math.max(0, at - this.#now));
    return true;
  }
}

/** Lets pending promise callbacks and I/O callbacks already queued run. */
export async function flushMicrotasks(): Promise<void> {
  for (let i = 0; i < 5; i++) await new Promise<void>((r) => setImmediate(r));
}
