/**
 * One forward connection to Fluent Bit, kept up for the sink's lifetime.
 *
 * Contract:
 * - Chunks go out in the order they were queued, up to `maxChunksInFlight` unacknowledged at
 *   once; an ack `{ack: <chunk>}` is matched by chunk id, in any order.
 * - A chunk leaves the client only when acknowledged. When the connection drops (Fluent Bit
 *   closes every connection when its input pauses, an oversize or unparsable frame closes it
 *   too), or a chunk is not acked within `ackTimeoutSecs`, the connection is destroyed and,
 *   after a capped, jittered exponential backoff, every unacknowledged chunk is written again in
 *   its original order with the same chunk id. Delivery is at-least-once.
 * - With credentials nothing is written before PONG verifies: Fluent Bit silently drops data
 *   that arrives earlier, acks included.
 * - Nothing is written besides PING and frames: no `nil` heartbeat (Fluent Bit closes on it).
 * - The byte stream from the server is read incrementally; acks split across `data` events or
 *   several in one are both fine.
 * - All timers (connect, ack, backoff) run on the injected Clock.
 *
 * Options come from the configuration through `forwardOptionsFrom` (options.ts).
 */
import type net from 'node:net';
import type { Logger } from 'pino';
import { ErrorCode, SidecarError } from '../../errors.ts';
import { silentLogger } from '../../telemetry/logger.ts';
import { Backoff } from '../../util/backoff.ts';
import { systemClock, type Clock } from '../../util/clock.ts';
import { OutboundChunk } from './chunk.ts';
import { encodePing, HandshakeError, isHelo, newSalt, parseHelo, verifyPong, type Helo } from './handshake.ts';
import { describeTarget, type ForwardConnectionOptions } from './options.ts';
import { MessageReader, ProtocolError, type Value } from './reader.ts';
import { openForwardSocket, socketFailure } from './socket.ts';

export { OutboundChunk } from './chunk.ts';
export { forwardOptionsFrom, type ForwardConnectionOptions } from './options.ts';

/** What the client reports as it goes; telemetry hooks in here. */
export interface ForwardEvents {
  connected?(info: { target: string; reconnect: boolean }): void;
  disconnected?(info: { target: string; error: Error; resend: number }): void;
  retryScheduled?(info: { attempt: number; delayMs: number }): void;
  /** Handshake, TLS and other problems an operator has to fix; the client keeps retrying. */
  error?(err: SidecarError): void;
  acked?(info: { chunk: string; records: number; latencyMs: number }): void;
}

/** What the client is given besides its options: time, logging, jitter, event hooks. */
export interface ForwardClientDeps {
  clock?: Clock;
  logger?: Logger;
  random?: () => number;
  events?: ForwardEvents;
}

type Phase = 'connecting' | 'helo' | 'pong' | 'ready';

interface Connection {
  readonly socket: net.Socket;
  readonly reader: MessageReader;
  phase: Phase;
  helo?: Helo;
  salt?: string;
  error?: Error;
  cancelConnectTimer?: () => void;
}

interface InFlight {
  chunk: OutboundChunk;
  sentAt: number;
  cancelTimer: () => void;
}

export interface ForwardClientStats {
  connected: boolean;
  queuedChunks: number;
  chunksInFlight: number;
  chunksAcked: number;
  reconnects: number;
  lastAckLatencyMs?: number;
}

export class ForwardClient {
  readonly #opts: ForwardConnectionOptions;
  readonly #clock: Clock;
  readonly #log: Logger;
  readonly #events: ForwardEvents;
  readonly #backoff: Backoff;
  readonly #target: string;

  /** Chunks not written on the current connection, oldest first, from index #head. */
  #queue: OutboundChunk[] = [];
  #head = 0;
  /** Written on the current connection and not acked; Map order is write order. */
  #inflight = new Map<string, InFlight>();
  #conn: Connection | undefined;
  #cancelRetry: (() => void) | undefined;
  #started = false;
  #closed = false;
  #everConnected = false;
  #reconnects = 0;
  #chunksAcked = 0;
  #lastAckLatencyMs: number | undefined;
  #lastError: SidecarError | undefined;

