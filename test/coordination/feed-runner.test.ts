/**
 * FeedRunner: what a replica does when a feed's Lease comes and goes. With a real
 * StateStore and Pipeline: the carried state is adopted (the later cursor, under the same start
 * time; inherited request times counted once), a feed taken over uncleanly recovers as after a
 * crash, the snapshot carries what is committed, and a lost feed stops at once while its next run
 * waits for the previous one to stop and commit.
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { FeedRunner } from '../../plugin/coordination/feed-runner.ts';
import { decodeState, encodeState, STATE_ANNOTATION, type CarriedState } from '../../plugin/coordination/carried-state.ts';
import { fingerprint } from '../../plugin/pipeline/dedupe.ts';
import type { Acquisition } from '../../plugin/coordination/coordinator.ts';
import type { Feed } from '../../plugin/coordination/feeds.ts';
import { Pipeline } from '../../plugin/pipeline/pipeline.ts';
import { StateStore } from '../../plugin/state/store.ts';
import type { Batch, InputType, SourceContext } from '../../plugin/sources/source.ts';
import { createLogger, silentLogger } from '../../plugin/telemetry/logger.ts';
import { MemorySink } from '../helpers/memory-sink.ts';
import { ScriptedSource, ev, spec } from '../helpers/scripted-source.ts';
import { FakeClock, flushMicrotasks } from '../helpers/fake-clock.ts';
import { tmpDir } from '../helpers/tmp.ts';
import { until, untilAborted } from '../helpers/wait.ts';

const DAY = 24 * 3_600_000;
const TAP_SERVICES = ['clicksBlocked', 'messagesDelivered'];


/**
 * A ScriptedSource that keeps its context from the moment the pipeline calls run() (not only once
 * the first batch is pulled), notes when it starts and returns, and what cursors it saw at start.
 */
class FeedSource extends ScriptedSource {
  /** Committed cursors read through ctx.cursor at start, per service. */
  cursors?: Record<string, unknown>;
  readonly label: string;

  constructor(label: string, type: InputType, id: string, services: string[], timeline: string[], batches: Batch[], startTimes: Record<string, string | null>) {
    const names = services;
    super(
      id,
      services.map((s) => spec(s, startTimes[s] ? { startTime: startTimes[s]! } : {})),
      async function* (ctx: SourceContext) {
        timeline.push(`${label} start`);
        try {
          const seen: Record<string, unknown> = {};
          for (const s of names) seen[s] = await ctx.cursor(s);
          self.cursors = seen;
          yield* batches;
          await untilAborted(ctx.signal);
        } finally {
          timeline.push(`${label} stop`);
        }
      },
      type,
    );
    const self = this;
    this.label = label;
  }

  override run(ctx: SourceContext): AsyncIterable<Batch> {
    this.ctx = ctx;
    return super.run(ctx);
  }
}

interface TestFeed extends Feed {
  /** Every source create() made, in order. */
  sources: FeedSource[];
  /** Start and stop of every run of this feed's sources, in order. */
  timeline: string[];
  /** The batches the next source yields (then it waits for its signal). */
  next: Batch[];
}

/** An Acquisition as the coordinator hands it over; persist succeeds and is counted. */
const persisted: string[] = [];
function acq(o: Omit<Acquisition, 'persist' | 'adopted'>): Acquisition {
  return {
    ...o,
    persist: async () => {
      persisted.push(o.from);
      return true;
    },
    adopted: () => {},
  };
}

const byN = (a: unknown, b: unknown) => (a as { n: number }).n - (b as { n: number }).n;

function tapFeed(input = 'tap', startTimes: Record<string, string | null> = { clicksBlocked: null, messagesDelivered: null }): TestFeed {
  const feed: TestFeed = {
    id: `${input}/all`,
    lease: `pps-${input}-all`,
    type: 'proofpoint_tap',
    input,
    services: TAP_SERVICES,
    requestPools: ['shared', 'clicksPermitted'],
    requestWindowMs: DAY,
    startTimes,
    dedupTtlMs: Object.fromEntries(TAP_SERVICES.map((svc) => [svc, 3_600_000])),
    compareCursors: byN,
    sources: [],
    timeline: [],
    next: [],
    create() {
      const s = new FeedSource(`run${feed.sources.length + 1}`, 'proofpoint_tap', input, TAP_SERVICES, feed.timeline, feed.next, startTimes);
      feed.next = [];
      feed.sources.push(s);
      return s;
    },
  };
  return feed;
}

