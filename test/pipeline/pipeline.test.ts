import { test } from 'node:test';
import assert from 'node:assert/strict';
import { readFileSync } from 'node:fs';
import { Pipeline } from '../../plugin/pipeline/pipeline.ts';
import { StateStore } from '../../plugin/state/store.ts';
import type { Batch, SourceContext } from '../../plugin/sources/source.ts';
import { MemorySink } from '../helpers/memory-sink.ts';
import { ScriptedSource, ev, spec } from '../helpers/scripted-source.ts';
import { FakeClock, flushMicrotasks } from '../helpers/fake-clock.ts';
import { tmpDir } from '../helpers/tmp.ts';

async function until(cond: () => boolean, what: string, ms = 5_000): Promise<void> {
  const end = Date.now() + ms;
  while (!cond()) {
    if (Date.now() > end) throw new Error(`timed out waiting for ${what}`);
    await new Promise((r) => setTimeout(r, 2));
  }
}

test('records carry the event and its origin under the service tag', async () => {
  const store = await StateStore.open(tmpDir());
  const sink = new MemorySink();
  const src = new ScriptedSource('100001', [spec('maillog', { tag: 'mail.proofpoint.pod.maillog' })], [
    { service: 'maillog', pullingId: 7, events: [ev('a', '{"id":"a","ts":"x"}', 1_700_000_000_123)], cursor: { ts: 'x' } },
  ], 'proofpoint_on_demand');
  const p = new Pipeline({ store, sink, sources: [src] });
  await p.start();
  await p.done;
  await p.stop(1_000);
  assert.equal(sink.records.length, 1);
  const r = sink.records[0]!;
  assert.equal(r.tag, 'mail.proofpoint.pod.maillog');
  assert.deepEqual(r.time, { sec: 1_700_000_000, nsec: 123_000_000 });
  assert.deepEqual(r.record, {
    message: '{"id":"a","ts":"x"}',
    devo_tag: 'mail.proofpoint.pod.maillog',
    source: 'proofpoint_on_demand',
    service: 'maillog',
    input_id: '100001',
    pulling_id: 7,
  });
  assert.deepEqual((await store.getCursor('100001', 'maillog'))?.cursor, { ts: 'x' });
  await store.close();
});

test('an ack out of order never moves the cursor past an unacknowledged batch', async () => {
  const store = await StateStore.open(tmpDir());
  const sink = new MemorySink({ holdAcks: true });
  const committed: number[] = [];
  const b = (n: number): Batch => ({
    service: 's',
    pullingId: 1,
    events: [ev(`k${n}`)],
    cursor: n,
    onCommitted: () => committed.push(n),
  });
  const src = new ScriptedSource('i', [spec('s')], [b(1), b(2), b(3)]);
  const p = new Pipeline({ store, sink, sources: [src] });
  await p.start();
  await until(() => sink.held.length === 3, 'three sends');
  const [s1, s2, s3] = sink.held.map((h) => h.id);

  sink.release([s3!, s2!]);
  await flushMicrotasks();
  assert.equal(await store.getCursor('i', 's'), undefined, 'cursor must wait for batch 1');
  assert.deepEqual(committed, []);
  // Keys of acknowledged-but-uncommitted batches are not persisted either.
  assert.deepEqual(await store.seen.has('i::s', ['k2', 'k3']), [false, false]);

  sink.release([s1!]);
  await until(() => committed.length === 3, 'commits');
  assert.deepEqual(committed, [1, 2, 3]);
  assert.equal((await store.getCursor('i', 's'))?.cursor, 3);
  assert.deepEqual(await store.seen.has('i::s', ['k1', 'k2', 'k3']), [true, true, true]);
  await p.stop(1_000);
  await store.close();
});