  constructor(opts: ForwardConnectionOptions, deps: ForwardClientDeps = {}) {
    this.#opts = opts;
    this.#clock = deps.clock ?? systemClock;
    this.#log = deps.logger ?? silentLogger();
    this.#events = deps.events ?? {};
    this.#backoff = new Backoff({
      minMs: opts.reconnectInitialMs,
      maxMs: Math.max(opts.reconnectInitialMs, opts.reconnectMaxMs),
      ...(deps.random ? { random: deps.random } : {}),
    });
    this.#target = describeTarget(opts);
    if (opts.tls && opts.tls.verify === false) {
      this.#log.warn({ target: this.#target }, 'TLS certificate verification of Fluent Bit is off (output.tls.verify: false).');
    }
  }

  /** Starts connecting; returns at once. */
  start(): void {
    if (this.#started || this.#closed) return;
    this.#started = true;
    this.#connect();
  }

  /**
   * Queues chunks, in order, behind every chunk queued before them: all of them or, when one is
   * refused, none. The frame guard stays here although the pipeline dead-letters every record
   * over the sink's `maxRecordBytes` (and the sink cuts frames within `maxFrameBytes`): the client
   * is also used on its own (`check --online`, plugin/cli/online.ts), and a frame over the limit
   * would make Fluent Bit close the connection and the client resend it forever, blocking every
   * chunk behind it.
   */
  enqueue(chunkOrChunks: OutboundChunk | readonly OutboundChunk[]): void {
    if (this.#closed) throw new SidecarError(ErrorCode.OUTPUT_CLOSED, 'forward client is closed');
    const chunks = Array.isArray(chunkOrChunks) ? chunkOrChunks : [chunkOrChunks as OutboundChunk];
    for (const chunk of chunks) {
      if (chunk.frameBytes > this.#opts.maxFrameBytes) {
        throw new SidecarError(
          ErrorCode.RECORD_TOO_LARGE,
          `a ${chunk.frameBytes}-byte frame (${chunk.records} records) under tag "${chunk.tag}" exceeds output.max_frame_bytes (${this.#opts.maxFrameBytes})`,
        );
      }
    }
    for (const chunk of chunks) this.#queue.push(chunk);
    this.#pump();
  }

  /** Stops for good: drops the connection and timers. Unacked chunks are simply not sent again. */
  close(): void {
    if (this.#closed) return;
    this.#closed = true;
    this.#cancelRetry?.();
    this.#cancelRetry = undefined;
    const conn = this.#conn;
    if (conn) {
      conn.error ??= new SidecarError(ErrorCode.OUTPUT_CLOSED, 'forward client closed');
      this.#detach(conn);
      conn.socket.destroy();
    }
  }

  /** Chunks queued or in flight (not yet acknowledged). */
  get unacked(): number {
    return this.#queue.length - this.#head + this.#inflight.size;
  }

  /** The last problem an operator must fix (handshake, TLS), until a connection succeeds. */
  get lastError(): SidecarError | undefined {
    return this.#lastError;
  }

  stats(): ForwardClientStats {
    return {
      connected: this.#conn?.phase === 'ready',
      queuedChunks: this.#queue.length - this.#head,
      chunksInFlight: this.#inflight.size,
      chunksAcked: this.#chunksAcked,
      reconnects: this.#reconnects,
      ...(this.#lastAckLatencyMs !== undefined ? { lastAckLatencyMs: this.#lastAckLatencyMs } : {}),
    };
  }

  #connect(): void {
    this.#cancelRetry = undefined;
    if (this.#closed) return;
    let socket: net.Socket;
    try {
      socket = openForwardSocket(this.#opts);
    } catch (err) {
      // Unreadable TLS files and the like: report, and try again later (the file may appear).
      this.#reportError(new SidecarError(ErrorCode.FORWARD_CONNECT, `cannot connect to ${this.#target}: ${(err as Error).message}`, { cause: err }));
      this.#scheduleRetry();
      return;
    }
    const conn: Connection = { socket, reader: new MessageReader(), phase: 'connecting' };
    this.#conn = conn;
    socket.setNoDelay(true);
    socket.setKeepAlive(true, 30_000);
    socket.once(this.#opts.tls ? 'secureConnect' : 'connect', () => this.#onOpen(conn));
    socket.on('data', (data: Buffer) => this.#onData(conn, data));
    socket.on('error', (err) => {
      const failure = socketFailure(err, this.#target, conn.phase !== 'connecting');
      if (failure.code === ErrorCode.FORWARD_HANDSHAKE) this.#reportError(failure);
      conn.error ??= failure;
    });
    socket.once('close', () => this.#onClose(conn));
    const secs = this.#opts.connectTimeoutSecs;
    conn.cancelConnectTimer = this.#clock.setTimer(secs * 1000, () => this.#fail(conn, this.#connectTimeout(conn.phase, secs)));
  }

  /** Why the connection did not get ready within `connectTimeoutSecs`, by the step it was at. */
  #connectTimeout(phase: Phase, secs: number): SidecarError {
    if (phase === 'connecting') return new SidecarError(ErrorCode.FORWARD_CONNECT, `could not connect to ${this.#target} within ${secs} s`);
    if (phase === 'helo') return new HandshakeError(`connected to ${this.#target} but no HELO arrived within ${secs} s: is shared_key set on Fluent Bit's forward input?`);
    return new HandshakeError(`no PONG from ${this.#target} within ${secs} s after PING`);
  }

  #onOpen(conn: Connection): void {
    if (conn !== this.#conn) return;
    if (this.#opts.credentials) conn.phase = 'helo';
    else this.#ready(conn);
  }

  #ready(conn: Connection): void {
    conn.cancelConnectTimer?.();
    conn.cancelConnectTimer = undefined;
    conn.phase = 'ready';
    const reconnect = this.#everConnected;
    if (reconnect) this.#reconnects++;
    this.#everConnected = true;
    this.#lastError = undefined;
    if (this.unacked === 0) this.#backoff.reset();
    this.#log.info({ target: this.#target, resend: this.#queue.length - this.#head }, 'Connected to Fluent Bit.');
    this.#events.connected?.({ target: this.#target, reconnect });
    this.#pump();
  }

  #onData(conn: Connection, data: Buffer): void {
    if (conn !== this.#conn) return;
    conn.reader.push(data);
    try {
      for (let msg = conn.reader.next(); msg !== undefined && conn === this.#conn; msg = conn.reader.next()) {
        this.#onMessage(conn, msg);
      }
    } catch (err) {
      this.#fail(conn, err as Error);
    }
  }

  #onMessage(conn: Connection, msg: Value): void {
    const creds = this.#opts.credentials;
    switch (conn.phase) {
      case 'helo':
        conn.helo = parseHelo(msg);
        conn.salt = newSalt();
        conn.socket.write(encodePing(conn.helo, creds!, conn.salt));
        conn.phase = 'pong';
        return;
      case 'pong': {
        const server = verifyPong(msg, conn.helo!, creds!, conn.salt!);
        this.#log.debug({ target: this.#target, server }, 'Shared-key handshake with Fluent Bit done.');
        this.#ready(conn);
        return;
      }
      case 'ready': {
        if (isHelo(msg)) {
          throw new HandshakeError(`${this.#target} sent HELO: its forward input requires a shared key, and output.shared_key is not set`);
        }
        const ack = msg instanceof Map ? msg.get('ack') : undefined;
        if (!Buffer.isBuffer(ack)) throw new ProtocolError(`unexpected message from ${this.#target} (expected {ack: chunk})`);
        this.#onAck(ack.toString('latin1'));
        return;
      }
      case 'connecting':
        throw new ProtocolError(`${this.#target} sent data before the connection was open`);
    }
  }

  #onAck(id: string): void {
    const entry = this.#inflight.get(id);
    if (!entry) {
      this.#log.debug({ chunk: id }, 'Ignored an ack for a chunk not in flight.');
      return;
    }
    entry.cancelTimer();
    this.#inflight.delete(id);
    this.#chunksAcked++;
    const latencyMs = this.#clock.now() - entry.sentAt;
    this.#lastAckLatencyMs = latencyMs;
    // An ack proves the connection works: the next failure starts the backoff over.
    this.#backoff.reset();
    entry.chunk.acked();
    this.#events.acked?.({ chunk: id, records: entry.chunk.records, latencyMs });
    this.#pump();
  }

  #pump(): void {
    const conn = this.#conn;
    if (!conn || conn.phase !== 'ready') return;
    const secs = this.#opts.ackTimeoutSecs;
    while (this.#inflight.size < this.#opts.maxChunksInFlight && this.#head < this.#queue.length) {
      const chunk = this.#queue[this.#head]!;
      this.#queue[this.#head++] = undefined as unknown as OutboundChunk;
      chunk.writeTo(conn.socket);
      const why = () => new SidecarError(ErrorCode.FORWARD_ACK_TIMEOUT, `no ack for chunk ${chunk.id} from ${this.#target} within ${secs} s; reconnecting to resend`);
      const cancelTimer = this.#clock.setTimer(secs * 1000, () => this.#fail(conn, why()));
      this.#inflight.set(chunk.id, { chunk, sentAt: this.#clock.now(), cancelTimer });
    }
    if (this.#head === this.#queue.length) {
      this.#queue = [];
      this.#head = 0;
    } else if (this.#head > 1024 && this.#head * 2 > this.#queue.length) {
      this.#queue = this.#queue.slice(this.#head);
      this.#head = 0;
    }
  }

  #fail(conn: Connection, err: Error): void {
    conn.error ??= err;
    conn.socket.destroy();
  }

  /** Takes the connection out of service: its in-flight chunks go back to the head of the queue. */
  #detach(conn: Connection): number {
    conn.cancelConnectTimer?.();
    conn.cancelConnectTimer = undefined;
    const back: OutboundChunk[] = [];
    for (const f of this.#inflight.values()) {
      f.cancelTimer();
      back.push(f.chunk);
    }
    this.#inflight.clear();
    if (back.length > 0) {
      this.#queue = back.concat(this.#queue.slice(this.#head));
      this.#head = 0;
    }
    if (this.#conn === conn) this.#conn = undefined;
    return back.length;
  }

  #onClose(conn: Connection): void {
    if (conn !== this.#conn) return;
    const phase = conn.phase;
    this.#detach(conn);
    if (this.#closed) return;
    let err = conn.error;
    if (phase === 'pong' && !(err instanceof HandshakeError)) {
      // in_forward refuses a wrong key by closing (FIN or reset) without a PONG.
      err = new HandshakeError(
        `${this.#target} closed the connection after PING without a PONG: output.shared_key does not match the forward input's shared_key`,
        { cause: err },
      );
    }
    err ??= new SidecarError(ErrorCode.FORWARD_PEER_CLOSED, `${this.#target} closed the connection`);
    const resend = this.unacked;
    const fields = { target: this.#target, code: (err as SidecarError).code, err: err.message, unacked: resend };
    if (err instanceof HandshakeError) this.#reportError(err);
    else if (phase === 'connecting') this.#log.warn(fields, 'Cannot connect to Fluent Bit.');
    else this.#log.warn(fields, 'Connection to Fluent Bit lost; unacknowledged chunks will be resent.');
    this.#events.disconnected?.({ target: this.#target, error: err, resend });
    this.#scheduleRetry();
  }

  #scheduleRetry(): void {
    if (this.#closed) return;
    const delayMs = this.#backoff.next();
    const attempt = this.#backoff.attempt;
    this.#log.info({ target: this.#target, attempt, delayMs }, 'Reconnecting to Fluent Bit after backoff.');
    this.#events.retryScheduled?.({ attempt, delayMs });
    this.#cancelRetry = this.#clock.setTimer(delayMs, () => this.#connect());
  }

  #reportError(err: SidecarError): void {
    this.#lastError = err;
    this.#log.error({ target: this.#target, code: err.code, err: err.message }, 'Fluent Bit cannot be written to until this is fixed; retrying.');
    this.#events.error?.(err);
  }
}
