/**
 * PackedForward encoding (Forward Protocol v1). The pipeline encodes each record once into an
 * entry `[EventTime, record]`; a chunk of entries under one tag becomes one frame:
 *
 *   93 <tag: str> <entries: bin> 82 a4 "size" <uint> a5 "chunk" <str: base64 of 16 random bytes>
 *
 * Entries go as `bin` (the spec's SHOULD; Fluent Bit accepts `bin` and `str`). `chunk` must be a
 * msgpack str or Fluent Bit closes the connection, and it is what makes Fluent Bit ack only after
 * the append succeeded (in_forward acks only chunks it stored). A frame over Fluent Bit's `buffer_max_size`
 * closes the connection too, so frame sizes are computed exactly (`packedForwardSize`) and a
 * record that cannot fit alone (`maxEntryBytes`) must be dead-lettered, never sent.
 */
import { randomBytes } from 'node:crypto';
import { Packr, addExtension } from 'msgpackr';
import type { OutputRecord } from '../sink.ts';
import { checkEventTime, writeEventTime, EVENT_TIME_BYTES } from './event-time.ts';

/** Characters of a chunk id: base64 of 16 bytes. */
export const CHUNK_ID_CHARS = 24;

/**
 * Carries an EventTime through msgpackr. msgpackr refuses extension type 0, but an extension
 * whose `pack` writes through `allocateForWrite` and returns nothing has its bytes copied
 * verbatim, so the registered type (never written) only has to be non-zero. Measured on a 2 KB
 * TAP-like record: 1.8 µs per entry, against 2.3 µs for packing the record alone and copying it
 * behind a hand-written header, and 2.4 µs for a hand-written encoder.
 */
class EventTimeBox {
  constructor(
    readonly sec: number,
    readonly nsec: number,
  ) {}
}

type AllocateForWrite = (size: number) => { target: Uint8Array; position: number };

addExtension({
  Class: EventTimeBox,
  type: 0x7f,
  pack: ((box: EventTimeBox, allocate: AllocateForWrite) => {
    const { target, position } = allocate(EVENT_TIME_BYTES);
    writeEventTime(target, position, box);
  }) as unknown as (value: unknown) => Buffer,
});

// useRecords:false — msgpackr's own record extension is unreadable by Fluent Bit;
// encodeUndefinedAsNil — msgpackr otherwise writes undefined as fixext1 type 0 (`d4 00 00`),
// which Fluent Bit would take for an EventTime.
const packr = new Packr({ useRecords: false, encodeUndefinedAsNil: true });

/**
 * One PackedForward entry `[EventTime, record]`. The result is a view into msgpackr's output
 * slab; msgpackr never writes over bytes it has returned, so it stays valid.
 */
export function encodeEntry(rec: OutputRecord): Buffer {
  checkEventTime(rec.time);
  return packr.pack([new EventTimeBox(rec.time.sec, rec.time.nsec), rec.record]);
}

/** A fresh chunk id: base64 of 128 random bits (24 characters), as the spec asks. */
export function newChunkId(): string {
  return randomBytes(16).toString('base64');
}

/** Exact byte length of a PackedForward frame. */
export function packedForwardSize(tagBytes: number, records: number, payloadBytes: number, chunkIdBytes = CHUNK_ID_CHARS): number {
  return (
    1 +
    strHeaderSize(tagBytes) +
    tagBytes +
    binHeaderSize(payloadBytes) +
    payloadBytes +
    optionSize(records, chunkIdBytes)
  );
}

/** Bytes a frame adds around its entries: `packedForwardSize(...) - payloadBytes`. */
export function frameOverhead(tag: string, records: number, payloadBytes: number): number {
  const tagBytes = Buffer.byteLength(tag, 'utf8');
  return packedForwardSize(tagBytes, records, payloadBytes) - payloadBytes;
}

/**
 * The largest entry that fits alone in a frame of at most `maxFrameBytes` under `tag`: a frame
 * holding exactly that entry is exactly `maxFrameBytes` long. 0 when even an empty entry cannot fit.
 */
export function maxEntryBytes(tag: string, maxFrameBytes: number): number {
  const tagBytes = Buffer.byteLength(tag, 'utf8');
  const fixed = 1 + strHeaderSize(tagBytes) + tagBytes + optionSize(1, CHUNK_ID_CHARS);
  // The bin header grows with the payload: take the largest payload consistent with its header.
  for (const [header, limit] of [
    [5, 0xffffffff],
    [3, 0xffff],
    [2, 0xff],
  ] as const) {
    const payload = Math.min(limit, maxFrameBytes - fixed - header);
    if (payload >= 0 && binHeaderSize(payload) === header) return payload;
  }
  return 0;
}

