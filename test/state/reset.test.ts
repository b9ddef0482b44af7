/**
 * A state reset (`state reset`, or a changed start time) is one LevelDB batch: it happens whole
 * or not at all. A service with more de-dup keys than one batch should hold has them deleted in
 * bounded steps first; a failure after those steps keeps its cursor and start time. The failure is
 * injected at the batch's write, where a full disk refuses it.
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { StateStore } from '../../plugin/state/store.ts';
import { FakeClock } from '../helpers/fake-clock.ts';
import { tmpDir } from '../helpers/tmp.ts';

const START = '2026-11-20T00:00:00Z';

/** A store with service i/s holding a start time, a cursor and 300 de-dup keys, and i/t beside it. */
async function storeWithState(dir: string, clock: FakeClock, resetBatchMaxKeys?: number): Promise<{ store: StateStore; keys: string[] }> {
  const store = await StateStore.open(dir, { clock, resetBatchMaxKeys });
  const keys = Array.from({ length: 300 }, (_, n) => `k${n}`);
  for (const svc of ['s', 't']) {
    await store.applyStartTime('i', svc, START);
    await store.seen.load(`i::${svc}`);
  }
  await store.commit({ input: 'i', service: 's', cursor: { n: 1 }, keys, keysTtlMs: 3_600_000 });
  await store.commit({ input: 'i', service: 't', cursor: { n: 2 }, keys: ['t1'], keysTtlMs: 3_600_000 });
  await store.requests.record('i', 'pool', 123);
  return { store, keys };
}

/** Makes every chained batch of `store` fail at its write, as a full disk does; returns the undo. */
function refuseBatches(store: StateStore): () => void {
  const db = store.db as unknown as { batch: (...args: unknown[]) => unknown };
  const real = db.batch;
  db.batch = function (this: unknown, ...args: unknown[]) {
    const b = real.apply(this, args);
    if (args.length > 0) return b;
    const chained = b as { write: () => Promise<void>; close: () => Promise<void> };
    chained.write = async () => {
      await chained.close();
      throw Object.assign(new Error('IO error: /state/db/000005.log: No space left on device'), { code: 'LEVEL_IO_ERROR' });
    };
    return chained;
  };
  return () => {
    db.batch = real;
  };
}

async function assertUntouched(store: StateStore, keys: string[]): Promise<void> {
  assert.deepEqual((await store.getCursor('i', 's'))?.cursor, { n: 1 }, 'the cursor is kept');
  assert.equal(await store.getStartTime('i', 's'), START, 'the start time is kept');
  assert.deepEqual(await store.seen.has('i::s', keys), keys.map(() => true), 'every de-dup key is kept');
  assert.equal(store.seen.count('i::s'), 300);
}

test('a state reset whose batch fails leaves nothing half-reset; the next one resets whole', async () => {
  const dir = tmpDir();
  const clock = new FakeClock();
  const { store, keys } = await storeWithState(dir, clock);
  const undo = refuseBatches(store);
  await assert.rejects(store.resetService('i', 's'), /No space left on device/);
  undo();
  await assertUntouched(store, keys);
  await store.close();

  // Also after a reopen: nothing of the failed reset reached the disk.
  const again = await StateStore.open(dir, { clock });
  assert.equal(await again.seen.load('i::s'), 300);
  await assertUntouched(again, keys);

  await again.resetService('i', 's');
  assert.equal(await again.getCursor('i', 's'), undefined);
  assert.equal(await again.getStartTime('i', 's'), undefined);
  assert.deepEqual(await again.seen.has('i::s', keys), keys.map(() => false));
  assert.equal(again.seen.count('i::s'), 0);
  // The other service, and the request log, are not part of the reset.
  assert.deepEqual((await again.getCursor('i', 't'))?.cursor, { n: 2 });
  assert.deepEqual(await again.seen.has('i::t', ['t1']), [true]);
  assert.deepEqual(await again.requests.list('i', 'pool', 0), [123]);
  await again.close();

  const reopened = await StateStore.open(dir, { clock });
  assert.equal(await reopened.seen.load('i::s'), 0, 'the key count was reset with the keys');
  assert.deepEqual(await reopened.listScopes(), ['i::t']);
  await reopened.close();
});

test('a start-time change whose batch fails keeps the old start time with its cursor and keys', async () => {
  const dir = tmpDir();
  const clock = new FakeClock();
  const { store, keys } = await storeWithState(dir, clock);
  const undo = refuseBatches(store);
  await assert.rejects(store.applyStartTime('i', 's', '2026-11-21T00:00:00Z'), /No space left on device/);
  undo();
  // Not a cursor of the old start time stored under the new one: the next start resets again.
  await assertUntouched(store, keys);
  assert.equal(await store.applyStartTime('i', 's', '2026-11-21T00:00:00Z'), true);
  assert.equal(await store.getStartTime('i', 's'), '2026-11-21T00:00:00Z');
  assert.equal(await store.getCursor('i', 's'), undefined);
  assert.deepEqual(await store.seen.has('i::s', keys), keys.map(() => false));
  await store.close();
});

test('a reset of more keys than one batch holds deletes them in bounded steps first: a failed final batch keeps the cursor and start time, and the next reset completes', async () => {
  const dir = tmpDir();
  const clock = new FakeClock();
  const { store, keys } = await storeWithState(dir, clock, 100);
  const undo = refuseBatches(store);
  await assert.rejects(store.applyStartTime('i', 's', '2026-11-21T00:00:00Z'), /No space left on device/);
  undo();
  // Never the keys of the old start under the new one: the old start time and cursor stay, so the
  // next start sees the change again and resets again. The keys went first, in bounded steps
  // outside the batch (duplicates at worst).
  assert.deepEqual(await store.seen.has('i::s', keys), keys.map(() => false), 'the keys were deleted before the batch');
  assert.deepEqual((await store.getCursor('i', 's'))?.cursor, { n: 1 });
  assert.equal(await store.getStartTime('i', 's'), START);
  assert.equal(await store.applyStartTime('i', 's', '2026-11-21T00:00:00Z'), true);
  assert.equal(await store.getStartTime('i', 's'), '2026-11-21T00:00:00Z');
  assert.equal(await store.getCursor('i', 's'), undefined);
  assert.deepEqual(await store.seen.has('i::s', keys), keys.map(() => false));
  assert.equal(store.seen.count('i::s'), 0);
  // The other service is not part of the reset.
  assert.deepEqual(await store.seen.has('i::t', ['t1']), [true]);
  await store.close();
  const reopened = await StateStore.open(dir, { clock });
  assert.equal(await reopened.seen.load('i::s'), 0);
  await reopened.close();
});
