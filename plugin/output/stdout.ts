/**
 * The stdout output: one JSON line per record,
 *
 *   {"tag":"mail.proofpoint.pod.maillog","time":"2026-11-23T12:00:00.123456789Z","record":{...}}
 *
 * with the time in RFC 3339 UTC to the nanosecond. A record counts as acknowledged when the
 * stream's write callback fires for it. When the stream says stop (`write()` returns false) no
 * more is written until 'drain'; what waits meanwhile is bounded by `queue_max_bytes` through
 * `waitForCapacity`, as for the forward output.
 */
import type { StdoutOutputConfig } from '../config/schema.ts';
import { ErrorCode, SidecarError } from '../errors.ts';
import type { EventTime } from '../util/time.ts';
import { systemClock, type Clock } from '../util/clock.ts';
import { PendingRecords } from './pending.ts';
import type { OutputRecord, Sink, SinkStats } from './sink.ts';

interface Pending {
  line: Buffer;
  records: number;
  done(err?: Error | null): void;
}

/** RFC 3339 UTC with nine fractional digits. */
export function formatEventTime(t: EventTime): string {
  const base = new Date(t.sec * 1000).toISOString(); // YYYY-MM-DDTHH:MM:SS.000Z
  return `${base.slice(0, 19)}.${String(t.nsec).padStart(9, '0')}Z`;
}

export class StdoutSink implements Sink {
  readonly kind = 'stdout' as const;
  readonly #cfg: StdoutOutputConfig;
  readonly #stream: NodeJS.WritableStream;
  #queue: Pending[] = [];
  #blocked = false;
  readonly #pending: PendingRecords;
  #writesInFlight = 0;
  #writesDone = 0;
  #sends = new Set<(err: unknown) => void>();
  #closing = false;

  constructor(cfg: StdoutOutputConfig, opts: { stream?: NodeJS.WritableStream; clock?: Clock } = {}) {
    this.#cfg = cfg;
    this.#stream = opts.stream ?? process.stdout;
    this.#pending = new PendingRecords(cfg.queue_max_bytes, opts.clock ?? systemClock);
  }

  maxRecordBytes(tag: string): number {
    return Math.max(0, this.#cfg.max_frame_bytes - prefix(tag).length);
  }

  /** The line without its `{"tag":...,` head, which `send` adds: the tag is known only there. */
  encode(rec: OutputRecord): Buffer {
    return Buffer.from(`"time":${JSON.stringify(formatEventTime(rec.time))},"record":${JSON.stringify(rec.record)}}\n`, 'utf8');
  }

  send(tag: string, encoded: Buffer[]): Promise<void> {
    if (this.#closing) return Promise.reject(new SidecarError(ErrorCode.OUTPUT_CLOSED, 'stdout output is closing; records not accepted'));
    const max = this.maxRecordBytes(tag);
    const big = encoded.findIndex((e) => e.length > max);
    if (big >= 0) {
      return Promise.reject(
        new SidecarError(ErrorCode.RECORD_TOO_LARGE, `record ${big} under tag "${tag}" is ${encoded[big]!.length} bytes; at most ${max} fit output.max_frame_bytes`),
      );
    }
    if (encoded.length === 0) return Promise.resolve();
    const head = prefix(tag);
    const parts: Buffer[] = [];
    for (const e of encoded) parts.push(head, e);
    const line = Buffer.concat(parts);
    this.#pending.add(encoded.length, line.length);
    return new Promise<void>((resolve, reject) => {
      const fail = (err: unknown) => {
        this.#sends.delete(fail);
        reject(err);
      };
      this.#sends.add(fail);
      this.#queue.push({
        line,
        records: encoded.length,
        done: (err) => {
          this.#pending.remove(encoded.length, line.length);
          if (err) fail(err);
          else {
            this.#sends.delete(fail);
            resolve();
          }
        },
      });
      this.#flush();
    });
  }

  waitForCapacity(signal?: AbortSignal): Promise<void> {
    if (this.#closing) return Promise.reject(new SidecarError(ErrorCode.OUTPUT_CLOSED, 'stdout output is closing'));
    return this.#pending.waitForCapacity(signal);
  }

  start(): void {}

  async close(timeoutMs: number): Promise<number> {
    this.#closing = true;
    this.#pending.rejectWaiters(new SidecarError(ErrorCode.OUTPUT_CLOSED, 'stdout output closed'));
    await this.#pending.drained(timeoutMs);
    const unacked = this.#pending.records;
    if (unacked > 0) for (const fail of [...this.#sends]) fail(new SidecarError(ErrorCode.FORWARD_CLOSED, `stdout output closed with ${unacked} records not written`));
    return unacked;
  }

  stats(): SinkStats {
    return {
      connected: true,
      pendingRecords: this.#pending.records,
      pendingBytes: this.#pending.bytes,
      chunksInFlight: this.#writesInFlight,
      chunksAcked: this.#writesDone,
      reconnects: 0,
    };
  }

  #flush(): void {
    while (!this.#blocked && this.#queue.length > 0) {
      const p = this.#queue.shift()!;
      this.#writesInFlight++;
      const ok = this.#stream.write(p.line, (err?: Error | null) => {
        this.#writesInFlight--;
        this.#writesDone++;
        p.done(err);
      });
      if (!ok) {
        this.#blocked = true;
        this.#stream.once('drain', () => {
          this.#blocked = false;
          this.#flush();
        });
      }
    }
  }

}

function prefix(tag: string): Buffer {
  return Buffer.from(`{"tag":${JSON.stringify(tag)},`, 'utf8');
}
