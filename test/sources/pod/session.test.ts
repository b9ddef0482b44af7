/**
 * One PoD session's parts on their own (plugin/sources/pod/session.ts): what an end means for
 * the archive window or the live stream, and the silence that ends an archive window the server
 * never closes. The whole session against the simulator is pinned by stream.test.ts and
 * recovery.test.ts.
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { FakeClock, flushMicrotasks } from '../../helpers/fake-clock.ts';
import { ArchiveIdle, archiveEnd, liveEnd } from '../../../plugin/sources/pod/session.ts';
import { PodSessionError } from '../../../plugin/sources/pod/errors.ts';
import type { SessionEnd } from '../../../plugin/sources/pod/socket.ts';

const serverClose = (code: number): SessionEnd => ({ code, reason: '', closeFrame: true, byClient: false });
const ourClose: SessionEnd = { code: 1000, reason: '', closeFrame: true, byClient: true };
const dropped: SessionEnd = { code: 1006, reason: '', closeFrame: false, byClient: false };

test('an archive window completes only on the server close 1000 or our idle close with no frame after it', () => {
  assert.deepEqual(archiveEnd(serverClose(1000), undefined, 0), { complete: true, quiet: false, how: 'closed by the server with 1000', retried: '1000' });
  assert.deepEqual(archiveEnd(ourClose, 'idle', 0), { complete: true, quiet: true, how: 'frames after the idle close', retried: 'late_frames' });
  // Frames after our idle close: the window was still being served.
  assert.equal(archiveEnd(ourClose, 'idle', 3).complete, false);
  assert.equal(archiveEnd(serverClose(1011), undefined, 0).complete, false);
  assert.equal(archiveEnd(serverClose(1011), undefined, 0).retried, '1011');
  assert.deepEqual(archiveEnd(dropped, undefined, 0), { complete: false, quiet: false, how: 'dropped', retried: '1006' });
  // Our own 1000 (shutdown) proves nothing about the window.
  assert.deepEqual(archiveEnd(ourClose, 'shutdown', 0), { complete: false, quiet: false, how: 'shutdown', retried: '1000' });
  const failed = archiveEnd({ ...serverClose(1000), error: new PodSessionError('PoD message session failed: boom') }, undefined, 0);
  assert.deepEqual(failed, { complete: false, quiet: false, how: 'failed', retried: 'error' });
});

test('a live session ended normally only by the server close 1000 or the answer to our close', () => {
  assert.deepEqual(liveEnd(serverClose(1000), undefined), { normal: true, how: 'closed by server' });
  assert.deepEqual(liveEnd({ ...ourClose, code: 1005 }, 'replay_due'), { normal: true, how: 'replay_due' });
  assert.deepEqual(liveEnd(serverClose(1001), undefined), { normal: false, how: 'closed by server' });
  assert.deepEqual(liveEnd(dropped, undefined), { normal: false, how: 'dropped' });
  assert.deepEqual(liveEnd({ ...ourClose, error: new PodSessionError('PoD message session did not answer a ping') }, undefined), { normal: false, how: 'failed' });
});

function idleFixture() {
  const clock = new FakeClock();
  const stats = { frames: 0 };
  let reading = true;
  let closes = 0;
  /** A data frame already waiting in the socket when a timer runs: read on the next turn of the event loop. */
  let waiting = false;
  const isReading = () => {
    if (waiting) {
      waiting = false;
      setImmediate(() => stats.frames++);
    }
    return reading;
  };
  const idle = new ArchiveIdle({ clock, idleMs: 10_000, stats, reading: isReading, close: () => closes++ });
  return { clock, idle, closes: () => closes, setReading: (r: boolean) => (reading = r), frameWaiting: () => (waiting = true) };
}

test('archive idle close: only a silence while reading ends the window; paused time never counts', async () => {
  const f = idleFixture();
  f.idle.arm();
  await f.clock.advance(6_000);
  // Paused (the buffer is full): the silence stops counting.
  f.setReading(false);
  f.idle.cancel();
  await f.clock.advance(60_000);
  assert.equal(f.closes(), 0, 'no close while paused');
  // Reading again: a fresh silence of the whole timeout is needed.
  f.setReading(true);
  f.idle.arm();
  await f.clock.advance(9_000);
  await flushMicrotasks();
  assert.equal(f.closes(), 0, 'the silence restarted when reading resumed');
  await f.clock.advance(1_000);
  await flushMicrotasks();
  assert.equal(f.closes(), 1);
});

test('archive idle close: a data frame restarts the silence, and a frame in the last turn of the event loop defers the close', async () => {
  const f = idleFixture();
  f.idle.arm();
  await f.clock.advance(8_000);
  f.idle.data();
  await f.clock.advance(8_000);
  await flushMicrotasks();
  assert.equal(f.closes(), 0, 'the frame at 8 s restarted the silence');
  // The timeout runs out; a frame read before the deferred check keeps the window open.
  f.frameWaiting();
  await f.clock.advance(2_000);
  await flushMicrotasks();
  assert.equal(f.closes(), 0, 'data already waiting in the socket is read before the close');
  await f.clock.advance(10_000);
  await flushMicrotasks();
  assert.equal(f.closes(), 1);
});
