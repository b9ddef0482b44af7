/**
 * Where records go: Fluent Bit over the forward protocol (output/forward/sink.ts) or stdout
 * (output/stdout.ts). The pipeline encodes each record once with the sink's own `encode`, sends a
 * batch's encoded records with `send`, and commits the batch's cursor only when `send` resolves,
 * i.e. when every one of those records was acknowledged (forward: `{ack: chunk}` from Fluent Bit;
 * stdout: written).
 */
import type { EventTime } from '../util/time.ts';

export interface OutputRecord {
  time: EventTime;
  record: Record<string, unknown>;
}

export interface SinkStats {
  connected: boolean;
  /** Records and bytes accepted by send() and not yet acknowledged. */
  pendingRecords: number;
  pendingBytes: number;
  chunksInFlight: number;
  chunksAcked: number;
  reconnects: number;
  /** Latency of the last ack (ms), when there was one. */
  lastAckLatencyMs?: number;
}

export interface Sink {
  readonly kind: 'forward' | 'stdout';
  /**
   * The largest encoded record (as returned by `encode`) that can ever be sent under `tag`.
   * A larger one must go to the dead-letter file: resending it would loop forever.
   */
  maxRecordBytes(tag: string): number;
  /** Encodes one record for this sink (forward: one PackedForward entry `[EventTime, record]`). */
  encode(rec: OutputRecord): Buffer;
  /**
   * Queues encoded records under `tag`, in order. Resolves when all of them are acknowledged;
   * retries (reconnect, resend) happen inside. Rejects only when the sink is closed before that.
   */
  send(tag: string, encoded: Buffer[]): Promise<void>;
  /** Resolves once queued-or-in-flight bytes are below the sink's bound (backpressure). */
  waitForCapacity(signal?: AbortSignal): Promise<void>;
  /** Starts connecting; does not wait for the connection. */
  start(): void;
  /**
   * Waits up to `timeoutMs` for everything queued to be acknowledged, then closes. Resolves with
   * the number of records still unacknowledged (0 after a clean drain).
   */
  close(timeoutMs: number): Promise<number>;
  stats(): SinkStats;
}
