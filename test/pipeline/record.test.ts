import { test } from 'node:test';
import assert from 'node:assert/strict';
import { buildRecord, encodeWithinFrame, type RecordOrigin } from '../../plugin/pipeline/record.ts';
import type { OutputRecord, Sink } from '../../plugin/output/sink.ts';
import { MemorySink } from '../helpers/memory-sink.ts';

const origin: RecordOrigin = { tag: 'mail.proofpoint.tap.clicks', source: 'proofpoint_tap', service: 'clicksBlocked', inputId: 'tap1', pullingId: 3 };
const NOW = Date.UTC(2026, 10, 23, 12, 0, 0, 250);

test('a record is the vendor event whole plus its origin, in a fixed field order', () => {
  const rec = buildRecord({ key: 'k', time: { sec: 1_700_000_000, nsec: 5 }, message: '{"id":"a","x":[1,2]}' }, origin, NOW);
  assert.deepEqual(rec.time, { sec: 1_700_000_000, nsec: 5 });
  // Byte for byte: the key order is part of the record.
  assert.equal(
    JSON.stringify(rec.record),
    '{"message":"{\\"id\\":\\"a\\",\\"x\\":[1,2]}","devo_tag":"mail.proofpoint.tap.clicks","source":"proofpoint_tap","service":"clicksBlocked","input_id":"tap1","pulling_id":3}',
  );
});

test('an event time out of range is replaced and the record says so (time_clamped, last)', () => {
  const before1970 = buildRecord({ time: { sec: -5, nsec: 0 }, message: '{}' }, origin, NOW);
  assert.deepEqual(before1970.time, { sec: 0, nsec: 0 });
  assert.equal(before1970.record.time_clamped, true);
  assert.equal(Object.keys(before1970.record).at(-1), 'time_clamped');
  const unknown = buildRecord({ time: { sec: Number.NaN, nsec: 0 }, message: '{}' }, origin, NOW);
  assert.deepEqual(unknown.time, { sec: Math.floor(NOW / 1000), nsec: 250_000_000 }, 'receipt time from the injected now');
  assert.equal('time_clamped' in buildRecord({ time: { sec: 1, nsec: 0 }, message: '{}' }, origin, NOW).record, false);
});

test('the record-size check passes a record at the frame limit and refuses one byte more, naming both sizes', () => {
  const sink = new MemorySink();
  const rec = buildRecord({ time: { sec: 1, nsec: 0 }, message: 'x'.repeat(100) }, origin, NOW);
  const size = sink.encode(rec).length;
  const fits = encodeWithinFrame(sink, rec, size);
  assert.equal(fits.ok, true);
  assert.deepEqual(fits.ok && fits.bytes, sink.encode(rec));
  const over = encodeWithinFrame(sink, rec, size - 1);
  assert.deepEqual(over, {
    ok: false,
    reason: `record of ${size} bytes is larger than the largest frame allows (${size - 1} bytes; output.max_frame_bytes)`,
  });
});

test('a record the encoder cannot write is refused with the encoder\'s reason, not thrown', () => {
  const sink = {
    encode(_rec: OutputRecord): Buffer {
      throw new Error('string too long for a str32');
    },
  } as unknown as Sink;
  const r = encodeWithinFrame(sink, buildRecord({ time: { sec: 1, nsec: 0 }, message: 'm' }, origin, NOW), 1_000);
  assert.deepEqual(r, { ok: false, reason: 'cannot be encoded: string too long for a str32' });
});