/**
 * The bytes before and after the entries of a frame: `head + entries + tail` is the frame. The
 * client writes the three parts with one vectored write, so entries are never copied into a
 * frame buffer.
 */
export function packedForwardEnvelope(
  tag: string,
  records: number,
  payloadBytes: number,
  chunkId: string,
): { head: Buffer; tail: Buffer } {
  if (typeof tag !== 'string' || tag.length === 0) throw new TypeError('a Fluent tag must be a non-empty string');
  const tagBytes = Buffer.byteLength(tag, 'utf8');
  const head = Buffer.allocUnsafe(1 + strHeaderSize(tagBytes) + tagBytes + binHeaderSize(payloadBytes));
  head[0] = 0x93;
  let pos = writeStrHeader(head, 1, tagBytes);
  pos += head.write(tag, pos, 'utf8');
  pos = writeBinHeader(head, pos, payloadBytes);
  const chunkBytes = Buffer.byteLength(chunkId, 'utf8');
  const tail = Buffer.allocUnsafe(optionSize(records, chunkBytes));
  tail[0] = 0x82;
  tail[1] = 0xa4;
  pos = 2 + tail.write('size', 2, 'latin1');
  pos = writeUint(tail, pos, records);
  tail[pos++] = 0xa5;
  pos += tail.write('chunk', pos, 'latin1');
  pos = writeStrHeader(tail, pos, chunkBytes);
  pos += tail.write(chunkId, pos, 'utf8');
  if (pos !== tail.length) throw new Error(`PackedForward option size mismatch: wrote ${pos} of ${tail.length} bytes`);
  return { head, tail };
}

/** One frame as a single buffer: the envelope around the entries (tests, tools). */
export function encodePackedForward(tag: string, entries: readonly Uint8Array[], chunkId: string): Buffer {
  let payload = 0;
  for (const e of entries) payload += e.length;
  const { head, tail } = packedForwardEnvelope(tag, entries.length, payload, chunkId);
  return Buffer.concat([head, ...entries, tail]);
}

function optionSize(records: number, chunkIdBytes: number): number {
  // 82 | a4 "size" <uint> | a5 "chunk" <str>
  return 1 + 5 + uintSize(records) + 6 + strHeaderSize(chunkIdBytes) + chunkIdBytes;
}

function strHeaderSize(n: number): number {
  return n < 32 ? 1 : n <= 0xff ? 2 : n <= 0xffff ? 3 : 5;
}

function binHeaderSize(n: number): number {
  return n <= 0xff ? 2 : n <= 0xffff ? 3 : 5;
}

function uintSize(n: number): number {
  return n < 0x80 ? 1 : n <= 0xff ? 2 : n <= 0xffff ? 3 : 5;
}

function writeStrHeader(out: Buffer, pos: number, n: number): number {
  if (n < 32) {
    out[pos] = 0xa0 | n;
    return pos + 1;
  }
  if (n <= 0xff) {
    out[pos] = 0xd9;
    out[pos + 1] = n;
    return pos + 2;
  }
  if (n <= 0xffff) {
    out[pos] = 0xda;
    out.writeUInt16BE(n, pos + 1);
    return pos + 3;
  }
  out[pos] = 0xdb;
  out.writeUInt32BE(n, pos + 1);
  return pos + 5;
}

function writeBinHeader(out: Buffer, pos: number, n: number): number {
  if (n <= 0xff) {
    out[pos] = 0xc4;
    out[pos + 1] = n;
    return pos + 2;
  }
  if (n <= 0xffff) {
    out[pos] = 0xc5;
    out.writeUInt16BE(n, pos + 1);
    return pos + 3;
  }
  out[pos] = 0xc6;
  out.writeUInt32BE(n, pos + 1);
  return pos + 5;
}

function writeUint(out: Buffer, pos: number, n: number): number {
  if (n < 0x80) {
    out[pos] = n;
    return pos + 1;
  }
  if (n <= 0xff) {
    out[pos] = 0xcc;
    out[pos + 1] = n;
    return pos + 2;
  }
  if (n <= 0xffff) {
    out[pos] = 0xcd;
    out.writeUInt16BE(n, pos + 1);
    return pos + 3;
  }
  out[pos] = 0xce;
  out.writeUInt32BE(n, pos + 1);
  return pos + 5;
}
