/**
 * The state directory refusing writes mid-stream (a full disk): nothing is lost, health and
 * /readyz say so, the source stops being pulled, commits are retried on a timer and the stream
 * recovers without a restart once the disk takes writes again.
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { execFileSync } from 'node:child_process';
import { mkdtempSync, rmSync, statfsSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { Pipeline } from '../../plugin/pipeline/pipeline.ts';
import { COMMIT_RETRY_MIN_MS } from '../../plugin/pipeline/acker.ts';
import { StateStore, type CommitOp } from '../../plugin/state/store.ts';
import { readiness } from '../../plugin/telemetry/http.ts';
import type { Batch } from '../../plugin/sources/source.ts';
import { MemorySink } from '../helpers/memory-sink.ts';
import { ScriptedSource, ev, spec } from '../helpers/scripted-source.ts';
import { FakeClock, flushMicrotasks } from '../helpers/fake-clock.ts';
import { tmpDir } from '../helpers/tmp.ts';

async function until(cond: () => boolean | Promise<boolean>, what: string, ms = 5_000): Promise<void> {
  const end = Date.now() + ms;
  while (!(await cond())) {
    if (Date.now() > end) throw new Error(`timed out waiting for ${what}`);
    await new Promise((r) => setTimeout(r, 2));
  }
}

/** A source that yields batch n (keys `b<n>-<i>`, cursor n) each time the test offers one. */
class OfferedBatches {
  readonly #queue: Batch[] = [];
  #wake?: () => void;
  #ended = false;

  constructor(readonly keysPerBatch = 2) {}

  offer(n: number): void {
    const events = Array.from({ length: this.keysPerBatch }, (_, i) => ev(`b${n}-${i}`.padEnd(40, 'k')));
    this.#queue.push({ service: 's', pullingId: n, events, cursor: n });
    this.#wake?.();
  }

  end(): void {
    this.#ended = true;
    this.#wake?.();
  }

  get waiting(): number {
    return this.#queue.length;
  }

