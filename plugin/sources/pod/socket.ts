/**
 * One PoD WebSocket session: the handshake and its refusals, the client heartbeat, flow control
 * and the end of the session.
 *
 * - A refused upgrade arrives as `unexpected-response`: with a listener attached ws does not
 *   abort by itself, so the body (e.g. the 409 text) is read, then the request is destroyed.
 * - `maxPayload` is far above 1 MiB (peers silently lost larger frames); permessage-deflate is
 *   offered; TLS is verified (no option here turns it off).
 * - The server is not known to ping: the client pings every interval and ends the session when
 *   neither a pong nor any frame arrives in time. Any frame counts as a sign of life, because a
 *   pong queues behind a large frame on the same connection; so does a ping from the server
 *   (ws answers it by itself, `autoPong`).
 * - While paused (the pipeline has no room) the socket is not read, so pongs cannot be read
 *   either: the heartbeat is suspended and TCP flow control holds the server back.
 * - Ends are reported once, with whether the server's close frame was seen (1006 = the TCP
 *   connection was dropped without one).
 */
import type http from 'node:http';
import { WebSocket, type ClientOptions, type RawData } from 'ws';
import type { Clock } from '../../util/clock.ts';
import { VendorRequestError, type SidecarError } from '../../errors.ts';
import { handshakeError, PodSessionError } from './errors.ts';
import { USER_AGENT } from '../../util/user-agent.ts';
import { registerSecret, vendorText } from '../../telemetry/secrets.ts';

/** Refusal bodies are short texts; more than this is not read. */
const MAX_REFUSAL_BODY_BYTES = 64 * 1024;

export interface OpenOptions {
  url: URL;
  apiKey: string;
  service: string;
  handshakeTimeoutMs: number;
  maxFrameBytes: number;
  perMessageDeflate: boolean;
  closeTimeoutMs: number;
  agent?: http.Agent;
  /** Extra ws options (tests: TLS CA); cannot override auth, limits or TLS verification. */
  wsOptions?: ClientOptions;
  /** User-Agent header; names the replica when coordination is on. */
  userAgent?: string;
  signal?: AbortSignal;
}

/**
 * An open socket and what it did before a PodSocket took it over: the server may send frames
 * (and even close) in the same TCP segment as its 101 answer, and an EventEmitter drops events
 * nobody listens to, so they are kept from the first moment.
 */
export interface OpenedSocket {
  ws: WebSocket;
  early: { frames: RawData[]; contact: boolean; close?: { code: number; reason: Buffer }; error?: Error };
  /** Removes the listeners that fill `early` (errors are then ignored unless the new owner listens). */
  release(): void;
}

/** Opens the session; rejects with a SidecarError (handshake refusal, network) or the abort reason. */
export function openSocket(o: OpenOptions): Promise<OpenedSocket> {
  return new Promise((resolve, reject) => {
    if (o.signal?.aborted) return reject(o.signal.reason);
    registerSecret(o.apiKey);
    const ws = connect(o);
    let settled = false;
    // Errors after the outcome is known (a destroyed refusal, a late reset) must not crash.
    const onError = (err: Error) => {
      if (settled) opened.early.error ??= err;
      settle(new VendorRequestError(`PoD ${o.service} connection to ${o.url.host} failed: ${err.message}`, err));
    };
    const opened = keepEarly(ws, onError);
    const settle = (err: unknown, value?: OpenedSocket) => {
      if (settled) return;
      settled = true;
      o.signal?.removeEventListener('abort', onAbort);
      ws.removeListener('open', onOpen);
      if (err) {
        opened.release();
        ws.on('error', () => {});
        reject(err);
      } else resolve(value!);
    };
    const onAbort = () => {
      ws.terminate();
      settle(o.signal!.reason);
    };
    const onOpen = () => settle(null, opened);
    o.signal?.addEventListener('abort', onAbort, { once: true });
    ws.once('open', onOpen);
    ws.on('error', onError);
    ws.once('unexpected-response', (req, res) =>
      readRefusal(res, (body) => {
        req.destroy();
        settle(handshakeError(o.service, res.statusCode ?? 0, body));
      }),
    );
  });
}

