/**
 * An in-process forward-protocol receiver for tests, written independently of plugin/output/forward:
 * frames are decoded with @msgpack/msgpack (EventTime through an ExtensionCodec for type 0).
 * It accepts Message, Forward and PackedForward (entries as bin or str) and records every entry.
 *
 * It can misbehave the ways Fluent Bit does or might: withhold acks and release them later (in
 * order or reversed, coalesced in one write), write acks one byte at a time, cut a connection in
 * the middle of a frame, drop every connection (in_forward does on pause), refuse connections
 * (stop listening), and require a shared key like in_forward (plugins/in_forward/fw_prot.c): HELO
 * carries a 16-byte nonce and a 16-byte `auth` salt, random bytes in a msgpack *str*, whether or
 * not users are configured; the PING's user fields are checked only when `users` is set; data
 * before PONG is dropped; a wrong key closes without PONG; a wrong user gets PONG false.
 */
import net from 'node:net';
import tls from 'node:tls';
import { createHash, randomBytes } from 'node:crypto';
import { Writable } from 'node:stream';
import { Decoder, ExtensionCodec, decodeMulti, encode } from '@msgpack/msgpack';
import { pino, type Logger } from 'pino';
import type { ForwardOutputConfig } from '../../plugin/config/schema.ts';

export interface ReceivedTime {
  sec: number;
  nsec: number;
}

export interface ReceivedRecord {
  tag: string;
  time: ReceivedTime;
  record: Record<string, unknown>;
  chunk: string | undefined;
  connection: number;
}

export interface ReceivedFrame {
  tag: string;
  mode: 'message' | 'forward' | 'packed';
  chunk: string | undefined;
  size: number | undefined;
  entries: number;
  /** PackedForward only: the frame's length, re-encoded independently with @msgpack/msgpack. */
  bytes: number | undefined;
  connection: number;
}

export interface ForwardReceiverOptions {
  sharedKey?: string;
  serverHostname?: string;
  /** security.users: username → password; needs sharedKey. */
  users?: Record<string, string>;
  /**
   * HELO `auth`: 'salt' (default) sends 16 random bytes as Fluent Bit's in_forward always does;
   * 'empty' sends an empty str, as Fluentd does without user_auth.
   */
  heloAuth?: 'salt' | 'empty';
  /** TLS; with `ca`, client certificates signed by it are required. */
  tls?: { key: string | Buffer; cert: string | Buffer; ca?: string | Buffer };
  /** Listen on this unix socket instead of TCP. */
  unixPath?: string;
}

type AckMode = 'auto' | 'hold';

interface HeldAck {
  socket: net.Socket;
  chunk: string;
}

const timeCodec = new ExtensionCodec();
timeCodec.register({
  type: 0,
  encode: () => null,
  decode: (data: Uint8Array): ReceivedTime => {
    if (data.length !== 8) throw new Error(`EventTime payload must be 8 bytes, got ${data.length}`);
    const v = new DataView(data.buffer, data.byteOffset, data.byteLength);
    return { sec: v.getUint32(0), nsec: v.getUint32(4) };
  },
});

export class ForwardReceiver {
  readonly records: ReceivedRecord[] = [];
  readonly frames: ReceivedFrame[] = [];
  /** Chunk ids in the order acks were written. */
  readonly acked: string[] = [];
  /** Frames received before the handshake finished, dropped as Fluent Bit drops them. */
  droppedBeforePong = 0;
  /** Connections accepted, and those that passed the handshake. */
  connections = 0;
  established = 0;
  /** Handshake rejections, with the reason Fluent Bit would log. */
  readonly handshakeFailures: string[] = [];
  /** Every PING received: the client's hostname and user fields (a digest, never a password). */
  readonly pings: { hostname: string; username: string; passwordDigest: string }[] = [];
  /** Bytes received on all connections. */
  bytesReceived = 0;
  /** Frames whose chunk had already been acked when they arrived: must stay 0 for a correct client. */
  resentAfterAck = 0;
  /** Write each ack one byte at a time. */
  splitAcks = false;

  readonly #opts: ForwardReceiverOptions;
  readonly #server: net.Server;
  readonly #sockets = new Set<net.Socket>();
  #ackMode: AckMode = 'auto';
  #held: HeldAck[] = [];
  #cutAfter: number | undefined;
  #port = 0;

