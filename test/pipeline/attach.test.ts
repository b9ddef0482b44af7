/**
 * Pipeline.attach: one source started and stopped on a running pipeline, as a feed is
 * when its Lease comes and goes. Its batches commit like a static source's; stopping it waits for
 * what it sent; a later attachment of the same input goes on from the committed cursor.
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { Pipeline } from '../../plugin/pipeline/pipeline.ts';
import { StateStore } from '../../plugin/state/store.ts';
import type { Batch, SourceContext } from '../../plugin/sources/source.ts';
import { MemorySink } from '../helpers/memory-sink.ts';
import { ScriptedSource, ev, spec } from '../helpers/scripted-source.ts';
import { FakeClock, flushMicrotasks } from '../helpers/fake-clock.ts';
import { tmpDir } from '../helpers/tmp.ts';
import { until, untilAborted } from '../helpers/wait.ts';


/** Yields `batches`, then waits for the signal (a poller with nothing new) and returns. */
function feedSource(id: string, services: string[], batches: Batch[], log?: string[]): ScriptedSource {
  return new ScriptedSource(id, services.map((s) => spec(s)), async function* (ctx: SourceContext) {
    log?.push('start');
    try {
      yield* batches;
      await untilAborted(ctx.signal);
    } finally {
      log?.push('returned');
    }
  });
}

async function running(opts: { sink?: MemorySink; clock?: FakeClock; userAgent?: string; dedupMaxKeys?: number; sweepIntervalMs?: number } = {}) {
  const store = await StateStore.open(tmpDir(), opts.clock ? { clock: opts.clock } : {});
  const sink = opts.sink ?? new MemorySink();
  const p = new Pipeline({
    store,
    sink,
    sources: [],
    ...(opts.clock ? { clock: opts.clock } : {}),
    ...(opts.userAgent ? { userAgent: opts.userAgent } : {}),
    ...(opts.dedupMaxKeys ? { dedupMaxKeys: opts.dedupMaxKeys } : {}),
    ...(opts.sweepIntervalMs ? { sweepIntervalMs: opts.sweepIntervalMs } : {}),
  });
  await p.start();
  return { store, sink, p };
}

test('a source attached to a running pipeline without static sources runs and its batches commit', async () => {
  const { store, sink, p } = await running();
  const src = feedSource('tap', ['clicksBlocked'], [
    { service: 'clicksBlocked', pullingId: 1, events: [ev('a'), ev('b')], cursor: { n: 1 } },
    { service: 'clicksBlocked', pullingId: 2, events: [ev('c')], cursor: { n: 2 } },
  ]);
  const h = await p.attach(src);
  await until(() => sink.records.length === 3, 'three records');
  await until(() => p.counters()[0]?.batchesCommitted === 2, 'two commits');
  assert.deepEqual((await store.getCursor('tap', 'clicksBlocked'))?.cursor, { n: 2 });
  assert.deepEqual(sink.records.map((r) => r.record.input_id), ['tap', 'tap', 'tap']);
  await h.stop('test over');
  await p.stop(1_000);
  await store.close();
});

test('stop() aborts the source, which returns, and resolves only after the batches it sent are committed', async () => {
  const sink = new MemorySink({ holdAcks: true });
  const { store, p } = await running({ sink });
  const log: string[] = [];
  const src = feedSource('tap', ['clicksBlocked', 'messagesDelivered'], [
    { service: 'clicksBlocked', pullingId: 1, events: [ev('a')], cursor: { n: 1 } },
    { service: 'messagesDelivered', pullingId: 1, events: [ev('m')], cursor: { n: 7 } },
  ], log);
  const h = await p.attach(src);
  await until(() => sink.held.length === 2, 'two sends');
  assert.equal(src.ctx!.signal.aborted, false);

  let stopped = false;
  const stopping = h.stop('feed lost: taken by replica-b').then(() => {
    stopped = true;
  });
  assert.equal(src.ctx!.signal.aborted, true, 'the signal aborts at once');
  await h.loop;
  assert.deepEqual(log, ['start', 'returned'], 'the source waiting on the signal returned');
  await flushMicrotasks();
  assert.equal(stopped, false, 'stop waits for the acknowledgements');
  assert.equal(await store.getCursor('tap', 'clicksBlocked'), undefined);

  sink.release();
  await stopping;
  assert.deepEqual((await store.getCursor('tap', 'clicksBlocked'))?.cursor, { n: 1 });
  assert.deepEqual((await store.getCursor('tap', 'messagesDelivered'))?.cursor, { n: 7 });
  assert.equal(p.pendingBatches(), 0);
  for (const svc of ['clicksBlocked', 'messagesDelivered']) {
    const health = p.health.get('tap', svc);
    assert.equal(health?.status, 'stopped', svc);
    assert.equal(health?.reason, 'feed lost: taken by replica-b', svc);
  }
  const r = await p.stop(1_000);
  assert.deepEqual(r, { clean: true, uncommittedBatches: 0, failedSources: [] });
  await store.close();
});

