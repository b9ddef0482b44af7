/**
 * A PackedForward chunk waiting for its ack. It keeps its entries (views the caller encoded once)
 * and a small envelope, and is written as `head, entries..., tail` in one vectored write, as
 * often as reconnects require; it lets go of everything once acked.
 */
import type net from 'node:net';
import { packedForwardEnvelope, packedForwardSize } from './encoder.ts';

export class OutboundChunk {
  readonly id: string;
  readonly tag: string;
  readonly records: number;
  readonly payloadBytes: number;
  readonly frameBytes: number;
  /** Times written to a connection. */
  writes = 0;
  #onAcked: (() => void) | undefined;
  #entries: readonly Uint8Array[] | undefined;
  #envelope: { head: Buffer; tail: Buffer } | undefined;

  constructor(tag: string, id: string, entries: readonly Uint8Array[], payloadBytes: number, onAcked: () => void) {
    this.tag = tag;
    this.id = id;
    this.records = entries.length;
    this.payloadBytes = payloadBytes;
    this.frameBytes = packedForwardSize(Buffer.byteLength(tag, 'utf8'), entries.length, payloadBytes, Buffer.byteLength(id, 'utf8'));
    this.#entries = entries;
    this.#onAcked = onAcked;
  }

  /** Writes the whole frame to `socket` as one vectored write. */
  writeTo(socket: net.Socket): void {
    const entries = this.#entries;
    if (entries === undefined) throw new Error(`chunk ${this.id} was already acknowledged`);
    this.#envelope ??= packedForwardEnvelope(this.tag, this.records, this.payloadBytes, this.id);
    socket.cork();
    socket.write(this.#envelope.head);
    for (const e of entries) socket.write(e);
    socket.write(this.#envelope.tail);
    socket.uncork();
    this.writes++;
  }

  acked(): void {
    const onAcked = this.#onAcked;
    this.#entries = undefined;
    this.#envelope = undefined;
    this.#onAcked = undefined;
    onAcked?.();
  }
}