  readonly script = async function* (this: OfferedBatches): AsyncIterable<Batch> {
    for (;;) {
      while (this.#queue.length === 0 && !this.#ended) await new Promise<void>((r) => (this.#wake = r));
      if (this.#queue.length === 0) return;
      yield this.#queue.shift()!;
    }
  };
}

function enospc(): Error {
  return Object.assign(new Error('IO error: /state/db/000005.log: No space left on device'), { code: 'LEVEL_IO_ERROR' });
}

test('the state directory fills up mid-stream and then frees: nothing lost, degraded meanwhile, pulling paused, recovery without a restart', async () => {
  const clock = new FakeClock();
  const store = await StateStore.open(tmpDir(), { clock });
  const realCommit = store.commit.bind(store);
  let full = false;
  let attempts = 0;
  store.commit = async (op: CommitOp) => {
    attempts++;
    if (full) throw enospc();
    return realCommit(op);
  };
  const sink = new MemorySink();
  const offered = new OfferedBatches();
  const src = new ScriptedSource('i', [spec('s')], () => offered.script());
  const p = new Pipeline({ store, sink, sources: [src], clock });
  const ready = () => readiness({ pipeline: p, sink, store, clock });
  await p.start();

  offered.offer(1);
  await until(async () => (await store.getCursor('i', 's'))?.cursor === 1, 'batch 1 committed');
  assert.equal(ready().ready, true);

  full = true;
  offered.offer(2);
  await until(() => attempts === 2, 'the commit of batch 2 attempted');
  await flushMicrotasks();
  const h = p.health.get('i', 's')!;
  assert.equal(h.status, 'degraded');
  assert.match(h.reason ?? '', /^commits are failing: .*No space left on device/);
  const r = ready();
  assert.equal(r.ready, false, '/readyz reflects the failing commits');
  assert.match(r.reasons.join('\n'), /i\/s: state commits are failing \(.*No space left on device\)/);
  assert.equal(p.commitFailures()[0]?.code, 'SIDECAR_ERR_STATE_IO');

  // Pulling is paused: the batch already asked for when the commit failed (3) is taken, no
  // further one while commits fail.
  offered.offer(3);
  offered.offer(4);
  await until(() => attempts === 3, 'the ack of batch 3 attempting the commit');
  await flushMicrotasks();
  assert.equal(src.pulled, 3, 'batch 4 must not be pulled while commits fail');
  assert.equal(offered.waiting, 1);

  // Retried on the timer, with no new ack, backing off.
  const firstDelay = clock.nextAt! - clock.now();
  assert.ok(firstDelay >= COMMIT_RETRY_MIN_MS);
  await clock.advance(firstDelay - 1);
  assert.equal(attempts, 3);
  await clock.advance(1);
  await until(() => attempts === 4, 'first timed retry');
  await flushMicrotasks();
  assert.equal(clock.nextAt! - clock.now(), 2 * firstDelay, 'the next retry waits twice as long');
  assert.equal(src.pulled, 3);
  assert.equal((await store.getCursor('i', 's'))?.cursor, 1, 'the cursor stays before the uncommitted batch');

  // Space returns: the next timed retry commits, health and pulling come back.
  full = false;
  await clock.tick();
  await until(async () => (await store.getCursor('i', 's'))?.cursor === 4, 'batches 2 to 4 committed');
  assert.notEqual(p.health.get('i', 's')!.status, 'degraded');
  assert.equal(p.health.get('i', 's')!.commitFailing, undefined);
  assert.equal(ready().ready, true);
  assert.deepEqual(p.commitFailures(), []);

  offered.end();
  await p.done;
  const stopped = await p.stop(1_000);
  assert.equal(stopped.clean, true);
  const keys = sink.records.map((x) => JSON.parse(x.record.message as string).id as string);
  assert.deepEqual(keys.map((k) => k.slice(0, 3)), ['b1-', 'b1-', 'b2-', 'b2-', 'b3-', 'b3-', 'b4-', 'b4-']);
  assert.deepEqual(await store.seen.has('i::s', keys), keys.map(() => true));
  assert.equal(clock.pending, 0, 'no commit retry timer is left');
  await store.close();
});

test('a stop while commits fail ends without waiting for the shutdown timeout and says commits are failing', { timeout: 20_000 }, async () => {
  const clock = new FakeClock();
  const store = await StateStore.open(tmpDir(), { clock });
  store.commit = async () => {
    throw enospc();
  };
  const sink = new MemorySink();
  const offered = new OfferedBatches();
  const src = new ScriptedSource('i', [spec('s')], () => offered.script());
  const p = new Pipeline({ store, sink, sources: [src], clock });
  await p.start();
  offered.offer(1);
  await until(() => p.commitFailures().length === 1, 'the commit failing');
  offered.end();
  // A stop that waited for the commit would take the whole (here: 10 minutes) timeout.
  const r = await p.stop(600_000);
  assert.equal(r.clean, false);
  assert.equal(r.uncommittedBatches, 1);
  const [f] = p.commitFailures();
  assert.equal(f?.code, 'SIDECAR_ERR_STATE_IO');
  assert.match(f?.cause ?? '', /No space left on device/);
  assert.equal(clock.pending, 0, 'no retry is scheduled after the stop');
  await store.close({ clean: false });
});

function tryMountTmpfs(dir: string, size: string): string | undefined {
  try {
    execFileSync('mount', ['-t', 'tmpfs', '-o', `size=${size}`, 'tmpfs', dir], { stdio: 'pipe' });
    return undefined;
  } catch (err) {
    return `cannot mount a tmpfs here (${((err as { stderr?: Buffer }).stderr?.toString() || (err as Error).message).trim()}); needs root`;
  }
}

test('a real full disk (2 MiB tmpfs) mid-stream: commits resume once space returns and survive a restart', { timeout: 30_000 }, async (t) => {
  const dir = mkdtempSync(path.join(tmpdir(), 'pps-tmpfs-'));
  const why = tryMountTmpfs(dir, '2m');
  if (why) {
    rmSync(dir, { recursive: true, force: true });
    t.skip(why);
    return;
  }
  t.after(() => {
    // Lazy: a failed assertion may leave the store open on it.
    execFileSync('umount', ['-l', dir]);
    rmSync(dir, { recursive: true, force: true });
  });
  const clock = new FakeClock();
  let store = await StateStore.open(dir, { clock });
  const sink = new MemorySink();
  const offered = new OfferedBatches(100);
  const src = new ScriptedSource('i', [spec('s')], () => offered.script());
  const p = new Pipeline({ store, sink, sources: [src], clock });
  await p.start();
  offered.offer(1);
  await until(async () => (await store.getCursor('i', 's'))?.cursor === 1, 'batch 1 committed');

  // Leave less room than a commit needs.
  const filler = path.join(dir, 'filler');
  const st = statfsSync(dir);
  writeFileSync(filler, Buffer.alloc(Math.max(0, st.bavail * st.bsize - 16 * 1024)));
  let n = 1;
  while (p.commitFailures().length === 0 && n < 200) {
    offered.offer(++n);
    await until(async () => p.commitFailures().length > 0 || (await store.getCursor('i', 's'))?.cursor === n, `batch ${n} committed or failed`);
  }
  const failedAt = n;
  assert.ok(p.commitFailures().length > 0, 'a commit must fail on the full disk');
  assert.match(p.health.get('i', 's')!.reason ?? '', /commits are failing: .*(No space left on device|ENOSPC)/i);
  // The batch already asked for is taken; no further one.
  offered.offer(failedAt + 1);
  offered.offer(failedAt + 2);
  await until(() => src.pulled === failedAt + 1, 'the batch asked for before the failure');
  await flushMicrotasks();
  assert.equal(src.pulled, failedAt + 1, 'pulling paused');
  assert.equal(offered.waiting, 1);

  rmSync(filler);
  await clock.tick();
  await until(async () => (await store.getCursor('i', 's'))?.cursor === failedAt + 2, 'commits resumed without a restart');
  assert.deepEqual(p.commitFailures(), []);
  offered.offer(failedAt + 3);
  await until(async () => (await store.getCursor('i', 's'))?.cursor === failedAt + 3, 'later batch committed');
  offered.end();
  await p.done;
  assert.equal((await p.stop(1_000)).clean, true);
  await store.close();

  // LevelDB keeps what was committed after the failure (it was reopened before writing again).
  store = await StateStore.open(dir, { clock });
  assert.equal((await store.getCursor('i', 's'))?.cursor, failedAt + 3);
  const keys = sink.records.map((x) => JSON.parse(x.record.message as string).id as string);
  assert.equal(keys.length, (failedAt + 3) * 100, 'every event delivered once');
  assert.deepEqual(await store.seen.has('i::s', keys), keys.map(() => true));
  await store.close();
});
