/**
 * One forward connection to Fluent Bit, kept up for the sink's lifetime.
 *
 * Contract:
 * - Chunks go out in the order they were queued, up to `max_chunks_in_flight` unacknowledged at
 *   once; an ack `{ack: <chunk>}` is matched by chunk id, in any order.
 * - A chunk leaves the client only when acknowledged. When the connection drops (Fluent Bit
 *   closes every connection when its input pauses, an oversize or unparsable frame closes it
 *   too), or a chunk is not acked within `ack_timeout_secs`, the connection is destroyed and,
 *   after a capped, jittered exponential backoff, every unacknowledged chunk is written again in
 *   its original order with the same chunk id. Delivery is at-least-once.
 * - With a shared key nothing is written before PONG verifies: Fluent Bit silently drops data
 *   that arrives earlier, acks included.
 * - Nothing is written besides PING and frames: no `nil` heartbeat (Fluent Bit closes on it).
 * - The byte stream from the server is read incrementally; acks split across `data` events or
 *   several in one are both fine.
 * - All timers (connect, ack, backoff) run on the injected Clock.
 */
import net from 'node:net';
import tls from 'node:tls';
import os from 'node:os';
import { readFileSync } from 'node:fs';
import type { Logger } from 'pino';
import type { ForwardOutputConfig } from '../../config/schema.ts';
import { ErrorCode, SidecarError } from '../../errors.ts';
import { silentLogger } from '../../telemetry/logger.ts';
import { Backoff } from '../../util/backoff.ts';
import { systemClock, type Clock } from '../../util/clock.ts';
import { packedForwardEnvelope, packedForwardSize } from './encoder.ts';
import {
  encodePing,
  HandshakeError,
  isHelo,
  newSalt,
  parseHelo,
  verifyPong,
  type HandshakeCredentials,
  type Helo,
} from './handshake.ts';
import { MessageReader, ProtocolError, type Value } from './reader.ts';

/**
 * A PackedForward chunk waiting for its ack. It keeps its entries (views the caller encoded once)
 * and a small envelope, and is written as `head, entries..., tail` in one vectored write, as
 * often as reconnects require; it lets go of everything once acked.
 */
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

/** What the client reports as it goes; telemetry hooks in here. */
export interface ForwardEvents {
  connected?(info: { target: string; reconnect: boolean }): void;
  disconnected?(info: { target: string; error: Error; resend: number }): void;
  retryScheduled?(info: { attempt: number; delayMs: number }): void;
  /** Handshake, TLS and other problems an operator has to fix; the client keeps retrying. */
  error?(err: SidecarError): void;
  acked?(info: { chunk: string; records: number; latencyMs: number }): void;
}

export interface ForwardClientOptions {
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
  readonly #cfg: ForwardOutputConfig;
  readonly #clock: Clock;
  readonly #log: Logger;
  readonly #events: ForwardEvents;
  readonly #backoff: Backoff;
  readonly #creds: HandshakeCredentials | undefined;
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

