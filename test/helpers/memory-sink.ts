/**
 * A Sink that keeps what it receives in memory, for pipeline and source tests. It acknowledges at
 * once, or holds acks until the test releases them (in any order), and bounds its queue like the
 * real sinks do so backpressure can be observed.
 */
import type { OutputRecord, Sink, SinkStats } from '../../plugin/output/sink.ts';
import type { EventTime } from '../../plugin/util/time.ts';

export interface ReceivedRecord {
  tag: string;
  time: EventTime;
  record: Record<string, unknown>;
}

interface HeldSend {
  id: number;
  tag: string;
  records: ReceivedRecord[];
  bytes: number;
  resolve: () => void;
  reject: (e: Error) => void;
}

export interface MemorySinkOptions {
  holdAcks?: boolean;
  queueMaxBytes?: number;
  maxRecordBytes?: number;
}

export class MemorySink implements Sink {
  readonly kind = 'stdout' as const;
  /** Acknowledged records, in ack order. */
  readonly records: ReceivedRecord[] = [];
  /** Every send() call, acked or not, in call order. */
  readonly sends: Array<{ id: number; tag: string; count: number }> = [];
  holdAcks: boolean;
  readonly #queueMaxBytes: number;
  readonly #maxRecordBytes: number;
  #held: HeldSend[] = [];
  #seq = 0;
  #pendingBytes = 0;
  #capacityWaiters: Array<() => void> = [];
  #closed = false;
  #acked = 0;

  constructor(opts: MemorySinkOptions = {}) {
    this.holdAcks = opts.holdAcks ?? false;
    this.#queueMaxBytes = opts.queueMaxBytes ?? 64 * 1024 * 1024;
    this.#maxRecordBytes = opts.maxRecordBytes ?? 4_000_000;
  }

  maxRecordBytes(): number {
    return this.#maxRecordBytes;
  }

  encode(rec: OutputRecord): Buffer {
    return Buffer.from(JSON.stringify(rec));
  }

  send(tag: string, encoded: Buffer[]): Promise<void> {
    if (this.#closed) return Promise.reject(new Error('sink closed'));
    const id = ++this.#seq;
    const records = encoded.map((b) => ({ tag, ...(JSON.parse(b.toString()) as OutputRecord) }));
    const bytes = encoded.reduce((n, b) => n + b.length, 0);
    this.sends.push({ id, tag, count: records.length });
    return new Promise<void>((resolve, reject) => {
      const held: HeldSend = { id, tag, records, bytes, resolve, reject };
      this.#pendingBytes += bytes;
      if (this.holdAcks) this.#held.push(held);
      else queueMicrotask(() => this.#ack(held));
    });
  }

  #ack(h: HeldSend): void {
    this.records.push(...h.records);
    this.#pendingBytes -= h.bytes;
    this.#acked++;
    h.resolve();
    if (this.#pendingBytes < this.#queueMaxBytes) for (const w of this.#capacityWaiters.splice(0)) w();
  }

  /** Sends whose acks are held, oldest first. */
  get held(): ReadonlyArray<{ id: number; tag: string; count: number }> {
    return this.#held.map((h) => ({ id: h.id, tag: h.tag, count: h.records.length }));
  }

  /** Acknowledges held sends: all, or those with the given ids (in the order given). */
  release(ids?: number[]): void {
    const chosen = ids ? ids.map((id) => this.#held.find((h) => h.id === id)).filter((h): h is HeldSend => !!h) : [...this.#held];
    this.#held = this.#held.filter((h) => !chosen.includes(h));
    for (const h of chosen) this.#ack(h);
  }

  get pendingBytes(): number {
    return this.#pendingBytes;
  }

  async waitForCapacity(signal?: AbortSignal): Promise<void> {
    if (this.#pendingBytes < this.#queueMaxBytes) return;
    await new Promise<void>((resolve, reject) => {
      this.#capacityWaiters.push(resolve);
      signal?.addEventListener('abort', () => reject(signal.reason), { once: true });
    });
  }

  start(): void {}

  async close(timeoutMs: number): Promise<number> {
    const deadline = Date.now() + timeoutMs;
    while (this.#held.length > 0 && Date.now() < deadline) await new Promise((r) => setTimeout(r, 5));
    this.#closed = true;
    const unacked = this.#held.reduce((n, h) => n + h.records.length, 0);
    for (const h of this.#held.splice(0)) h.reject(new Error('sink closed'));
    return unacked;
  }

  stats(): SinkStats {
    return {
      connected: !this.#closed,
      pendingRecords: this.#held.reduce((n, h) => n + h.records.length, 0),
      pendingBytes: this.#pendingBytes,
      chunksInFlight: this.#held.length,
      chunksAcked: this.#acked,
      reconnects: 0,
    };
  }
}