function podFeed(input = 'pod', startTime: string | null = null): TestFeed {
  const startTimes = { maillog: startTime };
  const feed: TestFeed = {
    id: `${input}/maillog`,
    lease: `pps-${input}-maillog`,
    type: 'proofpoint_on_demand',
    input,
    services: ['maillog'],
    requestPools: [],
    requestWindowMs: 0,
    startTimes,
    dedupTtlMs: { maillog: 3_600_000 },
    compareCursors: byN,
    sources: [],
    timeline: [],
    next: [],
    create() {
      const s = new FeedSource(`run${feed.sources.length + 1}`, 'proofpoint_on_demand', input, ['maillog'], feed.timeline, feed.next, startTimes);
      feed.next = [];
      feed.sources.push(s);
      return s;
    },
  };
  return feed;
}

async function replica(o: { dir?: string; sink?: MemorySink; clock?: FakeClock; logLines?: string[] } = {}) {
  const clock = o.clock ?? new FakeClock();
  const store = await StateStore.open(o.dir ?? tmpDir(), { clock });
  const sink = o.sink ?? new MemorySink();
  const pipeline = new Pipeline({ store, sink, sources: [], clock });
  await pipeline.start();
  const logger = o.logLines
    ? createLogger({ pretty: false, destination: { write: (line: string) => void o.logLines!.push(line) } })
    : silentLogger();
  const runner = new FeedRunner({ pipeline, store, clock, logger });
  return {
    clock,
    store,
    sink,
    pipeline,
    runner,
    async close() {
      await pipeline.stop(1_000);
      await store.close();
    },
  };
}

/** Local state as the pipeline leaves it: the start time recorded, then a committed cursor. */
async function localCursor(store: StateStore, input: string, service: string, cursor: unknown, startTime?: string): Promise<void> {
  await store.applyStartTime(input, service, startTime);
  await store.commit({ input, service, cursor, keys: [], keysTtlMs: 0 });
}

function carried(o: Partial<CarriedState> & Pick<CarriedState, 'cursors'>, now: number): CarriedState {
  return { v: 1, at: now, start_times: { clicksBlocked: null, messagesDelivered: null }, ...o };
}

/** Asserts that no two runs of a feed were ever running at the same time. */
function assertNoOverlap(timeline: string[]): void {
  let running: string | undefined;
  for (const e of timeline) {
    const [label, what] = e.split(' ');
    if (what === 'start') {
      assert.equal(running, undefined, `${label} started while ${running} was running: ${timeline.join(', ')}`);
      running = label;
    } else {
      assert.equal(running, label, `${label} stopped but ${running} was running: ${timeline.join(', ')}`);
      running = undefined;
    }
  }
}

test('acquired adopts a carried cursor later than the local one and keeps a local one that is later', async () => {
  const r = await replica();
  const feed = tapFeed();
  await localCursor(r.store, 'tap', 'clicksBlocked', { n: 5 });
  await localCursor(r.store, 'tap', 'messagesDelivered', { n: 9 });
  await r.runner.acquired(feed, acq({
    from: 'expired',
    previousHolder: 'replica-b',
    carried: carried({ cursors: { clicksBlocked: { n: 7 }, messagesDelivered: { n: 3 } } }, r.clock.now()),
  }));
  const src = feed.sources[0]!;
  await until(() => src.cursors !== undefined, 'source start');
  assert.deepEqual(src.cursors, { clicksBlocked: { n: 7 }, messagesDelivered: { n: 9 } });
  assert.deepEqual(src.ctx!.resetServices, new Set(), 'adoption is not a start-time change');
  assert.deepEqual((await r.store.getCursor('tap', 'clicksBlocked'))?.cursor, { n: 7 });
  assert.deepEqual((await r.store.getCursor('tap', 'messagesDelivered'))?.cursor, { n: 9 });
  r.runner.lost(feed, 'test over');
  await r.close();
});

