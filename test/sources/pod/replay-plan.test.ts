/**
 * The replay a PoD service owes between sessions (plugin/sources/pod/replay-plan.ts), driven
 * without sockets: what a session's end owes, what a refused window becomes, and that all of it
 * rides on the cursor. recovery.test.ts pins the same against the simulator.
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { pino } from 'pino';
import { FakeClock } from '../../helpers/fake-clock.ts';
import { CursorTracker, type PodCursor } from '../../../plugin/sources/pod/cursor.ts';
import type { ModeLimits } from '../../../plugin/sources/pod/mode.ts';
import { ReplayPlan, type ArchiveStep } from '../../../plugin/sources/pod/replay-plan.ts';
import { SessionStats } from '../../../plugin/sources/pod/stats.ts';

const HOUR = 3600_000;
const MIN = 60_000;
const limits: ModeLimits = { thresholdMs: 50 * MIN, stalenessMs: 30 * MIN, windowMs: HOUR, maxAgeMs: 30 * 24 * HOUR };
const log = pino({ level: 'silent' });

function fixture() {
  const clock = new FakeClock(Date.UTC(2026, 10, 23, 12, 0));
  const tracker = new CursorTracker();
  const health: string[] = [];
  const checkpoints: PodCursor[] = [];
  const plan = new ReplayPlan({
    service: 'message',
    limits,
    clock,
    metrics: { set() {}, inc() {} },
    health: { set: (_s, status) => health.push(status) },
    log,
    tracker,
    retry: { minMs: 1_000, maxMs: 60_000 },
    replayLiveInterruptions: false,
    // What a forced batch would carry.
    checkpoint: () => checkpoints.push(tracker.snapshot()),
  });
  const stats = () => new SessionStats({ pullingId: 1, service: 'message', mode: 'live', clock, logger: log });
  return { clock, tracker, plan, health, checkpoints, stats };
}

test('a live session dropped without a normal close owes a replay from the hour of the committed cursor, kept on the cursor', async () => {
  const f = fixture();
  const now = f.clock.now();
  const cursor: PodCursor = { v: 1, ts: '2026-11-23T11:20:00.000000+00:00', sec: Date.UTC(2026, 10, 23, 11, 20) / 1000, nsec: 0, liveAt: now - MIN };
  f.tracker.restore(cursor);
  f.plan.start(cursor, { uncleanShutdown: false });
  assert.deepEqual(f.plan.nextStep(now), { mode: 'live' }, 'recent contact: live resumes');
  f.plan.liveOpened(now);
  await f.clock.advance(10 * MIN);
  f.plan.liveEnded(false, undefined, now, f.stats());
  const owed = () => f.tracker.current.owed;
  assert.equal(owed(), undefined, 'owed from the next live start');
  const reopened = f.clock.now() + 5_000;
  f.plan.liveOpened(reopened);
  assert.deepEqual(owed(), { reason: 'live_drop', from: Date.UTC(2026, 10, 23, 11), until: reopened, offsetMin: 0 });
  assert.equal(f.plan.replayReason, 'live_drop');
  // The normal close of a later live session owes nothing more.
  f.plan.liveEnded(true, undefined, reopened, f.stats());
  assert.equal(owed()?.from, Date.UTC(2026, 10, 23, 11));
});

test('a window refused at the 30-day edge becomes an explicit gap on the cursor and the replay moves past it; others are asked again', () => {
  const f = fixture();
  const now = f.clock.now();
  f.plan.start(undefined, { uncleanShutdown: false, startTimeMs: now - 10 * 24 * HOUR });
  const first = f.plan.nextStep(now) as ArchiveStep;
  assert.equal(first.mode, 'archive');
  // Not at the edge: asked again after a backoff, never skipped.
  f.plan.archiveRejected(first, { status: 400, server_text: 'bad window' });
  assert.equal(f.tracker.current.gaps, undefined);
  assert.deepEqual(f.plan.nextStep(now).mode, 'live', 'live meanwhile');
  const again = f.plan.nextStep(now + 2 * MIN) as ArchiveStep;
  assert.deepEqual([again.since, again.to], [first.since, first.to]);
  assert.equal(f.plan.windowFailed(again).attempts, 2, 'the refusal and this end count for the same window');

  const edge = fixture();
  edge.plan.start(undefined, { uncleanShutdown: false, startTimeMs: now - 29 * 24 * HOUR - 30 * MIN });
  const old = edge.plan.nextStep(now) as ArchiveStep;
  edge.plan.archiveRejected({ ...old, since: now - limits.maxAgeMs + HOUR / 2 }, { status: 400, server_text: 'too old' });
  const gaps = edge.tracker.current.gaps ?? [];
  assert.equal(gaps.length, 1);
  assert.match(gaps[0]!.reason, /30-day edge: too old/);
  assert.equal(edge.checkpoints.length, 1, 'the gap is committed with a batch of its own');
  assert.deepEqual(edge.checkpoints[0]!.gaps, gaps);
  const next = edge.plan.nextStep(now) as ArchiveStep;
  assert.equal(next.since, old.to, 'the replay goes on after the gap');
});