test('duplicates are dropped whether committed, in flight or repeated in a batch, and counted', async () => {
  const dir = tmpDir();
  let store = await StateStore.open(dir);
  let sink = new MemorySink({ holdAcks: true });
  const outcomes: unknown[] = [];
  let src = new ScriptedSource('i', [spec('s')], [
    { service: 's', pullingId: 1, events: [ev('a'), ev('b'), ev('a')], cursor: 1, onCommitted: (o) => outcomes.push(o) },
    // b is in flight (sent, not acknowledged) when this batch arrives.
    { service: 's', pullingId: 1, events: [ev('b'), ev('c'), ev(undefined, 'no key'), ev(undefined, 'no key')], cursor: 2, onCommitted: (o) => outcomes.push(o) },
  ]);
  let p = new Pipeline({ store, sink, sources: [src] });
  await p.start();
  await until(() => sink.held.length === 2, 'two sends');
  sink.release();
  await until(() => outcomes.length === 2, 'commits');
  await p.stop(1_000);
  await store.close();
  assert.deepEqual(
    sink.records.map((r) => (r.record.message as string)),
    ['{"id":"a"}', '{"id":"b"}', '{"id":"c"}', 'no key', 'no key'],
  );
  assert.deepEqual(outcomes, [
    { received: 3, duplicates: 1, sent: 2, deadLettered: 0 },
    { received: 4, duplicates: 1, sent: 3, deadLettered: 0 },
  ]);

  // After a restart the committed keys still filter.
  store = await StateStore.open(dir);
  sink = new MemorySink();
  src = new ScriptedSource('i', [spec('s')], [{ service: 's', pullingId: 2, events: [ev('a'), ev('c'), ev('d')], cursor: 3 }]);
  p = new Pipeline({ store, sink, sources: [src] });
  await p.start();
  await p.done;
  await p.stop(1_000);
  assert.deepEqual(sink.records.map((r) => r.record.message), ['{"id":"d"}']);
  const c = p.counters()[0]!;
  assert.equal(c.duplicates, 2);
  assert.equal(c.sent, 1);
  await store.close();
});

test('a full sink pauses the source; nothing is dropped, and it resumes when acks come', async () => {
  const store = await StateStore.open(tmpDir());
  const sink = new MemorySink({ holdAcks: true, queueMaxBytes: 2_000 });
  let produced = 0;
  const src = new ScriptedSource('i', [spec('s')], async function* () {
    for (let n = 0; n < 200; n++) {
      produced++;
      yield { service: 's', pullingId: 1, events: [ev(`k${n}`, 'x'.repeat(400))], cursor: n };
    }
  });
  const p = new Pipeline({ store, sink, sources: [src] });
  await p.start();
  await until(() => sink.pendingBytes >= 2_000, 'queue to fill');
  await new Promise((r) => setTimeout(r, 50));
  const pulledWhileFull = src.pulled;
  assert.ok(pulledWhileFull < 10, `source must be paused, pulled ${pulledWhileFull}`);
  assert.ok(produced <= pulledWhileFull + 1);
  assert.ok(sink.pendingBytes < 2_000 + 1_000, 'queue bounded');

  while (sink.records.length < 200) {
    sink.release();
    await new Promise((r) => setTimeout(r, 1));
  }
  await p.done;
  await p.stop(1_000);
  assert.equal(sink.records.length, 200);
  assert.deepEqual(new Set(sink.records.map((r) => r.record.message)).size, 1);
  assert.equal((await store.getCursor('i', 's'))?.cursor, 199);
  await store.close();
});

test('a record too large for any frame and rejected input go to the dead-letter file; the stream goes on', async () => {
  const dir = tmpDir();
  const store = await StateStore.open(dir);
  const sink = new MemorySink({ maxRecordBytes: 1_000 });
  const huge = 'y'.repeat(5_000);
  const src = new ScriptedSource('i', [spec('s')], [
    {
      service: 's',
      pullingId: 1,
      events: [ev('a'), ev('big', huge), ev('b')],
      rejected: [{ reason: 'frame is not a JSON object', raw: 'not json{' }],
      cursor: 1,
    },
    { service: 's', pullingId: 1, events: [ev('c')], cursor: 2 },
  ]);
  const p = new Pipeline({ store, sink, sources: [src] });
  await p.start();
  await p.done;
  await p.stop(1_000);
  assert.deepEqual(sink.records.map((r) => r.record.message), ['{"id":"a"}', '{"id":"b"}', '{"id":"c"}']);
  const lines = readFileSync(p.deadLetterPath, 'utf8').trim().split('\n').map((l) => JSON.parse(l));
  assert.equal(lines.length, 2);
  assert.equal(lines[0].raw, huge, 'kept whole');
  assert.match(lines[0].reason, /larger than the largest frame/);
  assert.equal(lines[1].raw, 'not json{');
  assert.equal(lines[1].input, 'i');
  assert.equal(p.counters()[0]!.deadLettered, 2);
  assert.equal((await store.getCursor('i', 's'))?.cursor, 2);
  await store.close();
});

