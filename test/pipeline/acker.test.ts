import { test } from 'node:test';
import assert from 'node:assert/strict';
import { COMMIT_RETRY_MAX_MS, COMMIT_RETRY_MIN_MS, OrderedAcker, settleAll, type AckerOptions, type FailedAttempt } from '../../plugin/pipeline/acker.ts';
import { FakeClock, flushMicrotasks } from '../helpers/fake-clock.ts';

function acker(clock: FakeClock, over: Partial<AckerOptions<number>> = {}) {
  const written: number[] = [];
  const committed: number[] = [];
  const failing: Array<FailedAttempt<number>> = [];
  const recovered: number[] = [];
  const state = { refuse: false, stopping: false };
  const a = new OrderedAcker<number>({
    clock,
    commit: async (n) => {
      if (state.refuse) throw Object.assign(new Error('IO error: No space left on device'), { code: 'LEVEL_IO_ERROR' });
      written.push(n);
    },
    committed: (n) => committed.push(n),
    describe: (err) => ({ error: Object.assign(new Error('state refused'), { code: 'SIDECAR_ERR_STATE_IO' }), cause: (err as Error).message }),
    failing: (f) => failing.push({ ...f, fault: { ...f.fault } }),
    recovered: (f) => recovered.push(f.attempts),
    stopping: () => state.stopping,
    canCommit: () => true,
    ...over,
  });
  return { a, written, committed, failing, recovered, state };
}

test("a later batch's ack does not commit before an earlier batch's; then both commit in order", async () => {
  const { a, written, committed } = acker(new FakeClock());
  const b1 = a.push(1);
  const b2 = a.push(2);
  const b3 = a.push(3);
  b3.ack();
  b2.ack();
  await a.settled;
  assert.deepEqual(written, [], 'nothing is written while batch 1 is unacknowledged');
  assert.equal(a.size, 3);
  b1.ack();
  await a.settled;
  assert.deepEqual(written, [1, 2, 3]);
  assert.deepEqual(committed, [1, 2, 3]);
  assert.equal(a.size, 0);
});

test('an acknowledged prefix commits while a later batch is still unacknowledged', async () => {
  const { a, committed } = acker(new FakeClock());
  a.push(1).ack();
  const b2 = a.push(2);
  a.push(3).ack();
  await a.settled;
  assert.deepEqual(committed, [1]);
  b2.ack();
  await a.settled;
  assert.deepEqual(committed, [1, 2, 3]);
});

test('a failed commit keeps its batch at the head, nothing behind it commits, and it is retried on the clock, backing off', async () => {
  const clock = new FakeClock();
  const { a, committed, failing, recovered, state } = acker(clock);
  state.refuse = true;
  a.push(1).ack();
  const b2 = a.push(2);
  await a.settled;
  assert.deepEqual(committed, []);
  assert.equal(a.size, 2);
  assert.equal(a.fault?.attempts, 1);
  assert.equal(a.fault?.cause, 'IO error: No space left on device');
  assert.deepEqual(failing.map((f) => [f.head, f.pending, f.retryInMs]), [[1, 2, COMMIT_RETRY_MIN_MS]]);

  await clock.advance(COMMIT_RETRY_MIN_MS - 1);
  assert.equal(failing.length, 1, 'not retried before the wait');
  await clock.advance(1);
  await a.settled;
  assert.deepEqual(failing.map((f) => f.retryInMs), [COMMIT_RETRY_MIN_MS, 2 * COMMIT_RETRY_MIN_MS], 'the wait doubles');
  // A later ack tries again at once, and still commits nothing past the head.
  b2.ack();
  await a.settled;
  assert.equal(failing.length, 3);
  assert.deepEqual(failing.map((f) => f.head), [1, 1, 1]);
  for (let i = 0; i < 8; i++) {
    await clock.tick();
    await a.settled;
  }
  assert.equal(failing.at(-1)!.retryInMs, COMMIT_RETRY_MAX_MS, 'and stops growing at the maximum');
  assert.deepEqual(committed, []);

  state.refuse = false;
  await clock.tick();
  await a.settled;
  assert.deepEqual(committed, [1, 2]);
  assert.equal(a.fault, undefined);
  assert.deepEqual(recovered, [failing.length]);
  assert.equal(clock.pending, 0, 'no retry timer is left after recovery');
});

test('while stopping, a failed commit schedules no retry', async () => {
  const clock = new FakeClock();
  const { a, failing, state } = acker(clock);
  state.refuse = true;
  state.stopping = true;
  a.push(1).ack();
  await a.settled;
  assert.equal(failing[0]!.retryInMs, undefined);
  assert.equal(clock.pending, 0);
});

test('settleAll waits for acks, gives a failing source one last attempt, and does not wait on a batch whose send failed', async () => {
  const clock = new FakeClock();
  const ok = acker(clock);
  const failingState = acker(clock);
  const closed = acker(clock);
  const late = ok.a.push(1);
  failingState.state.refuse = true;
  failingState.a.push(7).ack();
  await failingState.a.settled;
  const lost = closed.a.push(9);
  let settled = false;
  const done = settleAll([ok.a, failingState.a, closed.a]).then(() => (settled = true));
  await flushMicrotasks();
  assert.equal(settled, false, 'batch 1 is not acknowledged yet');
  assert.equal(failingState.failing.length, 2, 'the failing source had its one last attempt at once');
  lost.fail();
  await flushMicrotasks();
  assert.equal(settled, false);
  late.ack();
  await done;
  assert.deepEqual(ok.committed, [1]);
  assert.equal(failingState.a.size, 1, 'the failing batch stays uncommitted');
  assert.equal(closed.a.size, 1);
});

test('settleAll gives a commit that starts failing while it waits its last attempt, without any timer', async () => {
  const clock = new FakeClock();
  const { a, failing, state } = acker(clock);
  state.stopping = true;
  const b = a.push(1);
  const done = settleAll([a]);
  await flushMicrotasks();
  state.refuse = true;
  b.ack();
  await done;
  assert.equal(failing.length, 2, 'the first failure, then the last attempt');
  assert.equal(a.size, 1);
  assert.equal(clock.pending, 0);
});
