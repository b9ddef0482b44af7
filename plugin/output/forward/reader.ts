/**
 * A small msgpack reader for what Fluent Bit sends back: HELO, PONG and `{ack: chunk}`.
 *
 * Byte-level on purpose: HELO's nonce and auth are 16 random bytes inside a msgpack *str*, and
 * any decoder that turns str into a JS string corrupts them (the shared-key digests in handshake.ts
 * hash those raw bytes), so str
 * and bin both come out as Buffers and the caller decides what is text. Map keys are read as
 * UTF-8 strings. Server messages arrive on a byte stream where one message can be split across
 * `data` events and several can share one: `MessageReader` buffers and yields whole messages.
 */
import { SidecarError, ErrorCode } from '../../errors.ts';

export type Value = null | boolean | number | Buffer | Value[] | Map<string, Value> | Ext;

/** An extension value (the server has no reason to send one; kept so it can be reported). */
export class Ext {
  constructor(
    readonly type: number,
    readonly data: Buffer,
  ) {}
}

/** The stream is not msgpack, or not a message a forward server would send. */
export class ProtocolError extends SidecarError {
  constructor(message: string) {
    super(ErrorCode.FORWARD_PROTOCOL, message);
  }
}

const INCOMPLETE = Symbol('incomplete');
const MAX_DEPTH = 16;

/** Incremental reader for a stream of msgpack values. */
export class MessageReader {
  #buf: Buffer = Buffer.alloc(0);
  readonly #maxBuffered: number;

  /** `maxBuffered`: unread bytes allowed before the stream is declared garbage (acks are ~30 bytes). */
  constructor(maxBuffered = 1_048_576) {
    this.#maxBuffered = maxBuffered;
  }

  push(data: Buffer): void {
    this.#buf = this.#buf.length === 0 ? data : Buffer.concat([this.#buf, data]);
  }

