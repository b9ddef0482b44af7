/**
 * TAP cycle statistics (plugin/sources/tap/stats.ts): one line per window, logged once and only
 * when every batch of the window is committed, with the committed counts summed.
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import type { BatchOutcome } from '../../../plugin/sources/source.ts';
import { CycleStats } from '../../../plugin/sources/tap/stats.ts';
import { FakeClock } from '../../helpers/fake-clock.ts';
import { T0, captureLogger } from './harness.ts';

const HOUR = 3600_000;
const window = { kind: 'fresh' as const, start: T0 - HOUR, end: T0 };

function cycle(clock: FakeClock, finished: CycleStats[]) {
  const { logger, lines } = captureLogger('info');
  const stats = new CycleStats({
    pullingId: 42,
    window,
    started: clock.now(),
    requests: 2,
    clock,
    logger,
    requestsLeft: () => ({ shared: 1790, clicksPermitted: 1800 }),
    onFinished: (c) => finished.push(c),
  });
  return { stats, lines };
}

test('cycle statistics are logged once, after every batch of the window is committed, with the committed counts', async () => {
  const clock = new FakeClock(T0);
  const finished: CycleStats[] = [];
  const { stats, lines } = cycle(clock, finished);
  const first = stats.expect();
  const second = stats.expect();
  stats.seal();
  const outcome = (o: BatchOutcome) => o;
  first(outcome({ received: 10, duplicates: 2, sent: 7, deadLettered: 1 }));
  assert.equal(lines.length, 0, 'not before the last batch is committed');
  await clock.advance(2_000);
  second(outcome({ received: 5, duplicates: 0, sent: 5, deadLettered: 0 }));
  assert.equal(lines.length, 1);
  assert.equal(finished.length, 1);
  const l = lines[0] as unknown as Record<string, unknown>;
  assert.deepEqual(
    { ...l, time: undefined, msg: undefined },
    {
      level: 'info',
      time: undefined,
      msg: undefined,
      pulling_id: 42,
      kind: 'fresh',
      from: '2026-11-23T11:00:00.000Z',
      to: '2026-11-23T12:00:00.000Z',
      requests: 2,
      received: 15,
      duplicates: 2,
      sent: 12,
      dead_lettered: 1,
      events_per_second: 6,
      requests_left: { shared: 1790, clicksPermitted: 1800 },
    },
  );
  assert.equal(
    l['msg'],
    'TAP pull 42 (fresh) 2026-11-23T11:00:00.000Z -> 2026-11-23T12:00:00.000Z: 2 request(s), 15 received, 2 duplicates filtered, 12 sent, 6 events/s; requests left: shared 1790, clicksPermitted 1800',
  );
  stats.seal();
  assert.equal(lines.length, 1, 'logged once');
});

test('cycle statistics of a window that concerned no service are logged when it is sealed', () => {
  const clock = new FakeClock(T0);
  const finished: CycleStats[] = [];
  const { stats, lines } = cycle(clock, finished);
  stats.seal();
  assert.equal(lines.length, 1);
  assert.equal((lines[0] as unknown as Record<string, unknown>)['sent'], 0);
  assert.deepEqual(finished, [stats]);
});
