/**
 * The bounded buffer between a PoD socket and the pipeline (plugin/sources/pod/batches.ts) on
 * its own: bounds and flow control, batch boundaries, dead-lettering and the cursor a batch
 * carries. backpressure.test.ts pins the same against the simulator and a stalled receiver.
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { pino } from 'pino';
import { FakeClock } from '../../helpers/fake-clock.ts';
import { BatchBuffer, type Flow } from '../../../plugin/sources/pod/batches.ts';
import { CursorTracker, type PodCursor } from '../../../plugin/sources/pod/cursor.ts';
import { SessionStats } from '../../../plugin/sources/pod/stats.ts';

const log = pino({ level: 'silent' });

function fixture(cfg: Partial<{ batch_max_events: number; batch_flush_secs: number; max_buffered_frames: number; max_buffered_bytes: number }> = {}) {
  const clock = new FakeClock();
  const tracker = new CursorTracker();
  const committed: PodCursor[] = [];
  const counters: Record<string, number> = {};
  let pullingIds = 0;
  let notified = 0;
  const buffer = new BatchBuffer({
    service: 'message',
    cfg: { batch_max_events: 1000, batch_flush_secs: 1, max_buffered_frames: 1000, max_buffered_bytes: 1_000_000, ...cfg },
    clock,
    metrics: { set() {}, inc: (name, labels, by = 1) => (counters[`${name}:${labels.reason ?? ''}`] = (counters[`${name}:${labels.reason ?? ''}`] ?? 0) + by) },
    log,
    tracker,
    nextPullingId: () => ++pullingIds,
    notify: () => notified++,
    replayReason: () => 'outage',
    onCommitted: (c) => committed.push(c),
  });
  const session = (mode: 'live' | 'archive' = 'live') => new SessionStats({ pullingId: ++pullingIds, service: 'message', mode, clock, logger: log });
  return { clock, tracker, buffer, committed, counters, session, notified: () => notified };
}

const frame = (n: number, second = n) => JSON.stringify({ guid: `g-${n}`, ts: `2026-11-23T12:00:${String(second % 60).padStart(2, '0')}.000000+00:00` });

function flow(): Flow & { pauses: number; resumes: number } {
  const f = {
    paused: false,
    pauses: 0,
    resumes: 0,
    pause() {
      f.paused = true;
      f.pauses++;
    },
    resume() {
      f.paused = false;
      f.resumes++;
    },
  };
  return f;
}

test('backpressure: the flow is paused at max_buffered_frames and resumed only once at most half is held', () => {
  const f = fixture({ batch_max_events: 2, max_buffered_frames: 8 });
  const socket = flow();
  f.buffer.attach(socket);
  const stats = f.session();
  for (let i = 0; i < 8; i++) f.buffer.frame(stats, frame(i), 100);
  assert.equal(socket.paused, true, 'paused at the bound');
  assert.equal(f.buffer.paused, true);
  assert.deepEqual(f.buffer.buffered, { frames: 8, bytes: 800 });
  // Nothing is dropped to make room: every frame is in a ready batch.
  assert.equal(f.buffer.take()!.events.length, 2);
  assert.equal(socket.paused, true, '6 of 8 held: still paused');
  f.buffer.take();
  assert.equal(socket.resumes, 1, '4 of 8 held: reading again');
  assert.deepEqual(f.buffer.buffered, { frames: 4, bytes: 400 });
  f.buffer.attach(undefined);
  assert.equal(f.buffer.paused, false, 'no session reads');
});

test('backpressure: the byte bound pauses as well', () => {
  const f = fixture({ max_buffered_bytes: 1_000 });
  const socket = flow();
  f.buffer.attach(socket);
  const stats = f.session();
  f.buffer.frame(stats, frame(1), 600);
  assert.equal(socket.paused, false);
  f.buffer.frame(stats, frame(2), 600);
  assert.equal(socket.pauses, 1);
});

test('a batch never spans two sessions and is handed out by count or by the injected clock', async () => {
  const f = fixture({ batch_max_events: 3, batch_flush_secs: 0.5 });
  const first = f.session();
  f.buffer.frame(first, frame(1), 10);
  const second = f.session();
  f.buffer.frame(second, frame(2), 10);
  const a = f.buffer.take()!;
  assert.equal(a.pullingId, first.pullingId);
  assert.deepEqual(a.events.map((e) => e.key !== undefined), [true]);
  assert.equal(f.buffer.take(), undefined, 'the second session’s batch is still filling');
  await f.clock.advance(499);
  assert.equal(f.buffer.take(), undefined);
  await f.clock.advance(1);
  const b = f.buffer.take()!;
  assert.equal(b.pullingId, second.pullingId);
  assert.equal(b.events.length, 1);
});

test('a malformed frame is dead-lettered with its text, counted, and the batch goes on', () => {
  const f = fixture();
  const stats = f.session();
  f.buffer.frame(stats, frame(1), 10);
  f.buffer.frame(stats, '{"guid": 5}', 11);
  f.buffer.frame(stats, 'not json', 8);
  f.buffer.frame(stats, frame(2), 10);
  f.buffer.close();
  const batch = f.buffer.take()!;
  assert.equal(batch.events.length, 2);
  assert.deepEqual(
    batch.rejected!.map((r) => r.raw),
    ['{"guid": 5}', 'not json'],
  );
  assert.equal(stats.rejected, 2);
  assert.deepEqual(f.buffer.buffered, { frames: 0, bytes: 0 });
});

test('a batch carries the cursor as it stood when closed; the buffer reports it only when the batch is committed', () => {
  const f = fixture();
  const stats = f.session('archive');
  f.buffer.frame(stats, frame(1, 5), 10);
  f.buffer.close();
  f.tracker.markArchived(123);
  // Forced: no events, but the cursor (here a completed window) must be committed.
  f.buffer.close(true, stats);
  const a = f.buffer.take()!;
  const b = f.buffer.take()!;
  assert.equal(a.cursor?.ts, '2026-11-23T12:00:05.000000+00:00');
  assert.equal(a.cursor?.archivedUntil, undefined, 'a snapshot, not the live cursor');
  assert.equal(b.events.length, 0);
  assert.equal(b.cursor?.archivedUntil, 123);
  assert.equal(b.pullingId, stats.pullingId);
  assert.deepEqual(f.committed, [], 'nothing reported before the pipeline commits');
  a.onCommitted!({ received: 2, sent: 1, duplicates: 1, deadLettered: 0 });
  b.onCommitted!({ received: 0, sent: 0, duplicates: 0, deadLettered: 0 });
  assert.deepEqual(f.committed, [a.cursor, b.cursor]);
  assert.equal(f.counters['pod_replay_duplicates_total:outage'], 1, 'duplicates of an archive batch are counted by replay reason');
});