  /** The next whole message, or undefined until more bytes arrive. Throws ProtocolError. */
  next(): Value | undefined {
    if (this.#buf.length === 0) return undefined;
    const r = readValue(this.#buf, 0, 0);
    if (r === INCOMPLETE) {
      if (this.#buf.length > this.#maxBuffered) {
        throw new ProtocolError(`server sent more than ${this.#maxBuffered} bytes without completing a message`);
      }
      return undefined;
    }
    this.#buf = r.end === this.#buf.length ? Buffer.alloc(0) : this.#buf.subarray(r.end);
    return r.value;
  }

  get buffered(): number {
    return this.#buf.length;
  }
}

/** Decodes exactly one value filling `bytes`; throws ProtocolError on anything else. */
export function decodeOne(bytes: Buffer): Value {
  const r = readValue(bytes, 0, 0);
  if (r === INCOMPLETE) throw new ProtocolError('truncated msgpack value');
  if (r.end !== bytes.length) throw new ProtocolError(`${bytes.length - r.end} extra bytes after a msgpack value`);
  return r.value;
}

type Read = { value: Value; end: number } | typeof INCOMPLETE;

function readValue(b: Buffer, pos: number, depth: number): Read {
  if (pos >= b.length) return INCOMPLETE;
  if (depth > MAX_DEPTH) throw new ProtocolError('msgpack value nested too deeply');
  const t = b[pos]!;
  if (t <= 0x7f) return { value: t, end: pos + 1 };
  if (t >= 0xe0) return { value: t - 0x100, end: pos + 1 };
  if (t >= 0xa0 && t <= 0xbf) return bytesAt(b, pos + 1, t & 0x1f);
  if (t >= 0x90 && t <= 0x9f) return readArray(b, pos + 1, t & 0x0f, depth);
  if (t >= 0x80 && t <= 0x8f) return readMap(b, pos + 1, t & 0x0f, depth);
  switch (t) {
    case 0xc0:
      return { value: null, end: pos + 1 };
    case 0xc2:
      return { value: false, end: pos + 1 };
    case 0xc3:
      return { value: true, end: pos + 1 };
    case 0xc4:
    case 0xd9:
      return need(b, pos, 2) ? bytesAt(b, pos + 2, b[pos + 1]!) : INCOMPLETE;
    case 0xc5:
    case 0xda:
      return need(b, pos, 3) ? bytesAt(b, pos + 3, b.readUInt16BE(pos + 1)) : INCOMPLETE;
    case 0xc6:
    case 0xdb:
      return need(b, pos, 5) ? bytesAt(b, pos + 5, b.readUInt32BE(pos + 1)) : INCOMPLETE;
    case 0xc7:
      return need(b, pos, 3) ? extAt(b, pos + 3, b[pos + 2]!, b[pos + 1]!) : INCOMPLETE;
    case 0xc8:
      return need(b, pos, 4) ? extAt(b, pos + 4, b[pos + 3]!, b.readUInt16BE(pos + 1)) : INCOMPLETE;
    case 0xc9:
      return need(b, pos, 6) ? extAt(b, pos + 6, b[pos + 5]!, b.readUInt32BE(pos + 1)) : INCOMPLETE;
    case 0xca:
      return need(b, pos, 5) ? { value: b.readFloatBE(pos + 1), end: pos + 5 } : INCOMPLETE;
    case 0xcb:
      return need(b, pos, 9) ? { value: b.readDoubleBE(pos + 1), end: pos + 9 } : INCOMPLETE;
    case 0xcc:
      return need(b, pos, 2) ? { value: b[pos + 1]!, end: pos + 2 } : INCOMPLETE;
    case 0xcd:
      return need(b, pos, 3) ? { value: b.readUInt16BE(pos + 1), end: pos + 3 } : INCOMPLETE;
    case 0xce:
      return need(b, pos, 5) ? { value: b.readUInt32BE(pos + 1), end: pos + 5 } : INCOMPLETE;
    case 0xcf:
      return need(b, pos, 9) ? { value: Number(b.readBigUInt64BE(pos + 1)), end: pos + 9 } : INCOMPLETE;
    case 0xd0:
      return need(b, pos, 2) ? { value: b.readInt8(pos + 1), end: pos + 2 } : INCOMPLETE;
    case 0xd1:
      return need(b, pos, 3) ? { value: b.readInt16BE(pos + 1), end: pos + 3 } : INCOMPLETE;
    case 0xd2:
      return need(b, pos, 5) ? { value: b.readInt32BE(pos + 1), end: pos + 5 } : INCOMPLETE;
    case 0xd3:
      return need(b, pos, 9) ? { value: Number(b.readBigInt64BE(pos + 1)), end: pos + 9 } : INCOMPLETE;
    case 0xd4:
    case 0xd5:
    case 0xd6:
    case 0xd7:
    case 0xd8:
      return need(b, pos, 2) ? extAt(b, pos + 2, b[pos + 1]!, 1 << (t - 0xd4)) : INCOMPLETE;
    case 0xdc:
      return need(b, pos, 3) ? readArray(b, pos + 3, b.readUInt16BE(pos + 1), depth) : INCOMPLETE;
    case 0xdd:
      return need(b, pos, 5) ? readArray(b, pos + 5, b.readUInt32BE(pos + 1), depth) : INCOMPLETE;
    case 0xde:
      return need(b, pos, 3) ? readMap(b, pos + 3, b.readUInt16BE(pos + 1), depth) : INCOMPLETE;
    case 0xdf:
      return need(b, pos, 5) ? readMap(b, pos + 5, b.readUInt32BE(pos + 1), depth) : INCOMPLETE;
    default:
      throw new ProtocolError(`invalid msgpack type byte 0x${t.toString(16)}`);
  }
}

function need(b: Buffer, pos: number, n: number): boolean {
  return pos + n <= b.length;
}

function bytesAt(b: Buffer, start: number, len: number): Read {
  const end = start + len;
  return end <= b.length ? { value: b.subarray(start, end), end } : INCOMPLETE;
}

function extAt(b: Buffer, start: number, type: number, len: number): Read {
  const end = start + len;
  return end <= b.length ? { value: new Ext(type > 127 ? type - 256 : type, b.subarray(start, end)), end } : INCOMPLETE;
}

function readArray(b: Buffer, pos: number, n: number, depth: number): Read {
  // Every element takes at least one byte: a count beyond the bytes present cannot be whole yet.
  if (n > b.length - pos) return INCOMPLETE;
  const out: Value[] = [];
  for (let i = 0; i < n; i++) {
    const r = readValue(b, pos, depth + 1);
    if (r === INCOMPLETE) return r;
    out.push(r.value);
    pos = r.end;
  }
  return { value: out, end: pos };
}

function readMap(b: Buffer, pos: number, n: number, depth: number): Read {
  if (2 * n > b.length - pos) return INCOMPLETE;
  const out = new Map<string, Value>();
  for (let i = 0; i < n; i++) {
    const k = readValue(b, pos, depth + 1);
    if (k === INCOMPLETE) return k;
    const v = readValue(b, k.end, depth + 1);
    if (v === INCOMPLETE) return v;
    out.set(Buffer.isBuffer(k.value) ? k.value.toString('utf8') : String(k.value), v.value);
    pos = v.end;
  }
  return { value: out, end: pos };
}