test('stop drains acknowledged batches and commits them; unacknowledged ones leave the state unclean', async () => {
  const dir = tmpDir();
  const store = await StateStore.open(dir);
  const sink = new MemorySink({ holdAcks: true });
  const src = new ScriptedSource('i', [spec('s')], async function* (ctx: SourceContext) {
    yield { service: 's', pullingId: 1, events: [ev('a')], cursor: 1 };
    yield { service: 's', pullingId: 1, events: [ev('b')], cursor: 2 };
    await new Promise((r) => ctx.signal.addEventListener('abort', r, { once: true }));
  });
  const p = new Pipeline({ store, sink, sources: [src] });
  await p.start();
  await until(() => sink.held.length === 2, 'sends');
  sink.release([sink.held[0]!.id]);
  const r = await p.stop(200);
  assert.deepEqual(r, { clean: false, uncommittedBatches: 1, failedSources: [] });
  assert.equal((await store.getCursor('i', 's'))?.cursor, 1);
  await store.close({ clean: r.clean });
  const again = await StateStore.open(dir);
  assert.equal(again.uncleanShutdown, true);
  await again.close();
});

test('a failing source is reported failed while the others go on', async () => {
  const store = await StateStore.open(tmpDir());
  const sink = new MemorySink();
  const bad = new ScriptedSource('bad', [spec('x')], async function* () {
    yield { service: 'x', pullingId: 1, events: [ev('1')], cursor: 1 };
    throw Object.assign(new Error('TAP answered 401: bad credentials'), { code: 100 });
  });
  const good = new ScriptedSource('good', [spec('y')], [
    { service: 'y', pullingId: 1, events: [ev('1')], cursor: 1 },
    { service: 'y', pullingId: 1, events: [ev('2')], cursor: 2 },
  ]);
  const p = new Pipeline({ store, sink, sources: [bad, good] });
  await p.start();
  await p.done;
  await p.stop(1_000);
  assert.equal(p.health.get('bad', 'x')?.status, 'failed');
  assert.match(p.health.get('bad', 'x')?.reason ?? '', /401/);
  assert.equal((await store.getCursor('good', 'y'))?.cursor, 2);
  assert.equal(sink.records.filter((r) => r.record.input_id === 'good').length, 2);
  await store.close();
});

test('sources see the committed cursor, unclean shutdown, and which services were reset', async () => {
  const dir = tmpDir();
  let store = await StateStore.open(dir);
  await store.applyStartTime('i', 's', '2026-11-20T00:00:00Z');
  await store.applyStartTime('i', 't', '2026-11-20T00:00:00Z');
  await store.commit({ input: 'i', service: 's', cursor: 'S', keys: [], keysTtlMs: 0 });
  await store.commit({ input: 'i', service: 't', cursor: 'T', keys: [], keysTtlMs: 0 });
  await store.close({ clean: false });

  store = await StateStore.open(dir);
  const seen: unknown[] = [];
  const src = new ScriptedSource('i', [spec('s', { startTime: '2026-11-21T00:00:00Z' }), spec('t', { startTime: '2026-11-20T00:00:00Z' })], async function* (ctx) {
    seen.push(await ctx.cursor('s'), await ctx.cursor('t'), ctx.uncleanShutdown, [...ctx.resetServices]);
  });
  const p = new Pipeline({ store, sink: new MemorySink(), sources: [src] });
  await p.start();
  await p.done;
  await p.stop(1_000);
  assert.deepEqual(seen, [undefined, 'T', true, ['s']]);
  await store.close();
});

test('the periodic sweep runs on the injected clock', async () => {
  const clock = new FakeClock();
  const store = await StateStore.open(tmpDir(), { clock });
  const sink = new MemorySink();
  const src = new ScriptedSource('i', [spec('s', { dedupMaxAgeMs: 10_000 })], async function* (ctx) {
    yield { service: 's', pullingId: 1, events: [ev('a'), ev('b')], cursor: 1 };
    await new Promise((r) => ctx.signal.addEventListener('abort', r, { once: true }));
  });
  const p = new Pipeline({ store, sink, sources: [src], clock, sweepIntervalMs: 60_000 });
  await p.start();
  await until(() => store.seen.count('i::s') === 2, 'commit');
  await clock.advance(61_000);
  await until(() => store.seen.count('i::s') === 0, 'sweep');
  await p.stop(1_000);
  await store.close();
});
