/**
 * The server's byte stream is read incrementally: an ack split over any number of `data`
 * events, or several acks in one, come out as whole messages, in order.
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { encode } from '@msgpack/msgpack';
import { MessageReader, ProtocolError, decodeOne, type Value } from '../../../plugin/output/forward/reader.ts';

const ack = (id: string) => Buffer.concat([Buffer.from('81a361636b', 'hex'), Buffer.of(0xa0 | id.length), Buffer.from(id)]);
const ids = ['AAAAAAAAAAAAAAAAAAAAAA==', 'BBBBBBBBBBBBBBBBBBBBBB==', 'CCCCCCCCCCCCCCCCCCCCCC=='];
const stream = Buffer.concat(ids.map(ack));

function drain(r: MessageReader): string[] {
  const out: string[] = [];
  for (let m = r.next(); m !== undefined; m = r.next()) {
    const v = (m as Map<string, Value>).get('ack') as Buffer;
    out.push(v.toString('latin1'));
  }
  return out;
}

test('acks coalesced in one data event come out one by one', () => {
  const r = new MessageReader();
  r.push(stream);
  assert.deepEqual(drain(r), ids);
  assert.equal(r.buffered, 0);
});

test('acks split at every possible byte boundary come out whole and in order', () => {
  for (let cut = 1; cut < stream.length; cut++) {
    const r = new MessageReader();
    const got: string[] = [];
    r.push(stream.subarray(0, cut));
    got.push(...drain(r));
    r.push(stream.subarray(cut));
    got.push(...drain(r));
    assert.deepEqual(got, ids, `cut at ${cut}`);
  }
});

test('acks delivered one byte per data event', () => {
  const r = new MessageReader();
  const got: string[] = [];
  for (const b of stream) {
    r.push(Buffer.of(b));
    got.push(...drain(r));
  }
  assert.deepEqual(got, ids);
});

test('every msgpack type a server could send decodes; str and bin stay bytes', () => {
  const value = { ack: 'x', n: [0, 127, 128, 65535, 65536, 2 ** 32, -1, -33, -129, -40000, -(2 ** 31) - 1, 1.5], t: true, f: false, z: null, b: new Uint8Array([1, 2]), m: { k: 'v' } };
  const v = decodeOne(Buffer.from(encode(value))) as Map<string, Value>;
  assert.deepEqual(v.get('n'), value.n);
  assert.equal(v.get('t'), true);
  assert.equal(v.get('z'), null);
  assert.deepEqual(v.get('b'), Buffer.of(1, 2));
  assert.deepEqual(v.get('ack'), Buffer.from('x'));
  assert.deepEqual((v.get('m') as Map<string, Value>).get('k'), Buffer.from('v'));
});

test('garbage is a protocol error, not a hang', () => {
  const r = new MessageReader();
  r.push(Buffer.of(0xc1));
  assert.throws(() => r.next(), ProtocolError);
  const small = new MessageReader(16);
  small.push(Buffer.concat([Buffer.of(0xdb, 0, 1, 0, 0), Buffer.alloc(20)])); // a 64 KiB str that never ends
  assert.throws(() => small.next(), /without completing a message/);
});