test('a new attachment of the same input continues from the committed cursor and counters keep adding up', async () => {
  const { store, sink, p } = await running();
  const first = feedSource('tap', ['clicksBlocked'], [
    { service: 'clicksBlocked', pullingId: 1, events: [ev('a'), ev('b')], cursor: { n: 1 } },
    { service: 'clicksBlocked', pullingId: 2, events: [ev('c')], cursor: { n: 2 } },
  ]);
  const h1 = await p.attach(first);
  await until(() => p.counters()[0]?.batchesCommitted === 2, 'first commits');
  await h1.stop('released');

  const seen: unknown[] = [];
  const second = new ScriptedSource('tap', [spec('clicksBlocked')], async function* (ctx) {
    seen.push(await ctx.cursor('clicksBlocked'));
    yield { service: 'clicksBlocked', pullingId: 3, events: [ev('d')], cursor: { n: 3 } };
    await untilAborted(ctx.signal);
  });
  const h2 = await p.attach(second);
  await until(() => p.counters()[0]?.batchesCommitted === 3, 'third commit');
  assert.deepEqual(seen, [{ n: 2 }]);
  assert.deepEqual(second.ctx!.resetServices, new Set(), 'the same start time resets nothing');
  const counters = p.counters();
  assert.equal(counters.length, 1, 'one entry per (input, service), not per attachment');
  assert.equal(counters[0]!.received, 4);
  assert.equal(counters[0]!.sent, 4);
  assert.equal(counters[0]!.duplicates, 0);
  assert.equal(counters[0]!.batchesCommitted, 3);
  assert.deepEqual(counters[0]!.cursor, { n: 3 });
  assert.equal(p.health.get('tap', 'clicksBlocked')?.status, 'starting', 'the new attachment is not reported stopped');
  await h2.stop();
  assert.equal(p.health.get('tap', 'clicksBlocked')?.status, 'stopped');
  assert.equal(sink.records.length, 4);
  await p.stop(1_000);
  await store.close();
});

test('the source sees uncleanShutdown as attach says (default: the store flag) and the pipeline userAgent', async () => {
  const ua = 'proofpoint-sidecar/0.1.0 (replica replica-a)';
  const { store, p } = await running({ userAgent: ua });
  assert.equal(store.uncleanShutdown, false);
  const waitForever = (id: string) =>
    new ScriptedSource(id, [spec('s')], async function* (ctx) {
      await untilAborted(ctx.signal);
    });
  const unclean = waitForever('a');
  const plain = waitForever('b');
  const clean = waitForever('c');
  const handles = [
    await p.attach(unclean, { uncleanShutdown: true }),
    await p.attach(plain),
    await p.attach(clean, { uncleanShutdown: false }),
  ];
  await until(() => [unclean, plain, clean].every((s) => s.ctx !== undefined), 'sources to start');
  assert.equal(unclean.ctx!.uncleanShutdown, true);
  assert.equal(plain.ctx!.uncleanShutdown, false);
  assert.equal(clean.ctx!.uncleanShutdown, false);
  for (const s of [unclean, plain, clean]) assert.equal(s.ctx!.userAgent, ua);
  for (const h of handles) await h.stop();
  await p.stop(1_000);
  await store.close();
});

test('attach before start or after stop throws; stopping the pipeline stops attached sources', async () => {
  const store = await StateStore.open(tmpDir());
  const p = new Pipeline({ store, sink: new MemorySink(), sources: [] });
  await assert.rejects(p.attach(feedSource('tap', ['s'], [])), /not running/);
  await p.start();
  const log: string[] = [];
  const src = feedSource('tap', ['s'], [{ service: 's', pullingId: 1, events: [ev('a')], cursor: 1 }], log);
  const h = await p.attach(src);
  await until(() => p.counters()[0]?.batchesCommitted === 1, 'commit');
  const r = await p.stop(1_000);
  assert.deepEqual(r, { clean: true, uncommittedBatches: 0, failedSources: [] });
  assert.equal(src.ctx!.signal.aborted, true);
  await h.loop;
  assert.deepEqual(log, ['start', 'returned']);
  await assert.rejects(p.attach(feedSource('tap2', ['s'], [])), /not running/);
  assert.equal(p.counters().some((c) => c.input === 'tap2'), false, 'nothing of the refused source was set up');
  await store.close();
});

test('the de-dup sweep covers scopes of attached sources, and their keys de-duplicate across attachments', async () => {
  const clock = new FakeClock();
  const { store, sink, p } = await running({ clock, dedupMaxKeys: 2, sweepIntervalMs: 60_000 });
  const first = feedSource('tap', ['clicksBlocked'], [
    { service: 'clicksBlocked', pullingId: 1, events: [ev('a'), ev('b'), ev('c')], cursor: { n: 1 } },
  ]);
  const h1 = await p.attach(first);
  await until(() => store.seen.count('tap::clicksBlocked') === 3, 'three keys committed');
  await h1.stop('released');

  // The periodic sweep trims the stopped attachment's scope to dedup_max_keys (oldest first).
  await clock.advance(61_000);
  await until(() => store.seen.count('tap::clicksBlocked') === 2, 'sweep');
  assert.deepEqual(await store.seen.has('tap::clicksBlocked', ['a', 'b', 'c']), [false, true, true]);

  const outcomes: unknown[] = [];
  const second = feedSource('tap', ['clicksBlocked'], [
    {
      service: 'clicksBlocked',
      pullingId: 2,
      events: [ev('a'), ev('b'), ev('c'), ev('d')],
      cursor: { n: 2 },
      onCommitted: (o) => outcomes.push(o),
    },
  ]);
  const h2 = await p.attach(second);
  await until(() => outcomes.length === 1, 'second commit');
  assert.deepEqual(outcomes, [{ received: 4, duplicates: 2, sent: 2, deadLettered: 0 }]);
  assert.deepEqual(
    sink.records.map((r) => r.record.message),
    ['{"id":"a"}', '{"id":"b"}', '{"id":"c"}', '{"id":"a"}', '{"id":"d"}'],
    'b and c (committed by the first attachment) are not sent again; a was swept',
  );
  assert.equal(p.counters()[0]!.duplicates, 2);
  await h2.stop();
  await p.stop(1_000);
  await store.close();
});
