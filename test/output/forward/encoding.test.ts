/**
 * EventTime, entries and PackedForward frames, byte for byte against the Forward Protocol v1
 * layout (expected bytes written by hand), and the exactness of the size arithmetic that keeps
 * frames under Fluent Bit's buffer_max_size.
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { decode, decodeMulti, ExtensionCodec } from '@msgpack/msgpack';
import { encodeEventTime } from '../../../plugin/output/forward/event-time.ts';
import {
  CHUNK_ID_CHARS,
  encodeEntry,
  encodePackedForward,
  frameOverhead,
  maxEntryBytes,
  newChunkId,
  packedForwardSize,
} from '../../../plugin/output/forward/encoder.ts';

const hex = (s: string) => Buffer.from(s.replace(/\s+/g, ''), 'hex');
const ascii = (s: string) => Buffer.from(s, 'latin1').toString('hex');

test('EventTime is fixext8 type 0 with big-endian seconds then nanoseconds', () => {
  // 1795355887 = 0x6b02f4ef, 123456789 = 0x075bcd15 (the value Fluent Bit printed as 1795355887.123457).
  assert.deepEqual(encodeEventTime({ sec: 1795355887, nsec: 123456789 }), hex('d7 00 6b02f4ef 075bcd15'));
  assert.deepEqual(encodeEventTime({ sec: 0, nsec: 0 }), hex('d7 00 00000000 00000000'));
  assert.deepEqual(encodeEventTime({ sec: 0xfffffffd, nsec: 999_999_999 }), hex('d7 00 fffffffd 3b9ac9ff'));
});

test('EventTime refuses values it cannot represent, and Fluent Bit group markers', () => {
  assert.throws(() => encodeEventTime({ sec: -1, nsec: 0 }), RangeError);
  assert.throws(() => encodeEventTime({ sec: 0xfffffffe, nsec: 0 }), /seconds/);
  assert.throws(() => encodeEventTime({ sec: 1.5, nsec: 0 }), /seconds/);
  assert.throws(() => encodeEventTime({ sec: 1, nsec: 1_000_000_000 }), /nanoseconds/);
});

test('an entry is [EventTime, record] with plain msgpack maps, undefined as nil, no msgpackr records', () => {
  const e = encodeEntry({ time: { sec: 1795355887, nsec: 123456789 }, record: { a: 1, u: undefined } });
  // 92 | d7 00 <sec> <nsec> | map16(2): "a" 1, "u" nil   (msgpackr writes every map as map16)
  assert.equal(e.toString('hex'), hex(`92 d7006b02f4ef075bcd15 de0002 a161 01 a175 c0`).toString('hex'));

  const codec = new ExtensionCodec();
  codec.register({ type: 0, encode: () => null, decode: (d) => Buffer.from(d).toString('hex') });
  const rec = { message: 'é'.repeat(1000), n: -5, f: 1.5, nested: { list: [1, 'two', null, true] } };
  const again = encodeEntry({ time: { sec: 1, nsec: 2 }, record: rec });
  assert.deepEqual(decode(again, { extensionCodec: codec }), ['0000000100000002', rec]);
});

test('entries stay valid after many more are encoded (msgpackr never reuses returned bytes)', () => {
  const first = encodeEntry({ time: { sec: 7, nsec: 8 }, record: { k: 'first' } });
  const copy = Buffer.from(first);
  for (let i = 0; i < 20_000; i++) encodeEntry({ time: { sec: i, nsec: 0 }, record: { k: 'x'.repeat(i % 300) } });
  assert.deepEqual(first, copy);
});

test('a PackedForward frame is [tag, bin entries, {size, chunk}] byte for byte', () => {
  const entry = hex('92 d7006b02f4ef075bcd15 de0001 a161 01'); // 17 bytes
  const chunk = 'AAAAAAAAAAAAAAAAAAAAAA=='; // base64 of 16 zero bytes
  const frame = encodePackedForward('t.a', [entry, entry], chunk);
  const expected =
    '93' +
    'a3' + ascii('t.a') +
    'c4' + '22' + entry.toString('hex') + entry.toString('hex') + // bin8, 34 bytes
    '82' +
    'a4' + ascii('size') + '02' +
    'a5' + ascii('chunk') + 'b8' + ascii(chunk); // fixstr of 24 characters
  assert.equal(frame.toString('hex'), expected);
  assert.equal(frame.length, packedForwardSize(3, 2, 34));
});

test('frame headers grow to bin16/bin32, uint16 size and str8 tag exactly as sized', () => {
  const entry = Buffer.alloc(300, 0xc0);
  const tag = 'x'.repeat(40); // str8
  const chunk = newChunkId();
  const frame = encodePackedForward(tag, Array.from({ length: 300 }, () => entry), chunk);
  const payload = 300 * 300; // 90,000 bytes: bin32
  assert.equal(frame.subarray(0, 3).toString('hex'), '93d928');
  assert.equal(frame.subarray(43, 48).toString('hex'), 'c6' + payload.toString(16).padStart(8, '0'));
  const tail = frame.subarray(48 + payload);
  assert.equal(tail.toString('hex'), '82' + 'a4' + ascii('size') + 'cd012c' + 'a5' + ascii('chunk') + 'b8' + ascii(chunk));
  assert.equal(frame.length, packedForwardSize(40, 300, payload));
  assert.equal(frameOverhead(tag, 300, payload), frame.length - payload);

  const mid = encodePackedForward('t', Array.from({ length: 2 }, () => entry), chunk);
  assert.equal(mid.subarray(0, 6).toString('hex'), '93' + 'a174' + 'c50258'); // fixstr "t", bin16 of 600 bytes
});

test('a frame built by the encoder decodes with an independent msgpack implementation', () => {
  const entries = [0, 1, 2].map((i) => encodeEntry({ time: { sec: 100 + i, nsec: i }, record: { i, s: `r${i}` } }));
  const id = newChunkId();
  const [tag, payload, option] = decode(encodePackedForward('mail.proofpoint.pod.maillog', entries, id)) as [string, Uint8Array, object];
  assert.equal(tag, 'mail.proofpoint.pod.maillog');
  assert.ok(payload instanceof Uint8Array);
  assert.deepEqual(option, { size: 3, chunk: id });
  const codec = new ExtensionCodec();
  codec.register({ type: 0, encode: () => null, decode: (d) => [Buffer.from(d).readUInt32BE(0), Buffer.from(d).readUInt32BE(4)] });
  assert.deepEqual(
    [...decodeMulti(payload, { extensionCodec: codec })],
    [0, 1, 2].map((i) => [[100 + i, i], { i, s: `r${i}` }]),
  );
});

test('chunk ids are base64 of 16 random bytes, 24 characters, all different', () => {
  const ids = new Set(Array.from({ length: 1000 }, newChunkId));
  assert.equal(ids.size, 1000);
  for (const id of ids) {
    assert.equal(id.length, CHUNK_ID_CHARS);
    assert.equal(Buffer.from(id, 'base64').length, 16);
  }
});

test('maxEntryBytes is exact: that entry alone makes a frame of exactly max_frame_bytes, one byte more does not fit', () => {
  for (const tag of ['t', 'mail.proofpoint.tapsiem_v2.messagesdelivered', 'é'.repeat(20)]) {
    for (const maxFrame of [65_536, 4_000_000, 6_000_000]) {
      const max = maxEntryBytes(tag, maxFrame);
      const frame = encodePackedForward(tag, [Buffer.alloc(max)], newChunkId());
      assert.equal(frame.length, maxFrame, `${tag} / ${maxFrame}`);
      assert.ok(packedForwardSize(Buffer.byteLength(tag), 1, max + 1) > maxFrame);
    }
  }
  // Around the bin8/bin16 boundaries the largest fitting entry may leave a byte or two unused.
  for (let maxFrame = 40; maxFrame < 400; maxFrame++) {
    const max = maxEntryBytes('t', maxFrame);
    if (max === 0) continue;
    assert.ok(packedForwardSize(1, 1, max) <= maxFrame, `fits at ${maxFrame}`);
    assert.ok(packedForwardSize(1, 1, max + 1) > maxFrame, `largest at ${maxFrame}`);
  }
});
