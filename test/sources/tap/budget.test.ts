import { test } from 'node:test';
import assert from 'node:assert/strict';
import { FakeClock } from '../../helpers/fake-clock.ts';
import type { Clock } from '../../../plugin/util/clock.ts';
import { RateBudget, poolOf, DAY_MS } from '../../../plugin/sources/tap/budget.ts';
import { silentLogger } from '../../../plugin/telemetry/logger.ts';
import { MemoryRequestLog, captureLogger } from './harness.ts';

const make = (clock: FakeClock, log: MemoryRequestLog, limit = 5, logger = silentLogger()) =>
  new RateBudget({ log, clock, logger, limit, throttleInitialMs: 15 * 60_000, throttleMaxMs: 4 * 3600_000, random: () => 0 });

test('pools: clicks/permitted alone, everything else shared', () => {
  assert.equal(poolOf('/v2/siem/clicks/permitted'), 'clicksPermitted');
  for (const p of ['/v2/siem/all', '/v2/siem/issues', '/v2/siem/clicks/blocked', '/v2/siem/messages/blocked', '/v2/siem/messages/delivered']) {
    assert.equal(poolOf(p), 'shared', p);
  }
});

test('never more than the limit in any rolling 24 h; waits are logged with the next allowed time', async () => {
  const clock = new FakeClock();
  const log = new MemoryRequestLog();
  const { logger, lines } = captureLogger();
  const b = make(clock, log, 5, logger);
  await b.load(['shared', 'clicksPermitted']);
  const signal = new AbortController().signal;
  const sent: number[] = [];
  const run = (async () => {
    for (let i = 0; i < 12; i++) {
      await b.acquire('shared', signal);
      sent.push(clock.now());
      await clock.sleep(60_000);
    }
  })();
  let done = false;
  void run.then(() => (done = true));
  while (!done) await clock.tick();
  await run;
  for (const t of sent) assert.ok(sent.filter((u) => u > t - DAY_MS && u <= t).length <= 5, 'at most 5 per 24 h');
  assert.equal(b.remaining('clicksPermitted'), 5, 'the other pool is untouched');
  assert.ok(lines.some((l) => /pool shared is spent .* next request allowed at 2026-11-24T12:01:00/.test(l.msg)), 'logged the next allowed time');
  const since = clock.now() - DAY_MS;
  assert.deepEqual(await log.list('shared', since), sent.filter((t) => t >= since), 'every request is in the persisted log');
});

test('the persisted log survives a restart', async () => {
  const clock = new FakeClock();
  const log = new MemoryRequestLog();
  const signal = new AbortController().signal;
  const first = make(clock, log, 3);
  await first.load(['shared']);
  for (let i = 0; i < 3; i++) await first.acquire('shared', signal);
  const second = make(clock, log, 3);
  await second.load(['shared']);
  assert.equal(second.remaining('shared'), 0);
  assert.ok(second.nextAllowedAt('shared') >= clock.now() + DAY_MS, 'the restarted budget waits for the oldest request to age out');
});

test('a 429 blocks the pool for a long, growing backoff; success resets it', async () => {
  const clock = new FakeClock();
  const b = make(clock, new MemoryRequestLog(), 1800);
  await b.load(['shared']);
  const t0 = clock.now();
  assert.equal(b.throttled('shared') - t0, 15 * 60_000);
  assert.equal(b.nextAllowedAt('shared'), t0 + 15 * 60_000);
  const second = b.throttled('shared') - t0;
  assert.ok(second >= 15 * 60_000 && second <= 30 * 60_000, `second wait ${second} ms`);
  b.succeeded('shared');
  assert.equal(b.throttled('shared') - t0, 15 * 60_000);
});

test('acquire gives up when shutdown aborts the wait', async () => {
  const clock = new FakeClock();
  const b = make(clock, new MemoryRequestLog(), 1);
  await b.load(['shared']);
  const ac = new AbortController();
  await b.acquire('shared', ac.signal);
  const waiting = b.acquire('shared', ac.signal);
  ac.abort(new Error('stop'));
  await assert.rejects(waiting, /stop/);
});

test('requests sent, requests left and 429s are reported per pool for /metrics', async () => {
  const { SourceMetricsStore } = await import('../../../plugin/telemetry/source-metrics.ts');
  const clock = new FakeClock();
  const store = new SourceMetricsStore();
  const b = new RateBudget({
    log: new MemoryRequestLog(),
    clock,
    logger: silentLogger(),
    limit: 5,
    throttleInitialMs: 15 * 60_000,
    throttleMaxMs: 4 * 3600_000,
    random: () => 0,
    metrics: store.forInput('100001'),
  });
  await b.load(['shared', 'clicksPermitted']);
  const signal = new AbortController().signal;
  await b.acquire('shared', signal);
  await b.acquire('shared', signal);
  b.throttled('shared');
  const by = (name: Parameters<typeof store.values>[0]) =>
    Object.fromEntries(store.values(name).map((v) => [`${v.labels.input_id}/${v.labels.pool}`, v.value]));
  assert.deepEqual(by('tap_requests_total'), { '100001/shared': 2 });
  assert.deepEqual(by('tap_requests_left'), { '100001/shared': 3, '100001/clicksPermitted': 5 });
  assert.deepEqual(by('tap_throttled_total'), { '100001/shared': 1 });
});

test('a pool with requests left is never reported spent, even when the clock moves between readings', async () => {
  // A clock that moves 1 ms at every reading, as the system clock does under load.
  let t = Date.UTC(2026, 10, 23, 12, 0, 0);
  const clock: Clock = {
    now: () => t++,
    setTimer: () => () => {},
    sleep: (ms) => new Promise((r) => setImmediate(() => ((t += ms), r()))),
  };
  const { logger, lines } = captureLogger();
  const b = new RateBudget({ log: new MemoryRequestLog(), clock, logger, limit: 1800, throttleInitialMs: 60_000, throttleMaxMs: 3600_000 });
  await b.load(['shared']);
  const signal = new AbortController().signal;
  for (let i = 0; i < 3; i++) await b.acquire('shared', signal);
  assert.deepEqual(
    lines.filter((l) => /is spent/.test(l.msg)).map((l) => l.msg),
    [],
    'no "spent" line while requests are left',
  );
  assert.equal(b.remaining('shared'), 1797);
});

test('a request log that cannot be written does not stop requests; they are still counted and the failure is logged once', async () => {
  const clock = new FakeClock();
  class FullDiskLog extends MemoryRequestLog {
    full = true;
    override async record(pool: string, at: number): Promise<void> {
      if (this.full) throw Object.assign(new Error('IO error: No space left on device'), { code: 'SIDECAR_ERR_STATE_IO' });
      return super.record(pool, at);
    }
  }
  const log = new FullDiskLog();
  const { logger, lines } = captureLogger();
  const budget = make(clock, log, 3, logger);
  await budget.load(['shared']);
  const signal = new AbortController().signal;
  await budget.acquire('shared', signal);
  await budget.acquire('shared', signal);
  assert.equal(budget.remaining('shared'), 1, 'counted in memory');
  assert.equal(lines.filter((l) => /request log cannot be written/.test(String(l.msg))).length, 1);
  log.full = false;
  await budget.acquire('shared', signal);
  assert.deepEqual(log.pools.get('shared')?.length, 1, 'written again once the disk has room');
  assert.ok(lines.some((l) => /request log is written again/.test(String(l.msg))));
  assert.equal(budget.remaining('shared'), 0);
});