test('with no local cursor the carried one is adopted; a service the Lease does not carry stays as it is', async () => {
  const r = await replica();
  const feed = tapFeed();
  await r.runner.acquired(feed, acq({ from: 'released', carried: carried({ cursors: { clicksBlocked: { n: 2 } }, released: true }, r.clock.now()) }));
  const src = feed.sources[0]!;
  await until(() => src.cursors !== undefined, 'source start');
  assert.deepEqual(src.cursors, { clicksBlocked: { n: 2 }, messagesDelivered: undefined });
  r.runner.lost(feed, 'test over');
  await r.close();
});

test('a carried cursor collected under another start time than the configured one is not adopted', async () => {
  const logLines: string[] = [];
  const r = await replica({ logLines });
  const feed = tapFeed();
  await localCursor(r.store, 'tap', 'clicksBlocked', { n: 2 });
  await r.runner.acquired(feed, acq({
    from: 'expired',
    carried: carried(
      {
        cursors: { clicksBlocked: { n: 7 }, messagesDelivered: { n: 7 } },
        start_times: { clicksBlocked: '2026-11-01T00:00:00Z', messagesDelivered: '2026-11-01T00:00:00Z' },
      },
      r.clock.now(),
    ),
  }));
  const src = feed.sources[0]!;
  await until(() => src.cursors !== undefined, 'source start');
  assert.deepEqual(src.cursors, { clicksBlocked: { n: 2 }, messagesDelivered: undefined });
  assert.deepEqual(src.ctx!.resetServices, new Set());
  const warnings = logLines.map((l) => JSON.parse(l) as Record<string, unknown>).filter((l) => /another start time/.test(String(l.msg)));
  assert.deepEqual(
    warnings.map((w) => w.service),
    ['clicksBlocked', 'messagesDelivered'],
    'each refused cursor is named in a warning',
  );
  r.runner.lost(feed, 'test over');

  // The other way round: a configured start time, a cursor carried under the same one is adopted,
  // one carried under none is not.
  const pod = podFeed('pod', '2026-11-20T00:00:00Z');
  await r.runner.acquired(pod, acq({
    from: 'expired',
    carried: { v: 1, at: r.clock.now(), cursors: { maillog: { n: 4 } }, start_times: { maillog: '2026-11-20T00:00:00Z' } },
  }));
  await until(() => pod.sources[0]?.cursors !== undefined, 'pod source start');
  assert.deepEqual(pod.sources[0]!.cursors, { maillog: { n: 4 } });
  const pod2 = podFeed('pod2', '2026-11-20T00:00:00Z');
  await r.runner.acquired(pod2, acq({
    from: 'expired',
    carried: { v: 1, at: r.clock.now(), cursors: { maillog: { n: 4 } }, start_times: { maillog: null } },
  }));
  await until(() => pod2.sources[0]?.cursors !== undefined, 'pod2 source start');
  assert.deepEqual(pod2.sources[0]!.cursors, { maillog: undefined });
  r.runner.lost(pod, 'test over');
  r.runner.lost(pod2, 'test over');
  await r.close();
});

test(
  'a carried cursor under the configured start time wins over a later local one collected under an old start time',
  async () => {
    const r = await replica();
    const feed = tapFeed();
    // This replica pulled the feed long ago with start time 2026-11-01; the configuration now has none.
    await localCursor(r.store, 'tap', 'clicksBlocked', { n: 9 }, '2026-11-01T00:00:00Z');
    await r.runner.acquired(feed, acq({
      from: 'released',
      carried: carried({ cursors: { clicksBlocked: { n: 5 } }, released: true }, r.clock.now()),
    }));
    const src = feed.sources[0]!;
    await until(() => src.cursors !== undefined, 'source start');
    try {
      assert.deepEqual(src.cursors!.clicksBlocked, { n: 5 });
    } finally {
      r.runner.lost(feed, 'test over');
      await r.close();
    }
  },
);