/** The client socket, its options fixed here: `wsOptions` cannot override auth, limits or TLS verification. */
function connect(o: OpenOptions): WebSocket {
  return new WebSocket(o.url, {
    ...o.wsOptions,
    headers: { ...o.wsOptions?.headers, 'User-Agent': o.userAgent ?? USER_AGENT, Authorization: `Bearer ${o.apiKey}` },
    handshakeTimeout: o.handshakeTimeoutMs,
    maxPayload: o.maxFrameBytes,
    perMessageDeflate: o.perMessageDeflate,
    closeTimeout: o.closeTimeoutMs,
    followRedirects: false,
    autoPong: true,
    ...(o.agent ? { agent: o.agent } : {}),
  } as ClientOptions);
}

/** Keeps what the socket does from its first moment until a PodSocket takes it over (`release`). */
function keepEarly(ws: WebSocket, onError: (err: Error) => void): OpenedSocket {
  const early: OpenedSocket['early'] = { frames: [], contact: false };
  const onMessage = (d: RawData) => {
    early.frames.push(d);
    early.contact = true;
  };
  const onPong = () => (early.contact = true);
  const onClose = (code: number, reason: Buffer) => (early.close = { code, reason });
  ws.on('message', onMessage);
  ws.on('pong', onPong);
  ws.on('ping', onPong);
  ws.on('close', onClose);
  return {
    ws,
    early,
    release() {
      ws.off('message', onMessage);
      ws.off('pong', onPong);
      ws.off('ping', onPong);
      ws.off('close', onClose);
      ws.off('error', onError);
      // An 'error' without a listener would crash the process: whoever takes over adds its own.
      ws.on('error', () => {});
    },
  };
}

/** Reads a refused upgrade's body, at most MAX_REFUSAL_BODY_BYTES, in its declared charset; `done` is called once or more (settling is idempotent). */
function readRefusal(res: http.IncomingMessage, done: (body: string) => void): void {
  const charset = /charset=([^;]+)/i.exec(String(res.headers['content-type'] ?? ''))?.[1]?.trim().toLowerCase();
  const encoding: BufferEncoding = charset === 'iso-8859-1' || charset === 'latin1' ? 'latin1' : 'utf8';
  const chunks: Buffer[] = [];
  let size = 0;
  const finish = () => done(Buffer.concat(chunks).toString(encoding));
  res.on('data', (c: Buffer) => {
    if (size < MAX_REFUSAL_BODY_BYTES) chunks.push(c.subarray(0, MAX_REFUSAL_BODY_BYTES - size));
    size += c.length;
    if (size >= MAX_REFUSAL_BODY_BYTES) finish();
  });
  res.once('end', finish);
  res.once('error', finish);
  res.once('aborted', finish);
}

export interface SessionEnd {
  /** WebSocket close code; 1006 when the connection dropped without a close frame. */
  code: number;
  /** The server's close reason, scrubbed and bounded (`vendorText()`). */
  reason: string;
  /** The server's close frame was received (an orderly end). */
  closeFrame: boolean;
  /** Why the session failed, when it did (pong timeout, oversized frame, protocol error). */
  error?: SidecarError;
  /** We asked for the end (close() or terminate() from this side). */
  byClient: boolean;
}

export interface SessionOptions {
  clock: Clock;
  pingIntervalMs: number;
  pongTimeoutMs: number;
  service: string;
  maxFrameBytes: number;
  onFrame(text: string, bytes: number): void;
  /** Any sign of life (frame, pong), with the time it was seen. */
  onContact(at: number): void;
}

export class PodSocket {
  readonly #ws: WebSocket;
  readonly #o: SessionOptions;
  #cancelPing?: () => void;
  #cancelPongWait?: () => void;
  #cancelClose?: () => void;
  #paused = false;
  #ended = false;
  #byClient = false;
  #error?: SidecarError;
  #started = false;
  #replay?: () => void;
  #startHook?: () => void;
  readonly ended: Promise<SessionEnd>;