  constructor(opts: ForwardReceiverOptions = {}) {
    this.#opts = opts;
    const onSocket = (s: net.Socket) => void this.#handle(s);
    const t = opts.tls;
    this.#server = t
      ? tls.createServer({ key: t.key, cert: t.cert, ...(t.ca ? { ca: t.ca, requestCert: true, rejectUnauthorized: true } : {}) }, onSocket)
      : net.createServer(onSocket);
  }

  get port(): number {
    return this.#port;
  }

  /** Listens on `port` (0: any free port; the same port again after stopListening). */
  async listen(port = this.#port): Promise<void> {
    await new Promise<void>((resolve, reject) => {
      this.#server.once('error', reject);
      const done = () => {
        this.#server.off('error', reject);
        resolve();
      };
      if (this.#opts.unixPath !== undefined) this.#server.listen(this.#opts.unixPath, done);
      else this.#server.listen(port, '127.0.0.1', done);
    });
    const addr = this.#server.address();
    if (addr && typeof addr === 'object') this.#port = addr.port;
  }

  /** Refuses new connections and drops the open ones. */
  async stopListening(): Promise<void> {
    const closed = new Promise<void>((resolve) => this.#server.close(() => resolve()));
    this.dropConnections();
    await closed;
  }

  async close(): Promise<void> {
    if (this.#server.listening) await this.stopListening();
    else this.dropConnections();
  }

  /** Destroys every open connection, as in_forward does when its input pauses. */
  dropConnections(): void {
    for (const s of this.#sockets) s.destroy();
    this.#sockets.clear();
  }

  /** Acks are kept until released. */
  holdAcks(): void {
    this.#ackMode = 'hold';
  }

  /** Acks are written as frames arrive (the default). */
  autoAck(): void {
    this.#ackMode = 'auto';
  }

  get heldAcks(): number {
    return this.#held.length;
  }

  /**
   * Writes the held acks (those whose connection is still open), all of a connection in one
   * write, in arrival order or reversed. Returns how many were written.
   */
  releaseAcks(order: 'fifo' | 'reverse' = 'fifo'): number {
    const held = order === 'reverse' ? [...this.#held].reverse() : this.#held;
    this.#held = [];
    const bySocket = new Map<net.Socket, Buffer[]>();
    let n = 0;
    for (const h of held) {
      if (h.socket.destroyed) continue;
      const list = bySocket.get(h.socket) ?? [];
      list.push(encodeAck(h.chunk));
      bySocket.set(h.socket, list);
      this.acked.push(h.chunk);
      n++;
    }
    for (const [s, acks] of bySocket) s.write(Buffer.concat(acks));
    return n;
  }

  /** The next connection is destroyed once `bytes` bytes of it were read: mid-frame, usually. */
  cutNextConnectionAfter(bytes: number): void {
    this.#cutAfter = bytes;
  }

  /** Chunk ids in arrival order, one per frame (duplicates included). */
  get chunks(): string[] {
    return this.frames.map((f) => f.chunk ?? '');
  }

  async #handle(socket: net.Socket): Promise<void> {
    const conn = ++this.connections;
    this.#sockets.add(socket);
    socket.on('close', () => this.#sockets.delete(socket));
    socket.on('error', () => {});
    const secure = this.#opts.sharedKey !== undefined;
    const nonce = randomBytes(16);
    const auth = this.#opts.heloAuth === 'empty' ? Buffer.alloc(0) : randomBytes(16);
    // Make sure the bytes are not valid UTF-8: a client that decodes them as text must fail.
    nonce[0] = 0xff;
    if (auth.length > 0) auth[0] = 0xfe;
    let state: 'ping' | 'open' = secure ? 'ping' : 'open';
    if (secure) socket.write(encodeHelo(nonce, auth));
    else this.established++;

    let chunkIndex = 0;
    let pongAfterChunk = -1;
    let cutAfter = this.#cutAfter;
    this.#cutAfter = undefined;
    let seen = 0;
    const self = this;
    async function* data(): AsyncGenerator<Buffer> {
      for await (const raw of socket as AsyncIterable<Buffer>) {
        let chunk = raw;
        if (cutAfter !== undefined && seen + chunk.length >= cutAfter) {
          chunk = chunk.subarray(0, cutAfter - seen);
          seen += chunk.length;
          self.bytesReceived += chunk.length;
          chunkIndex++;
          if (chunk.length > 0) yield chunk;
          socket.destroy();
          return;
        }
        seen += chunk.length;
        self.bytesReceived += chunk.length;
        chunkIndex++;
        yield chunk;
      }
    }
    const decoder = new Decoder({ rawStrings: true, extensionCodec: timeCodec });
    try {
      for await (const msg of decoder.decodeStream(data())) {
        if (socket.destroyed) return;
        if (state === 'ping') {
          if (isPing(msg)) {
            const ok = this.#checkPing(socket, msg as Uint8Array[], nonce, auth);
            if (!ok) return;
            state = 'open';
            pongAfterChunk = chunkIndex;
            this.established++;
          } else {
            this.droppedBeforePong++;
          }
          continue;
        }
        if (chunkIndex <= pongAfterChunk) {
          // Arrived in the same read as PING: Fluent Bit drops it.
          this.droppedBeforePong++;
          continue;
        }
        this.#onFrame(socket, conn, msg);
      }
    } catch {
      socket.destroy();
    }
  }

  #checkPing(socket: net.Socket, m: Uint8Array[], nonce: Buffer, auth: Buffer): boolean {
    const [, host, salt, digest, user, pwDigest] = m.map((b) => Buffer.from(b));
    this.pings.push({ hostname: host!.toString('utf8'), username: user!.toString('utf8'), passwordDigest: pwDigest!.toString('latin1') });
    const key = this.#opts.sharedKey!;
    const expected = createHash('sha512').update(salt!).update(host!).update(nonce).update(key).digest('hex');
    if (digest!.toString('latin1') !== expected) {
      this.handshakeFailures.push('shared_key mismatch');
      socket.destroy();
      return false;
    }
    const serverHostname = this.#opts.serverHostname ?? 'receiver';
    if (this.#opts.users) {
      const name = user!.toString('utf8');
      const pw = this.#opts.users[name];
      const want = pw === undefined ? undefined : createHash('sha512').update(auth).update(name).update(pw).digest('hex');
      if (want === undefined || pwDigest!.toString('latin1') !== want) {
        this.handshakeFailures.push('username/password mismatch');
        socket.end(Buffer.from(encode(['PONG', false, 'username/password mismatch', serverHostname, ''])));
        return false;
      }
    }
    const pongDigest = createHash('sha512').update(salt!).update(serverHostname).update(nonce).update(key).digest('hex');
    socket.write(Buffer.from(encode(['PONG', true, '', serverHostname, pongDigest])));
    return true;
  }

  #onFrame(socket: net.Socket, conn: number, msg: unknown): void {
    if (!Array.isArray(msg) || msg.length < 2 || !(msg[0] instanceof Uint8Array)) {
      throw new Error('not a forward message');
    }
    const tag = Buffer.from(msg[0]).toString('utf8');
    const second = msg[1];
    let mode: ReceivedFrame['mode'];
    let entries: [unknown, unknown][];
    let option: unknown;
    if (second instanceof Uint8Array) {
      mode = 'packed';
      entries = [...decodeMulti(second, { extensionCodec: timeCodec })] as [unknown, unknown][];
      option = msg[2];
    } else if (Array.isArray(second)) {
      mode = 'forward';
      entries = second as [unknown, unknown][];
      option = msg[2];
    } else {
      mode = 'message';
      entries = [[second, msg[2]]];
      option = msg[3];
    }
    const opt = (option ?? {}) as { chunk?: unknown; size?: unknown };
    if (opt.chunk !== undefined && !(opt.chunk instanceof Uint8Array)) throw new Error('chunk must be a str');
    const chunk = opt.chunk instanceof Uint8Array ? Buffer.from(opt.chunk).toString('utf8') : undefined;
    if (chunk !== undefined && this.acked.includes(chunk)) this.resentAfterAck++;
    this.frames.push({
      tag,
      mode,
      chunk,
      size: typeof opt.size === 'number' ? opt.size : undefined,
      entries: entries.length,
      bytes: mode === 'packed' ? encode([tag, second, { size: opt.size, chunk }]).length : undefined,
      connection: conn,
    });
    for (const [time, record] of entries) {
      this.records.push({ tag, time: toTime(time), record: textify(record) as Record<string, unknown>, chunk, connection: conn });
    }
    if (chunk === undefined) return;
    if (this.#ackMode === 'hold') {
      this.#held.push({ socket, chunk });
      return;
    }
    this.acked.push(chunk);
    const ack = encodeAck(chunk);
    if (!this.splitAcks) socket.write(ack);
    else for (const b of ack) socket.write(Buffer.of(b));
  }
}

/** Polls `pred` until it holds; rejects with `what` after `timeoutMs`. */
export async function waitUntil(pred: () => boolean, what: string, timeoutMs = 10_000): Promise<void> {
  const end = Date.now() + timeoutMs;
  while (!pred()) {
    if (Date.now() > end) throw new Error(`timed out waiting for ${what}`);
    await new Promise((r) => setTimeout(r, 5));
  }
}

function toTime(t: unknown): ReceivedTime {
  if (typeof t === 'number') return { sec: Math.floor(t), nsec: 0 };
  if (t && typeof t === 'object' && 'sec' in t && 'nsec' in t) return t as ReceivedTime;
  throw new Error(`unexpected entry time ${String(t)}`);
}

/** Record values decoded with rawStrings stay bytes only in the outer frame; entries decode normally. */
function textify(v: unknown): unknown {
  if (v instanceof Uint8Array) return Buffer.from(v).toString('utf8');
  if (Array.isArray(v)) return v.map(textify);
  if (v && typeof v === 'object' && !('sec' in v && 'nsec' in v)) {
    return Object.fromEntries(Object.entries(v).map(([k, x]) => [k, textify(x)]));
  }
  return v;
}

function isPing(m: unknown): boolean {
  if (!Array.isArray(m) || m.length !== 6 || !m.every((x) => x instanceof Uint8Array)) return false;
  return Buffer.from(m[0] as Uint8Array).toString('latin1') === 'PING';
}

function strHeader(n: number): Buffer {
  return n < 32 ? Buffer.of(0xa0 | n) : Buffer.of(0xd9, n);
}

/** ['HELO', {nonce, auth}] with both values as raw bytes in msgpack str, like in_forward. */
function encodeHelo(nonce: Buffer, auth: Buffer): Buffer {
  return Buffer.concat([
    Buffer.of(0x92, 0xa4),
    Buffer.from('HELO'),
    Buffer.of(0x82, 0xa5),
    Buffer.from('nonce'),
    strHeader(nonce.length),
    nonce,
    Buffer.of(0xa4),
    Buffer.from('auth'),
    strHeader(auth.length),
    auth,
  ]);
}

/** {ack: chunk} with the chunk echoed as str, like in_forward. */
function encodeAck(chunk: string): Buffer {
  const c = Buffer.from(chunk, 'utf8');
  return Buffer.concat([Buffer.of(0x81, 0xa3), Buffer.from('ack'), strHeader(c.length), c]);
}

/** A complete `output:` section for the forward sink with the schema's defaults, for tests. */
export function forwardConfig(over: Partial<ForwardOutputConfig> = {}): ForwardOutputConfig {
  return {
    type: 'forward',
    host: '127.0.0.1',
    port: 24224,
    connect_timeout_secs: 10,
    ack_timeout_secs: 30,
    reconnect_initial_secs: 0.5,
    reconnect_max_secs: 30,
    chunk_bytes: 1_048_576,
    max_frame_bytes: 4_000_000,
    max_chunks_in_flight: 16,
    queue_max_bytes: 64 * 1_048_576,
    ...over,
  };
}

/** A pino logger whose lines are kept in `lines`, to check what gets logged. */
export function captureLogger(): { logger: Logger; lines: string[] } {
  const lines: string[] = [];
  const logger = pino(
    { level: 'debug' },
    new Writable({
      write(chunk, _enc, cb) {
        lines.push(String(chunk));
        cb();
      },
    }),
  );
  return { logger, lines };
}