test('carried request times are recorded once: a time the local log already has is not counted twice', async () => {
  const r = await replica();
  const feed = tapFeed();
  const now = r.clock.now();
  const t1 = now - 3_600_000;
  const t2 = now - 60_000;
  const t3 = now - 1_000;
  const tooOld = now - DAY - 1;
  const edge = now - DAY;
  const log = r.store.requests.forInput('tap');
  await log.record('shared', t1);
  await log.record('shared', t2);
  await log.record('clicksPermitted', t1);
  await r.runner.acquired(feed, acq({
    from: 'expired',
    carried: carried(
      {
        cursors: {},
        requests: {
          shared: [tooOld, t1, t2, t3],
          // Two requests in the same millisecond are two requests; the local log has one of them.
          clicksPermitted: [edge, t1, t1],
          // Not one of the feed's pools: not inherited.
          unknownPool: [t3],
        },
      },
      now,
    ),
  }));
  assert.deepEqual(await log.list('shared', 0), [t1, t2, t3]);
  assert.deepEqual(await log.list('clicksPermitted', 0), [edge, t1, t1]);
  assert.deepEqual(await log.list('unknownPool', 0), []);
  r.runner.lost(feed, 'test over');

  // A feed without request pools (PoD) inherits none, whatever the Lease carries.
  const pod = podFeed();
  await r.runner.acquired(pod, acq({ from: 'expired', carried: { v: 1, at: now, cursors: {}, start_times: { maillog: null }, requests: { shared: [t3] } } }));
  assert.deepEqual(await r.store.requests.forInput('pod').list('shared', 0), []);
  r.runner.lost(pod, 'test over');
  await r.close();
});

test('the source recovers as after a crash when the feed was taken from a holder that did not release it cleanly', async () => {
  const r = await replica();
  assert.equal(r.store.uncleanShutdown, false);
  const now = r.clock.now();
  const cases: Array<[string, Omit<Acquisition, 'persist' | 'adopted'>, boolean]> = [
    ['expired', { from: 'expired', previousHolder: 'replica-b', carried: carried({ cursors: {} }, now) }, true],
    ['expired, released flag', { from: 'expired', previousHolder: 'replica-b', carried: carried({ cursors: {}, released: true }, now) }, true],
    ['released without the flag', { from: 'released', carried: carried({ cursors: {} }, now) }, true],
    ['released, nothing carried', { from: 'released' }, true],
    ['released with released: true', { from: 'released', carried: carried({ cursors: {}, released: true }, now) }, false],
    ['none', { from: 'none' }, false],
  ];
  const feeds: TestFeed[] = [];
  for (const [i, [, how]] of cases.entries()) {
    const feed = tapFeed(`tap${i}`);
    feeds.push(feed);
    await r.runner.acquired(feed, acq(how));
  }
  assert.deepEqual(
    cases.map(([what], i) => [what, feeds[i]!.sources[0]!.ctx!.uncleanShutdown]),
    cases.map(([what, , unclean]) => [what, unclean]),
  );
  for (const f of feeds) r.runner.lost(f, 'test over');
  await r.close();
});

test('on a store left unclean, even a cleanly released feed recovers as after a crash', async () => {
  const dir = tmpDir();
  const first = await StateStore.open(dir);
  await first.close({ clean: false });
  const r = await replica({ dir });
  assert.equal(r.store.uncleanShutdown, true);
  const feed = tapFeed();
  await r.runner.acquired(feed, acq({ from: 'released', carried: carried({ cursors: {}, released: true }, r.clock.now()) }));
  assert.equal(feed.sources[0]!.ctx!.uncleanShutdown, true);
  r.runner.lost(feed, 'test over');
  await r.close();
});

test('snapshot carries the committed cursors, the start times and the request times within the window', async () => {
  const a = await replica();
  const feed = tapFeed();
  const now = a.clock.now();
  const log = a.store.requests.forInput('tap');
  await log.record('shared', now - DAY - 5_000); // out of the window
  await log.record('shared', now - DAY + 5_000);
  await log.record('clicksPermitted', now - 10);
  feed.next = [
    { service: 'clicksBlocked', pullingId: 1, events: [ev('a')], cursor: { n: 3 } },
    { service: 'clicksBlocked', pullingId: 2, events: [ev('b')], cursor: { n: 4 } },
  ];
  await a.runner.acquired(feed, acq({ from: 'none' }));
  await until(() => a.pipeline.counters().find((c) => c.service === 'clicksBlocked')?.batchesCommitted === 2, 'commits');
  // Requests the source makes while it holds the feed count too.
  await feed.sources[0]!.ctx!.requestLog.record('shared', now);

  const snap = await a.runner.snapshot(feed);
  assert.deepEqual(snap, {
    v: 1,
    at: now,
    cursors: { clicksBlocked: { n: 4 } },
    start_times: { clicksBlocked: null, messagesDelivered: null },
    requests: { shared: [now - DAY + 5_000, now], clicksPermitted: [now - 10] },
    // The de-dup keys committed in the span a takeover re-reads, newest first, as fingerprints.
    keys: { clicksBlocked: [fingerprint('b'), fingerprint('a')] },
  });

  // A feed without request pools carries no request times.
  const pod = podFeed('pod', '2026-11-20T00:00:00Z');
  assert.deepEqual(await a.runner.snapshot(pod), { v: 1, at: now, cursors: {}, start_times: { maillog: '2026-11-20T00:00:00Z' }, keys: {} });
  a.runner.lost(feed, 'test over');
  await a.close();
});

