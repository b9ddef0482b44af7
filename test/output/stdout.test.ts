/**
 * The stdout output: one JSON line per record, acknowledged by the write callback, and no
 * writing past the stream's backpressure.
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { Writable } from 'node:stream';
import { StdoutSink, formatEventTime } from '../../plugin/output/stdout.ts';
import { ErrorCode, type SidecarError } from '../../plugin/errors.ts';
import { waitUntil } from '../helpers/forward-receiver.ts';

/** A stream that completes writes only when told to. */
class SlowStream extends Writable {
  readonly lines: string[] = [];
  readonly #pending: (() => void)[] = [];
  constructor(highWaterMark: number) {
    super({ highWaterMark });
  }
  override _write(chunk: Buffer, _enc: BufferEncoding, cb: (err?: Error | null) => void): void {
    this.#pending.push(() => {
      this.lines.push(...chunk.toString('utf8').split('\n').filter(Boolean));
      cb();
    });
  }
  get waiting(): number {
    return this.#pending.length;
  }
  completeOne(): void {
    this.#pending.shift()?.();
  }
}

const cfg = { type: 'stdout' as const, queue_max_bytes: 10_000, max_frame_bytes: 4_000_000 };

test('RFC 3339 time with nanoseconds', () => {
  assert.equal(formatEventTime({ sec: 1795355887, nsec: 123456789 }), '2026-11-22T13:58:07.123456789Z');
  assert.equal(formatEventTime({ sec: 0, nsec: 5 }), '1970-01-01T00:00:00.000000005Z');
});

test('one JSON line per record, acknowledged when written', async () => {
  const out = new SlowStream(1 << 20);
  const sink = new StdoutSink(cfg, { stream: out });
  const recs = [
    { time: { sec: 1795355887, nsec: 1 }, record: { a: 'x"y', n: 1 } },
    { time: { sec: 1795355888, nsec: 2 }, record: { nested: { list: [1, null] } } },
  ];
  const sent = sink.send('mail.proofpoint.pod.message', recs.map((r) => sink.encode(r)));
  let done = false;
  void sent.then(() => (done = true));
  await waitUntil(() => out.waiting === 1, 'write');
  assert.equal(done, false, 'not acknowledged before the write completes');
  assert.equal(sink.stats().pendingRecords, 2);
  out.completeOne();
  await sent;
  assert.deepEqual(
    out.lines.map((l) => JSON.parse(l)),
    [
      { tag: 'mail.proofpoint.pod.message', time: '2026-11-22T13:58:07.000000001Z', record: recs[0]!.record },
      { tag: 'mail.proofpoint.pod.message', time: '2026-11-22T13:58:08.000000002Z', record: recs[1]!.record },
    ],
  );
  assert.equal(sink.stats().pendingRecords, 0);
  assert.equal(await sink.close(100), 0);
});

test('backpressure: nothing more is written until drain, waitForCapacity blocks at queue_max_bytes', async () => {
  const out = new SlowStream(1000);
  const sink = new StdoutSink(cfg, { stream: out });
  const enc = (i: number) => [sink.encode({ time: { sec: 1, nsec: 0 }, record: { i, pad: 'p'.repeat(1500) } })];
  const sends: Promise<void>[] = [];
  let produced = 0;
  const producer = (async () => {
    for (let i = 0; i < 20; i++) {
      await sink.waitForCapacity();
      sends.push(sink.send('t', enc(i)));
      produced++;
    }
  })();
  await waitUntil(() => out.waiting === 1, 'first write');
  await new Promise((r) => setTimeout(r, 30));
  assert.equal(out.waiting, 1, 'the stream said stop after the first write: the sink waits for drain');
  assert.ok(produced < 20 && sink.stats().pendingBytes >= 10_000, 'producer held back at queue_max_bytes');
  assert.ok(sink.stats().pendingBytes < 10_000 + 1600);
  while (out.lines.length < 20) {
    out.completeOne();
    await new Promise((r) => setImmediate(r));
  }
  await producer;
  await Promise.all(sends);
  assert.deepEqual(out.lines.map((l) => JSON.parse(l).record.i), Array.from({ length: 20 }, (_, i) => i));
});

test('a record over max_frame_bytes is refused; close reports what was not written', async () => {
  const out = new SlowStream(1 << 20);
  const sink = new StdoutSink({ ...cfg, max_frame_bytes: 100 }, { stream: out });
  const big = sink.encode({ time: { sec: 1, nsec: 0 }, record: { pad: 'x'.repeat(200) } });
  await assert.rejects(sink.send('t', [big]), (e: SidecarError) => e.code === ErrorCode.RECORD_TOO_LARGE);
  const small = sink.encode({ time: { sec: 1, nsec: 0 }, record: {} });
  assert.ok(small.length <= sink.maxRecordBytes('t'));
  const pending = sink.send('t', [small]);
  const rejected = assert.rejects(pending, /closed with 1 records not written/);
  assert.equal(await sink.close(20), 1);
  await rejected;
});