  constructor(opened: OpenedSocket, o: SessionOptions) {
    const ws = opened.ws;
    this.#ws = ws;
    this.#o = o;
    let resolveEnded!: (e: SessionEnd) => void;
    this.ended = new Promise((r) => (resolveEnded = r));
    // Take over from openSocket's listeners in one synchronous step: nothing is lost between.
    opened.release();
    const early = opened.early;
    const onFrame = (data: RawData) => {
      // Frames are JSON text; a binary frame is decoded the same way rather than dropped.
      const buf = Array.isArray(data) ? Buffer.concat(data) : Buffer.isBuffer(data) ? data : Buffer.from(data);
      this.#alive();
      o.onFrame(buf.toString('utf8'), buf.length);
    };
    const onError = (err: Error & { code?: string }) => {
      if (this.#error) return;
      this.#error =
        err.code === 'WS_ERR_UNSUPPORTED_MESSAGE_LENGTH'
          ? new PodSessionError(
              `PoD ${o.service} sent a frame larger than max_frame_bytes (${o.maxFrameBytes} bytes); the session was ended and the frame cannot be recovered from the server: raise max_frame_bytes`,
              err,
            )
          : new PodSessionError(`PoD ${o.service} session failed: ${err.message}`, err);
    };
    const onClose = (code: number, reason: Buffer) => {
      this.#ended = true;
      this.#stopHeartbeat();
      this.#cancelClose?.();
      resolveEnded({ code, reason: vendorText(reason.toString('utf8')), closeFrame: code !== 1006, error: this.#error, byClient: this.#byClient });
    };
    ws.on('message', (data: RawData) => (this.#started ? onFrame(data) : early.frames.push(data)));
    const onLife = () => (this.#started ? this.#alive() : (early.contact = true));
    ws.on('pong', onLife);
    ws.on('ping', onLife);
    ws.on('error', onError);
    if (early.error) onError(early.error);
    if (early.close) {
      const { code, reason } = early.close;
      this.#startHook = () => onClose(code, reason);
    } else {
      ws.once('close', (code: number, reason: Buffer) => (this.#started ? onClose(code, reason) : (this.#startHook = () => onClose(code, reason))));
    }
    this.#replay = () => {
      if (early.contact) this.#alive();
      for (const d of early.frames.splice(0)) onFrame(d);
    };
  }

  /**
   * Starts delivering: first what arrived before (frames, then the close if the session already
   * ended), then live. Separate from the constructor so the caller holds the object first.
   */
  start(): void {
    if (this.#started) return;
    this.#started = true;
    this.#replay?.();
    this.#replay = undefined;
    if (this.#startHook) {
      const hook = this.#startHook;
      this.#startHook = undefined;
      hook();
      return;
    }
    this.#schedulePing();
  }

  get paused(): boolean {
    return this.#paused;
  }

  /** Stops reading: TCP flow control holds the server back. The heartbeat waits too. */
  pause(): void {
    if (this.#paused || this.#ended) return;
    this.#paused = true;
    this.#stopHeartbeat();
    this.#ws.pause();
  }

  resume(): void {
    if (!this.#paused || this.#ended) return;
    this.#paused = false;
    this.#ws.resume();
    if (this.#started) this.#schedulePing();
  }

  /** Orderly end: our close frame, then the server's; the TCP connection is cut after the close timeout. */
  close(code = 1000, reason = '', timeoutMs = 10_000): void {
    if (this.#ended) return;
    this.#byClient = true;
    this.#stopHeartbeat();
    // A paused socket would never read the server's close frame.
    if (this.#paused) this.#ws.resume();
    this.#ws.close(code, reason);
    this.#cancelClose = this.#o.clock.setTimer(timeoutMs, () => this.#ws.terminate());
  }

  /** Cuts the connection (no close handshake), recording why. */
  terminate(error?: SidecarError): void {
    if (this.#ended) return;
    if (error && !this.#error) this.#error = error;
    if (!error) this.#byClient = true;
    this.#stopHeartbeat();
    this.#ws.terminate();
  }

  #alive(): void {
    this.#o.onContact(this.#o.clock.now());
    if (this.#cancelPongWait) {
      this.#cancelPongWait();
      this.#cancelPongWait = undefined;
    }
  }

  #schedulePing(): void {
    this.#cancelPing?.();
    this.#cancelPing = this.#o.clock.setTimer(this.#o.pingIntervalMs, () => {
      this.#cancelPing = undefined;
      if (this.#ended || this.#paused) return;
      if (!this.#cancelPongWait) {
        this.#cancelPongWait = this.#o.clock.setTimer(this.#o.pongTimeoutMs, () => {
          this.#cancelPongWait = undefined;
          this.terminate(new PodSessionError(`PoD ${this.#o.service} session did not answer a ping within ${this.#o.pongTimeoutMs / 1000} s; reconnecting`));
        });
        try {
          this.#ws.ping();
        } catch {
          // Closing already; the close event ends the session.
        }
      }
      this.#schedulePing();
    });
  }

  #stopHeartbeat(): void {
    this.#cancelPing?.();
    this.#cancelPing = undefined;
    this.#cancelPongWait?.();
    this.#cancelPongWait = undefined;
  }
}