test('a feed handed over through the annotation goes on where the other replica stopped, its requests counted once', async () => {
  const clock = new FakeClock();
  const a = await replica({ clock });
  const b = await replica({ clock });
  const feedA = tapFeed();
  const feedB = tapFeed();
  const now = clock.now();

  feedA.next = [{ service: 'messagesDelivered', pullingId: 1, events: [ev('m1')], cursor: { n: 11 } }];
  await a.runner.acquired(feedA, acq({ from: 'none' }));
  await until(() => a.pipeline.counters().some((c) => c.batchesCommitted === 1), 'A commits');
  await feedA.sources[0]!.ctx!.requestLog.record('shared', now - 2);
  await feedA.sources[0]!.ctx!.requestLog.record('shared', now - 1);
  a.runner.lost(feedA, 'released');
  const annotation = { [STATE_ANNOTATION]: encodeState({ ...(await a.runner.snapshot(feedA)), released: true }) };

  // B once pulled the feed too: an older cursor, one request of its own.
  await localCursor(b.store, 'tap', 'messagesDelivered', { n: 4 });
  await b.store.requests.forInput('tap').record('shared', now - 50_000);
  const decoded = decodeState(annotation);
  assert.equal(decoded.problem, undefined);
  feedB.next = [{ service: 'messagesDelivered', pullingId: 1, events: [ev('m2')], cursor: { n: 12 } }];
  await b.runner.acquired(feedB, acq({ from: 'released', carried: decoded.state! }));
  const srcB = feedB.sources[0]!;
  await until(() => srcB.cursors !== undefined, 'B source start');
  assert.deepEqual(srcB.cursors, { clicksBlocked: undefined, messagesDelivered: { n: 11 } });
  assert.equal(srcB.ctx!.uncleanShutdown, false, 'released cleanly: no crash recovery');
  await until(() => b.pipeline.counters().some((c) => c.batchesCommitted === 1), 'B commits');
  await srcB.ctx!.requestLog.record('shared', now);
  assert.deepEqual(await b.store.requests.forInput('tap').list('shared', 0), [now - 50_000, now - 2, now - 1, now]);

  // Back to A, whose own requests come back with B's: each is counted once.
  b.runner.lost(feedB, 'released');
  const back = decodeState({ [STATE_ANNOTATION]: encodeState({ ...(await b.runner.snapshot(feedB)), released: true }) });
  await a.runner.acquired(feedA, acq({ from: 'released', carried: back.state! }));
  assert.deepEqual(await a.store.requests.forInput('tap').list('shared', 0), [now - 50_000, now - 2, now - 1, now]);
  const srcA2 = feedA.sources[1]!;
  await until(() => srcA2.cursors !== undefined, 'A source start again');
  assert.deepEqual(srcA2.cursors, { clicksBlocked: undefined, messagesDelivered: { n: 12 } });
  a.runner.lost(feedA, 'test over');
  await a.close();
  await b.close();
});