  constructor(cfg: ForwardOutputConfig, opts: ForwardClientOptions = {}) {
    this.#cfg = cfg;
    this.#clock = opts.clock ?? systemClock;
    this.#log = opts.logger ?? silentLogger();
    this.#events = opts.events ?? {};
    this.#backoff = new Backoff({
      minMs: cfg.reconnect_initial_ms,
      maxMs: Math.max(cfg.reconnect_initial_ms, cfg.reconnect_max_ms),
      ...(opts.random ? { random: opts.random } : {}),
    });
    this.#creds =
      cfg.shared_key === undefined
        ? undefined
        : {
            sharedKey: cfg.shared_key,
            selfHostname: cfg.self_hostname ?? os.hostname(),
            ...(cfg.username !== undefined ? { username: cfg.username } : {}),
            ...(cfg.password !== undefined ? { password: cfg.password } : {}),
          };
    this.#target = (cfg.unix_path !== undefined ? `unix:${cfg.unix_path}` : `${cfg.host}:${cfg.port}`) + (cfg.tls ? ' (TLS)' : '');
    if (cfg.tls && cfg.tls.verify === false) {
      this.#log.warn({ target: this.#target }, 'forward: TLS certificate verification is off (output.tls.verify: false)');
    }
  }

  /** Starts connecting; returns at once. */
  start(): void {
    if (this.#started || this.#closed) return;
    this.#started = true;
    this.#connect();
  }

  /** Queues a chunk behind every chunk queued before it. */
  enqueue(chunk: OutboundChunk): void {
    if (this.#closed) throw new SidecarError(ErrorCode.FORWARD_CLOSED, 'forward client is closed');
    if (chunk.frameBytes > this.#cfg.max_frame_bytes) {
      // The sink splits by max_frame_bytes; getting here is a bug, and sending would loop forever.
      throw new SidecarError(
        ErrorCode.RECORD_TOO_LARGE,
        `a ${chunk.frameBytes}-byte frame exceeds output.max_frame_bytes (${this.#cfg.max_frame_bytes})`,
      );
    }
    this.#queue.push(chunk);
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
      conn.error ??= new SidecarError(ErrorCode.FORWARD_CLOSED, 'forward client closed');
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
      socket = this.#openSocket();
    } catch (err) {
      // Unreadable TLS files and the like: report, and try again later (the file may appear).
      const e = new SidecarError(ErrorCode.FORWARD_CLOSED, `cannot connect to ${this.#target}: ${(err as Error).message}`, { cause: err });
      this.#reportError(e);
      this.#scheduleRetry();
      return;
    }
    const conn: Connection = { socket, reader: new MessageReader(), phase: 'connecting' };
    this.#conn = conn;
    socket.setNoDelay(true);
    socket.setKeepAlive(true, 30_000);
    socket.once(this.#cfg.tls ? 'secureConnect' : 'connect', () => this.#onOpen(conn));
    socket.on('data', (data: Buffer) => this.#onData(conn, data));
    socket.on('error', (err) => {
      conn.error ??= this.#describeSocketError(err);
    });
    socket.once('close', () => this.#onClose(conn));
    const secs = this.#cfg.connect_timeout_secs;
    conn.cancelConnectTimer = this.#clock.setTimer(secs * 1000, () => {
      const why =
        conn.phase === 'connecting'
          ? new SidecarError(ErrorCode.FORWARD_CLOSED, `could not connect to ${this.#target} within ${secs} s`)
          : conn.phase === 'helo'
            ? new HandshakeError(
                `connected to ${this.#target} but no HELO arrived within ${secs} s: is shared_key set on Fluent Bit's forward input?`,
              )
            : new HandshakeError(`no PONG from ${this.#target} within ${secs} s after PING`);
      this.#fail(conn, why);
    });
  }

  #openSocket(): net.Socket {
    const { host, port, unix_path: path } = this.#cfg;
    const where = path !== undefined ? { path } : { host, port };
    const t = this.#cfg.tls;
    if (!t) return net.connect(where);
    const servername = t.servername ?? (path === undefined && net.isIP(host) === 0 ? host : undefined);
    return tls.connect({
      ...where,
      ...(servername !== undefined ? { servername } : {}),
      ...(t.ca_file !== undefined ? { ca: readFileSync(t.ca_file) } : {}),
      ...(t.cert_file !== undefined ? { cert: readFileSync(t.cert_file) } : {}),
      ...(t.key_file !== undefined ? { key: readFileSync(t.key_file) } : {}),
      // Node checks the certificate against `servername` when given, else against `host`.
      rejectUnauthorized: t.verify,
    });
  }

  #onOpen(conn: Connection): void {
    if (conn !== this.#conn) return;
    if (this.#creds) conn.phase = 'helo';
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
    this.#log.info({ target: this.#target, resend: this.#queue.length - this.#head }, 'forward: connected to Fluent Bit');
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
    switch (conn.phase) {
      case 'helo': {
        const creds = this.#creds!;
        conn.helo = parseHelo(msg);
        conn.salt = newSalt();
        conn.socket.write(encodePing(conn.helo, creds, conn.salt));
        conn.phase = 'pong';
        return;
      }
      case 'pong': {
        const server = verifyPong(msg, conn.helo!, this.#creds!, conn.salt!);
        this.#log.debug({ target: this.#target, server }, 'forward: shared-key handshake done');
        this.#ready(conn);
        return;
      }
      case 'ready': {
        if (isHelo(msg)) {
          throw new HandshakeError(
            `${this.#target} sent HELO: its forward input requires a shared key, and output.shared_key is not set`,
          );
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
      this.#log.debug({ chunk: id }, 'forward: ack for a chunk not in flight, ignored');
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
    const max = this.#cfg.max_chunks_in_flight;
    while (this.#inflight.size < max && this.#head < this.#queue.length) {
      const chunk = this.#queue[this.#head]!;
      this.#queue[this.#head++] = undefined as unknown as OutboundChunk;
      chunk.writeTo(conn.socket);
      const secs = this.#cfg.ack_timeout_secs;
      const cancelTimer = this.#clock.setTimer(secs * 1000, () =>
        this.#fail(
          conn,
          new SidecarError(ErrorCode.FORWARD_CLOSED, `no ack for chunk ${chunk.id} from ${this.#target} within ${secs} s; reconnecting to resend`),
        ),
      );
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
    err ??= new SidecarError(ErrorCode.FORWARD_CLOSED, `${this.#target} closed the connection`);
    const resend = this.unacked;
    if (err instanceof HandshakeError) this.#reportError(err);
    else if (phase === 'connecting') this.#log.warn({ target: this.#target, err: err.message, unacked: resend }, 'forward: cannot connect to Fluent Bit');
    else this.#log.warn({ target: this.#target, err: err.message, unacked: resend }, 'forward: connection to Fluent Bit lost; unacknowledged chunks will be resent');
    this.#events.disconnected?.({ target: this.#target, error: err, resend });
    this.#scheduleRetry();
  }

  #scheduleRetry(): void {
    if (this.#closed) return;
    const delayMs = this.#backoff.next();
    const attempt = this.#backoff.attempt;
    this.#log.info({ target: this.#target, attempt, delayMs }, 'forward: reconnecting after backoff');
    this.#events.retryScheduled?.({ attempt, delayMs });
    this.#cancelRetry = this.#clock.setTimer(delayMs, () => this.#connect());
  }

  #reportError(err: SidecarError): void {
    this.#lastError = err;
    this.#log.error({ target: this.#target, code: err.code }, err.message);
    this.#events.error?.(err);
  }

  #describeSocketError(err: Error & { code?: string }): Error {
    const tlsProblem = err.code !== undefined && /CERT|TLS|SSL|SELF_SIGNED|UNABLE_TO/.test(err.code);
    if (tlsProblem) {
      const e = new SidecarError(ErrorCode.FORWARD_HANDSHAKE, `TLS with ${this.#target} failed: ${err.message} (${err.code})`, { cause: err });
      this.#reportError(e);
      return e;
    }
    return new SidecarError(ErrorCode.FORWARD_CLOSED, `${this.#target}: ${err.message}`, { cause: err });
  }
}
