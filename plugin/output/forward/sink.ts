/**
 * The forward output: records to Fluent Bit's in_forward as PackedForward chunks, one promise
 * per `send` that resolves when every chunk of that call is acknowledged.
 *
 * Memory is bounded by cooperation: the pipeline waits on `waitForCapacity` before each `send`,
 * so records accepted and not yet acked stay under `queue_max_bytes` plus one batch, however long
 * Fluent Bit is away. A chunk holds its records' buffers until its first write, then one frame
 * (kept for resends) until its ack; at most `max_chunks_in_flight` frames exist at once.
 *
 * Chunking: a `send` is cut into chunks closed at `chunk_bytes` (soft: a chunk takes at least one
 * record) and never larger than `max_frame_bytes` as a whole frame. A record too large to fit a
 * frame alone (`maxRecordBytes`) makes `send` reject before anything of it is queued: the
 * pipeline dead-letters such records before they get here, and the client's frame guard
 * (client.ts `enqueue`) refuses any other caller's.
 */
import type { Logger } from 'pino';
import type { ForwardOutputConfig } from '../../config/schema.ts';
import { ErrorCode, SidecarError } from '../../errors.ts';
import { PendingRecords } from '../pending.ts';
import type { OutputRecord, Sink, SinkStats } from '../sink.ts';
import { silentLogger } from '../../telemetry/logger.ts';
import { systemClock, type Clock } from '../../util/clock.ts';
import { ForwardClient, OutboundChunk, type ForwardEvents } from './client.ts';
import { forwardOptionsFrom } from './options.ts';
import { encodeEntry, maxEntryBytes, newChunkId, packedForwardSize } from './encoder.ts';

export interface ForwardSinkOptions {
  clock?: Clock;
  logger?: Logger;
  /** Jitter source for the reconnect backoff. */
  random?: () => number;
  /** Connection events (connected, retries, handshake errors, acks) for telemetry and tests. */
  events?: ForwardEvents;
}

export class ForwardSink implements Sink {
  readonly kind = 'forward' as const;
  readonly #cfg: ForwardOutputConfig;
  readonly #clock: Clock;
  readonly #log: Logger;
  readonly #client: ForwardClient;
  readonly #maxRecordBytes = new Map<string, number>();
  readonly #pending: PendingRecords;
  /** Rejecters of send() promises still waiting for acks. */
  #sends = new Set<(err: unknown) => void>();
  #closing = false;
  #closed = false;