test('de-dup keys carried in the Lease: the next holder drops what the previous one delivered, and carries them on', async () => {
  const clock = new FakeClock();
  const a = await replica({ clock });
  const b = await replica({ clock });
  const c = await replica({ clock });
  const feedA = podFeed();
  const feedB = podFeed();
  const feedC = podFeed();
  feedA.next = [{ service: 'maillog', pullingId: 1, events: [ev('k1'), ev('k2'), ev('k3')], cursor: { n: 3 } }];
  await a.runner.acquired(feedA, acq({ from: 'none' }));
  await until(() => a.pipeline.counters().some((x) => x.batchesCommitted === 1), 'A commits');
  const fromA = decodeState({ [STATE_ANNOTATION]: encodeState(await a.runner.snapshot(feedA)) }).state!;
  assert.deepEqual(new Set(fromA.keys?.maillog), new Set(['k1', 'k2', 'k3'].map(fingerprint)));

  // B takes over after A died and re-reads the hour: k1..k3 again, then k4.
  feedB.next = [{ service: 'maillog', pullingId: 1, events: [ev('k1'), ev('k2'), ev('k3'), ev('k4')], cursor: { n: 4 } }];
  await b.runner.acquired(feedB, acq({ from: 'expired', previousHolder: 'a', carried: fromA }));
  await until(() => b.pipeline.counters().some((x) => x.batchesCommitted === 1), 'B commits');
  const counted = b.pipeline.counters().find((x) => x.service === 'maillog')!;
  assert.deepEqual(b.sink.records.map((r) => JSON.parse(r.record.message as string).id), ['k4']);
  assert.equal(counted.duplicates, 3);

  // B's state carries its own key and the inherited ones, so C dropping them does not depend on A.
  const fromB = decodeState({ [STATE_ANNOTATION]: encodeState(await b.runner.snapshot(feedB)) }).state!;
  assert.deepEqual(new Set(fromB.keys?.maillog), new Set(['k4', 'k1', 'k2', 'k3'].map(fingerprint)));
  feedC.next = [{ service: 'maillog', pullingId: 1, events: [ev('k2'), ev('k4'), ev('k5')], cursor: { n: 5 } }];
  await c.runner.acquired(feedC, acq({ from: 'expired', previousHolder: 'b', carried: fromB }));
  await until(() => c.pipeline.counters().some((x) => x.batchesCommitted === 1), 'C commits');
  assert.deepEqual(c.sink.records.map((r) => JSON.parse(r.record.message as string).id), ['k5']);
  for (const [r, f] of [[a, feedA], [b, feedB], [c, feedC]] as const) r.runner.lost(f, 'test over');
  await Promise.all([a.close(), b.close(), c.close()]);
});

test('TAP requests are written ahead into the Lease: recorded, persisted, and refused once the Lease is gone', async () => {
  const r = await replica();
  const feed = tapFeed();
  const calls: string[] = [];
  let held = true;
  const how: Acquisition = {
    from: 'none',
    persist: async () => {
      calls.push('persist');
      return held;
    },
    adopted: () => calls.push('adopted'),
  };
  await r.runner.acquired(feed, how);
  const src = feed.sources[0]!;
  await until(() => src.ctx !== undefined, 'source start');
  assert.deepEqual(calls, ['adopted'], 'the carried state is adopted before the source runs');
  const now = r.clock.now();
  await src.ctx!.requestLog.record('shared', now);
  assert.deepEqual(calls, ['adopted', 'persist'], 'a request is persisted into the Lease before record() returns');
  held = false;
  await assert.rejects(src.ctx!.requestLog.record('shared', now + 1), /no longer held: request not sent/);
  // Both stay in the local log (the second is counted though never sent: the safe side).
  assert.deepEqual(await r.store.requests.forInput('tap').list('shared', 0), [now, now + 1]);
  // A PoD feed has no request pools: its source gets the plain log, nothing is persisted per request.
  const pod = podFeed();
  const podCalls: string[] = [];
  await r.runner.acquired(pod, { from: 'none', persist: async () => (podCalls.push('persist'), true), adopted: () => {} });
  await until(() => pod.sources[0]?.ctx !== undefined, 'pod source start');
  await pod.sources[0]!.ctx!.requestLog.record('x', now);
  assert.deepEqual(podCalls, []);
  r.runner.lost(feed, 'test over');
  r.runner.lost(pod, 'test over');
  await r.close();
});

