/**
 * Batch-level behaviour, read straight off the source's iterator: a big window is split into
 * bounded batches with the cursor only on the last; the source does not fetch ahead of its
 * consumer; a stop in the middle of a window loses nothing; each pull cycle logs its statistics.
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import type { Batch } from '../../../plugin/sources/source.ts';
import { tapInputSchema } from '../../../plugin/sources/tap/config.ts';
import { createTapSource, type TapCursor } from '../../../plugin/sources/tap/create.ts';
import { NO_QUIRKS, startTapSimulator } from '../../../plugin/simulator/tap/index.ts';
import { FakeClock, flushMicrotasks } from '../../helpers/fake-clock.ts';
import { DirectState, HOUR, MIN, T0, TapHarness, captureLogger, compareWithTruth, directContext } from './harness.ts';

const iso = (ms: number) => new Date(ms).toISOString();

test('a big window is split into bounded batches; only the last of a service carries its cursor', async () => {
  const clock = new FakeClock(T0);
  const sim = await startTapSimulator({ clock, quirks: NO_QUIRKS, ratesPerHour: { clicksBlocked: 50, clicksPermitted: 0, messagesBlocked: 23, messagesDelivered: 0 } });
  const cfg = tapInputSchema.parse({
    id: 't',
    credentials: sim.credentials,
    override_url_base: sim.url,
    max_events_per_batch: 7,
    services: { clicksBlocked: { start_time_in_utc: iso(T0 - 3 * HOUR) }, messagesBlocked: { start_time_in_utc: iso(T0 - 3 * HOUR) } },
  });
  const state = new DirectState();
  const { logger } = captureLogger();
  const ac = new AbortController();
  const it = createTapSource(cfg, { clock }).run(directContext(state, clock, logger, ac.signal))[Symbol.asyncIterator]();
  try {
    const first: Batch<TapCursor>[] = [];
    for (;;) {
      const r = await it.next();
      first.push(r.value as Batch<TapCursor>);
      if (first.length > 1 && first.at(-1)!.pullingId !== first[0]!.pullingId) break;
    }
    const window = first.slice(0, -1);
    for (const svc of ['clicksBlocked', 'messagesBlocked']) {
      const mine = window.filter((b) => b.service === svc);
      const total = mine.reduce((n, b) => n + b.events.length, 0);
      assert.equal(total, svc === 'clicksBlocked' ? 50 : 23, `${svc}: the whole hour`);
      assert.equal(mine.length, Math.ceil(total / 7), `${svc}: batches of at most 7`);
      assert.ok(mine.every((b) => b.events.length <= 7), `${svc}: bounded`);
      assert.deepEqual(mine.map((b) => b.cursor !== undefined), mine.map((_, i) => i === mine.length - 1), `${svc}: cursor on the last batch only`);
      assert.equal(mine.at(-1)!.cursor!.collected_to, iso(T0 - 2 * HOUR));
    }
  } finally {
    ac.abort();
    await it.return?.(undefined);
    await sim.close();
  }
});

test('backpressure: without look-ahead, no request while the consumer is not asking for batches', async () => {
  const clock = new FakeClock(T0);
  const sim = await startTapSimulator({ clock, quirks: NO_QUIRKS, ratesPerHour: { clicksBlocked: 20, clicksPermitted: 20, messagesBlocked: 20, messagesDelivered: 20 } });
  const cfg = tapInputSchema.parse({
    id: 't',
    credentials: sim.credentials,
    override_url_base: sim.url,
    prefetch_next_window: false,
    services: { clicksBlocked: { start_time_in_utc: iso(T0 - 48 * HOUR) } },
  });
  const ac = new AbortController();
  const it = createTapSource(cfg, { clock }).run(directContext(new DirectState(), clock, captureLogger().logger, ac.signal))[Symbol.asyncIterator]();
  try {
    await it.next();
    for (let i = 0; i < 20; i++) {
      await new Promise((r) => setTimeout(r, 2));
      await clock.advance(10 * MIN);
      await flushMicrotasks();
    }
    assert.equal(sim.requests.length, 1, 'one window fetched, the next waits for the consumer');
    await it.next();
    assert.equal(sim.requests.length, 2, 'asking again fetches the next window');
  } finally {
    ac.abort();
    await it.return?.(undefined);
    await sim.close();
  }
});

test('a stop in the middle of a window: the window is read again, nothing lost, nothing twice', async () => {
  const h = await TapHarness.create({
    mode: 'direct',
    scenario: { quirks: NO_QUIRKS, ratesPerHour: { clicksBlocked: 40, clicksPermitted: 0, messagesBlocked: 0, messagesDelivered: 0 } },
    config: { max_events_per_batch: 5, services: { clicksBlocked: { start_time_in_utc: iso(T0 - 4 * HOUR) } } },
  });
  try {
    // Consume two batches of the first window by hand (no cursor yet), then "crash".
    const ac = new AbortController();
    const it = createTapSource(h.config, { clock: h.clock }).run(directContext(h.state, h.clock, captureLogger().logger, ac.signal))[Symbol.asyncIterator]();
    for (let i = 0; i < 2; i++) h.state.consume((await it.next()).value as Batch<TapCursor>);
    ac.abort();
    await it.return?.(undefined);
    assert.equal(h.state.cursors.get('clicksBlocked'), undefined, 'no cursor committed mid-window');
    assert.equal(h.messages('clicksBlocked').length, 10);

    await h.start();
    await h.runUntilSettled(T0 - 45 * MIN);
    assert.equal(h.sim.requests[1]!.window!.start, T0 - 4 * HOUR, 'the window is read again from the cursor');
    const r = compareWithTruth(h, 'clicksBlocked', T0 - 4 * HOUR, T0 - 45 * MIN);
    assert.deepEqual(r.missing, []);
    assert.deepEqual(r.duplicated, [], 'the 10 delivered before are dropped by their committed keys');
  } finally {
    await h.close();
  }
});

test('each pull cycle logs its statistics once committed', async () => {
  const h = await TapHarness.create({
    scenario: { ratesPerHour: { clicksBlocked: 20, clicksPermitted: 10, messagesBlocked: 10, messagesDelivered: 30 } },
    config: { services: Object.fromEntries(['clicksBlocked', 'clicksPermitted', 'messagesBlocked', 'messagesDelivered'].map((s) => [s, { start_time_in_utc: iso(T0 - 2 * HOUR) }])) },
  });
  try {
    await h.start();
    await h.runUntilSettled(T0 - 45 * MIN);
    await h.stop();
    const stats = h.logs.filter((l) => l['pulling_id'] !== undefined && l['kind'] !== undefined);
    assert.ok(stats.length >= 2, `cycles logged: ${stats.length}`);
    const first = stats[0]!;
    for (const k of ['pulling_id', 'kind', 'from', 'to', 'requests', 'received', 'duplicates', 'sent', 'events_per_second', 'requests_left']) {
      assert.ok(k in first, `field ${k}`);
    }
    assert.equal(first['from'], iso(T0 - 2 * HOUR));
    assert.equal(first['to'], iso(T0 - HOUR));
    assert.equal(first['requests'], 1);
    const left = first['requests_left'] as { shared: number; clicksPermitted: number };
    assert.ok(left.shared <= 1799 && left.shared >= 1800 - h.sim.requests.length, `shared left: ${left.shared}`);
    assert.equal(left.clicksPermitted, 1800, '/all spends only the shared pool');
    assert.match(first.msg, /TAP pull \d+ \(fresh\) 2026-11-23T10:00:00.000Z -> 2026-11-23T11:00:00.000Z: 1 request\(s\), \d+ received, 0 duplicates filtered, \d+ sent, [\d.]+ events\/s; requests left: shared \d+, clicksPermitted 1800/);
    const sentTotal = stats.reduce((n, l) => n + Number(l['sent']), 0);
    const delivered = h.services.reduce((n, s) => n + h.messages(s).length, 0);
    assert.equal(sentTotal, delivered, 'the cycles account for every record sent');
  } finally {
    await h.close();
  }
});

test('look-ahead (prefetch_next_window): one window ahead at most, errors retried, nothing lost or doubled', async () => {
  const h = await TapHarness.create({
    mode: 'direct',
    scenario: { ratesPerHour: { clicksBlocked: 20, clicksPermitted: 0, messagesBlocked: 20, messagesDelivered: 0 } },
    config: {
      prefetch_next_window: true,
      services: { clicksBlocked: { start_time_in_utc: iso(T0 - 30 * HOUR) }, messagesBlocked: { start_time_in_utc: iso(T0 - 30 * HOUR) } },
    },
  });
  try {
    // By hand first: after one window's first batch, its successor is asked for, and no more.
    const ac = new AbortController();
    const it = createTapSource(h.config, { clock: h.clock }).run(directContext(new DirectState(), h.tracking, captureLogger().logger, ac.signal))[Symbol.asyncIterator]();
    await it.next();
    for (let i = 0; i < 20; i++) await new Promise((r) => setTimeout(r, 2));
    assert.equal(h.sim.requests.length, 2, 'the next window is in flight while this one is consumed, and only that one');
    ac.abort();
    await it.return?.(undefined);
    await new Promise((r) => setTimeout(r, 20));
    const before = h.sim.requests.length;

    // Then a whole backfill, with failures that hit looked-ahead requests too.
    h.sim.inject({ kind: 'status', status: 503, times: 2 });
    h.sim.inject({ kind: 'reset', times: 1 });
    await h.start();
    await h.runUntilSettled(T0 - 45 * MIN);
    for (const s of ['clicksBlocked', 'messagesBlocked'] as const) {
      const r = compareWithTruth(h, s, T0 - 30 * HOUR, T0 - 45 * MIN);
      assert.deepEqual(r.missing, [], `${s}: nothing lost`);
      assert.deepEqual(r.duplicated, [], `${s}: nothing twice`);
    }
    const fresh = h.sim.requests.slice(before).filter((r) => r.status === 200 || r.status === 204).map((r) => r.window!);
    for (let i = 1; i < fresh.length; i++) {
      if (fresh[i]!.end - fresh[i]!.start === HOUR && fresh[i - 1]!.end - fresh[i - 1]!.start === HOUR) {
        assert.equal(fresh[i]!.start, fresh[i - 1]!.end, 'backfill windows follow each other');
      }
    }
    assert.ok(h.warnings().some((l) => /HTTP 503/.test(l.msg)), 'the failed look-ahead was retried');
  } finally {
    await h.close();
  }
});