  constructor(cfg: ForwardOutputConfig, opts: ForwardSinkOptions = {}) {
    this.#cfg = cfg;
    this.#clock = opts.clock ?? systemClock;
    this.#log = opts.logger ?? silentLogger();
    this.#pending = new PendingRecords(cfg.queue_max_bytes, this.#clock);
    this.#client = new ForwardClient(forwardOptionsFrom(cfg), {
      clock: this.#clock,
      logger: this.#log,
      ...(opts.random ? { random: opts.random } : {}),
      ...(opts.events ? { events: opts.events } : {}),
    });
  }

  maxRecordBytes(tag: string): number {
    let max = this.#maxRecordBytes.get(tag);
    if (max === undefined) {
      max = maxEntryBytes(tag, this.#cfg.max_frame_bytes);
      if (this.#maxRecordBytes.size < 1024) this.#maxRecordBytes.set(tag, max);
    }
    return max;
  }

  encode(rec: OutputRecord): Buffer {
    return encodeEntry(rec);
  }

  send(tag: string, encoded: Buffer[]): Promise<void> {
    if (this.#closing) {
      return Promise.reject(new SidecarError(ErrorCode.OUTPUT_CLOSED, 'forward output is closing; records not accepted'));
    }
    if (typeof tag !== 'string' || tag.length === 0) return Promise.reject(new TypeError('send: tag must be a non-empty string'));
    if (encoded.length === 0) return Promise.resolve();

    const parts = this.#split(tag, encoded);
    let settle!: { resolve: () => void; reject: (err: unknown) => void };
    const done = new Promise<void>((resolve, reject) => (settle = { resolve, reject }));
    const { onChunkAcked, fail } = this.#tracker(parts.length, settle);
    const chunks = parts.map(({ entries, bytes }) => new OutboundChunk(tag, newChunkId(), entries, bytes, onChunkAcked(entries.length, bytes)));
    try {
      // All or none: a record too large for any frame is alone in its chunk, which the client refuses.
      this.#client.enqueue(chunks);
    } catch (err) {
      fail(err);
      return done;
    }
    for (const { entries, bytes } of parts) this.#pending.add(entries.length, bytes);
    return done;
  }

  /**
   * Per-chunk ack callbacks for one send, settling it after the last. Kept apart from `send` so
   * the callbacks' scope holds no reference to the entries, which are let go of on ack.
   */
  #tracker(
    chunks: number,
    settle: { resolve: () => void; reject: (err: unknown) => void },
  ): { onChunkAcked: (records: number, bytes: number) => () => void; fail: (err: unknown) => void } {
    let left = chunks;
    const fail = (err: unknown) => {
      this.#sends.delete(fail);
      settle.reject(err);
    };
    this.#sends.add(fail);
    const onChunkAcked = (records: number, bytes: number) => () => {
      this.#pending.remove(records, bytes);
      if (--left === 0) {
        this.#sends.delete(fail);
        settle.resolve();
      }
    };
    return { onChunkAcked, fail };
  }

  waitForCapacity(signal?: AbortSignal): Promise<void> {
    if (this.#closing) return Promise.reject(new SidecarError(ErrorCode.OUTPUT_CLOSED, 'forward output is closing'));
    return this.#pending.waitForCapacity(signal);
  }

  start(): void {
    this.#client.start();
  }

  async close(timeoutMs: number): Promise<number> {
    if (this.#closed) return this.#pending.records;
    this.#closing = true;
    this.#pending.rejectWaiters(new SidecarError(ErrorCode.OUTPUT_CLOSED, 'forward output closed'));
    await this.#pending.drained(timeoutMs);
    this.#closed = true;
    this.#client.close();
    const unacked = this.#pending.records;
    if (unacked > 0) {
      this.#log.warn({ unacked, timeoutMs }, 'Forward output closed with records not acknowledged by Fluent Bit.');
      const err = new SidecarError(ErrorCode.FORWARD_CLOSED, `forward output closed with ${unacked} records not acknowledged`);
      for (const fail of [...this.#sends]) fail(err);
    }
    return unacked;
  }

  stats(): SinkStats {
    const c = this.#client.stats();
    return {
      connected: c.connected,
      pendingRecords: this.#pending.records,
      pendingBytes: this.#pending.bytes,
      chunksInFlight: c.chunksInFlight,
      chunksAcked: c.chunksAcked,
      reconnects: c.reconnects,
      ...(c.lastAckLatencyMs !== undefined ? { lastAckLatencyMs: c.lastAckLatencyMs } : {}),
    };
  }

  /** The last problem an operator has to fix (handshake, TLS), until a connection succeeds. */
  get lastError(): SidecarError | undefined {
    return this.#client.lastError;
  }

  #split(tag: string, encoded: Buffer[]): { entries: Buffer[]; bytes: number }[] {
    const tagBytes = Buffer.byteLength(tag, 'utf8');
    const soft = this.#cfg.chunk_bytes;
    const hard = this.#cfg.max_frame_bytes;
    const out: { entries: Buffer[]; bytes: number }[] = [];
    let entries: Buffer[] = [];
    let bytes = 0;
    for (const e of encoded) {
      const n = entries.length;
      if (n > 0 && (bytes + e.length > soft || packedForwardSize(tagBytes, n + 1, bytes + e.length) > hard)) {
        out.push({ entries, bytes });
        entries = [];
        bytes = 0;
      }
      entries.push(e);
      bytes += e.length;
    }
    out.push({ entries, bytes });
    return out;
  }

}