test('lost aborts the running source at once and its batches already sent still commit', async () => {
  const sink = new MemorySink({ holdAcks: true });
  const r = await replica({ sink });
  const feed = tapFeed();
  feed.next = [{ service: 'clicksBlocked', pullingId: 1, events: [ev('a')], cursor: { n: 1 } }];
  await r.runner.acquired(feed, acq({ from: 'none' }));
  const src = feed.sources[0]!;
  await until(() => sink.held.length === 1, 'a send');
  assert.equal(src.ctx!.signal.aborted, false);
  r.runner.lost(feed, 'taken by replica-b');
  assert.equal(src.ctx!.signal.aborted, true, 'aborted before lost returned');
  await until(() => feed.timeline.includes('run1 stop'), 'the source to return');
  assert.equal(await r.store.getCursor('tap', 'clicksBlocked'), undefined, 'not acknowledged yet');
  sink.release();
  await until(() => r.pipeline.health.get('tap', 'clicksBlocked')?.status === 'stopped', 'stopped');
  assert.equal(r.pipeline.health.get('tap', 'clicksBlocked')?.reason, 'feed lost: taken by replica-b');
  assert.deepEqual((await r.store.getCursor('tap', 'clicksBlocked'))?.cursor, { n: 1 });
  // A second lost of the same run changes nothing.
  r.runner.lost(feed, 'again');
  assert.equal(r.pipeline.health.get('tap', 'clicksBlocked')?.reason, 'feed lost: taken by replica-b');
  await r.close();
});

test('lost while the feed is still being adopted aborts the source as soon as it is attached', async () => {
  const r = await replica();
  const feed = tapFeed();
  const acquiring = r.runner.acquired(feed, acq({ from: 'expired', carried: carried({ cursors: { clicksBlocked: { n: 3 } } }, r.clock.now()) }));
  r.runner.lost(feed, 'not renewed within renew_deadline_secs (10 s)');
  assert.equal(feed.sources.length, 0, 'lost came before the source was created');
  await acquiring;
  assert.equal(feed.sources.length, 1);
  assert.equal(feed.sources[0]!.ctx!.signal.aborted, true, 'aborted by the time acquired resolves');
  await until(() => r.pipeline.health.get('tap', 'clicksBlocked')?.status === 'stopped', 'stopped');
  assert.match(r.pipeline.health.get('tap', 'clicksBlocked')?.reason ?? '', /^feed lost: not renewed/);
  await r.close();
});

test('a new acquisition waits until the previous run of the feed stopped and committed; runs never overlap', async () => {
  const sink = new MemorySink({ holdAcks: true });
  const r = await replica({ sink });
  const feed = tapFeed();
  feed.next = [{ service: 'clicksBlocked', pullingId: 1, events: [ev('a')], cursor: { n: 1 } }];
  await r.runner.acquired(feed, acq({ from: 'none' }));
  await until(() => sink.held.length === 1, 'run1 sends');

  r.runner.lost(feed, 'taken by replica-b');
  feed.next = [{ service: 'clicksBlocked', pullingId: 2, events: [ev('b')], cursor: { n: 2 } }];
  let second = false;
  const again = r.runner.acquired(feed, acq({ from: 'self' })).then(() => {
    second = true;
  });
  await until(() => feed.timeline.includes('run1 stop'), 'run1 to return');
  await flushMicrotasks();
  assert.equal(second, false, 'waits while run1 has a batch not committed');
  assert.equal(feed.sources.length, 1, 'run2 not even created');

  sink.release();
  await again;
  const run2 = feed.sources[1]!;
  await until(() => run2.cursors !== undefined, 'run2 start');
  assert.deepEqual(run2.cursors!.clicksBlocked, { n: 1 }, 'run2 starts from what run1 committed');
  assertNoOverlap(feed.timeline);
  assert.deepEqual(feed.timeline, ['run1 start', 'run1 stop', 'run2 start']);

  // Lost before run3's attach completes, re-acquired at once, twice over: still one run at a time.
  sink.holdAcks = false;
  sink.release();
  r.runner.lost(feed, 'one');
  const a3 = r.runner.acquired(feed, acq({ from: 'self' }));
  r.runner.lost(feed, 'two');
  const a4 = r.runner.acquired(feed, acq({ from: 'self' }));
  await Promise.all([a3, a4]);
  await until(() => feed.sources[3]?.cursors !== undefined, 'run4 start');
  assertNoOverlap(feed.timeline);
  assert.deepEqual(feed.timeline, ['run1 start', 'run1 stop', 'run2 start', 'run2 stop', 'run3 start', 'run3 stop', 'run4 start']);
  assert.deepEqual(feed.sources[3]!.cursors!.clicksBlocked, { n: 2 });
  r.runner.lost(feed, 'test over');
  await r.close();
});
