import { test } from 'node:test';
import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import path from 'node:path';
import { Level } from 'level';
import { StateStore, SCHEMA_VERSION } from '../../plugin/state/store.ts';
import { FakeClock } from '../helpers/fake-clock.ts';
import { tmpDir } from '../helpers/tmp.ts';

test('cursor and de-dup keys are committed in one batch and read back after reopening', async () => {
  const dir = tmpDir();
  const clock = new FakeClock();
  let store = await StateStore.open(dir, { clock });
  await store.seen.load('in1::svc');
  await store.commit({ input: 'in1', service: 'svc', cursor: { ts: 'x' }, keys: ['a', 'b'], keysTtlMs: 60_000 });
  assert.deepEqual(await store.seen.has('in1::svc', ['a', 'b', 'c']), [true, true, false]);
  await store.close();

  store = await StateStore.open(dir, { clock });
  assert.equal(store.uncleanShutdown, false);
  const c = await store.getCursor('in1', 'svc');
  assert.deepEqual(c?.cursor, { ts: 'x' });
  assert.equal(c?.v, 1);
  assert.deepEqual(await store.seen.has('in1::svc', ['a', 'b']), [true, true]);
  // Scopes are separate.
  assert.deepEqual(await store.seen.has('in1::other', ['a']), [false]);
  await store.close();
});

test('a crashed batch leaves no partial state: the batch is all or nothing', async () => {
  const dir = tmpDir();
  const store = await StateStore.open(dir);
  await store.seen.load('i::s');
  // A cursor that cannot be encoded (a BigInt) fails the batch after the keys were added to it:
  // nothing of the batch may be written.
  await assert.rejects(store.commit({ input: 'i', service: 's', cursor: { n: 1n }, keys: ['k1'], keysTtlMs: 1000 }));
  assert.equal(await store.getCursor('i', 's'), undefined);
  assert.deepEqual(await store.seen.has('i::s', ['k1']), [false]);
  await store.close();
});

test('expired keys are swept and the count cap evicts the keys closest to expiry', async () => {
  const dir = tmpDir();
  const clock = new FakeClock();
  const store = await StateStore.open(dir, { clock });
  const scope = 'i::s';
  await store.seen.load(scope);
  await store.commit({ input: 'i', service: 's', keys: ['old1', 'old2'], keysTtlMs: 1_000 });
  await store.commit({ input: 'i', service: 's', keys: ['mid1', 'mid2', 'mid3'], keysTtlMs: 5_000 });
  await store.commit({ input: 'i', service: 's', keys: ['new1'], keysTtlMs: 9_000 });
  assert.equal(store.seen.count(scope), 6);

  await clock.advance(2_000);
  // Expired keys no longer count as seen even before the sweep.
  assert.deepEqual(await store.seen.has(scope, ['old1', 'mid1']), [false, true]);
  let r = await store.seen.sweep(scope, 100);
  assert.deepEqual(r, { expired: 2, evicted: 0 });
  assert.equal(store.seen.count(scope), 4);

  r = await store.seen.sweep(scope, 2);
  assert.deepEqual(r, { expired: 0, evicted: 2 });
  assert.deepEqual(await store.seen.has(scope, ['mid1', 'mid2', 'mid3', 'new1']), [false, false, true, true]);
  await store.close();

  // The count survives a restart.
  const again = await StateStore.open(dir, { clock });
  assert.equal(await again.seen.load(scope), 2);
  await again.close();
});

test('a key committed again after expiring is kept when its old index entry is swept', async () => {
  const dir = tmpDir();
  const clock = new FakeClock();
  const store = await StateStore.open(dir, { clock });
  await store.seen.load('i::s');
  await store.commit({ input: 'i', service: 's', keys: ['k'], keysTtlMs: 1_000 });
  await clock.advance(1_500);
  await store.commit({ input: 'i', service: 's', keys: ['k'], keysTtlMs: 10_000 });
  await store.seen.sweep('i::s', 100);
  assert.deepEqual(await store.seen.has('i::s', ['k']), [true]);
  assert.equal(store.seen.count('i::s'), 1);
  await store.close();
});

test('a changed start time resets that service only, and says so', async () => {
  const dir = tmpDir();
  const warnings: string[] = [];
  const logger = { warn: (_o: unknown, msg: string) => warnings.push(msg), info() {}, debug() {}, error() {} } as never;
  let store = await StateStore.open(dir, { logger });
  assert.equal(await store.applyStartTime('i', 'a', '2026-11-20T00:00:00Z'), false);
  assert.equal(await store.applyStartTime('i', 'b', '2026-11-20T00:00:00Z'), false);
  await store.seen.load('i::a');
  await store.commit({ input: 'i', service: 'a', cursor: 1, keys: ['x'], keysTtlMs: 60_000 });
  await store.commit({ input: 'i', service: 'b', cursor: 2, keys: [], keysTtlMs: 0 });
  await store.requests.record('i', 'pool', 123);
  await store.close();

  store = await StateStore.open(dir, { logger });
  assert.equal(await store.applyStartTime('i', 'a', '2026-11-21T00:00:00Z'), true);
  assert.equal(await store.applyStartTime('i', 'b', '2026-11-20T00:00:00Z'), false);
  assert.equal(await store.getCursor('i', 'a'), undefined);
  assert.deepEqual(await store.seen.has('i::a', ['x']), [false]);
  assert.equal((await store.getCursor('i', 'b'))?.cursor, 2);
  // The vendor's rate budget does not reset with our state.
  assert.deepEqual(await store.requests.list('i', 'pool', 0), [123]);
  assert.ok(warnings.some((w) => /start time changed/.test(w)), warnings.join('\n'));
  await store.close();
});

test('the request log keeps times per input and pool, in order, and prunes', async () => {
  const dir = tmpDir();
  const store = await StateStore.open(dir);
  const log = store.requests.forInput('tap1');
  await log.record('all', 3000);
  await log.record('all', 1000);
  await log.record('all', 1000);
  await log.record('clicks_permitted', 2000);
  await store.requests.record('other', 'all', 5000);
  assert.deepEqual(await log.list('all', 0), [1000, 1000, 3000]);
  assert.deepEqual(await log.list('all', 2000), [3000]);
  await log.prune('all', 2000);
  assert.deepEqual(await log.list('all', 0), [3000]);
  assert.deepEqual(await log.list('clicks_permitted', 0), [2000]);
  assert.deepEqual(await store.requests.list('other', 'all', 0), [5000]);
  await store.close();
});

test('an unclean shutdown is detected on the next start', async () => {
  const dir = tmpDir();
  const store = await StateStore.open(dir);
  await store.close({ clean: false });
  const again = await StateStore.open(dir);
  assert.equal(again.uncleanShutdown, true);
  await again.close();
  const third = await StateStore.open(dir);
  assert.equal(third.uncleanShutdown, false);
  await third.close();
});

test('a process killed without closing leaves the unclean marker', () => {
  const dir = tmpDir();
  const storeUrl = new URL('../../plugin/state/store.ts', import.meta.url).href;
  const script = `const { StateStore } = await import(${JSON.stringify(storeUrl)});
    await StateStore.open(${JSON.stringify(dir)}); process.kill(process.pid, 'SIGKILL');`;
  spawnSync(process.execPath, ['--import', 'tsx', '--input-type=module', '-e', script], { encoding: 'utf8' });
  const check = `const { StateStore } = await import(${JSON.stringify(storeUrl)});
    const s = await StateStore.open(${JSON.stringify(dir)}); console.log(JSON.stringify(s.uncleanShutdown)); await s.close();`;
  const r = spawnSync(process.execPath, ['--import', 'tsx', '--input-type=module', '-e', check], { encoding: 'utf8' });
  assert.equal(r.stdout.trim(), 'true', r.stderr);
});

test('a second process on the same state directory fails with a message naming it', async () => {
  const dir = tmpDir();
  const store = await StateStore.open(dir);
  const storeUrl = new URL('../../plugin/state/store.ts', import.meta.url).href;
  const script = `const { StateStore } = await import(${JSON.stringify(storeUrl)});
    try { await StateStore.open(${JSON.stringify(dir)}); console.log('opened'); }
    catch (e) { console.log(e.code + ' ' + e.message); }`;
  const r = spawnSync(process.execPath, ['--import', 'tsx', '--input-type=module', '-e', script], { encoding: 'utf8' });
  assert.match(r.stdout, /SIDECAR_ERR_STATE_LOCKED/, r.stderr);
  assert.ok(r.stdout.includes(path.resolve(dir)), r.stdout);
  await store.close();
});

test('the version-1 layout is migrated on open, cursors kept', async () => {
  const dir = tmpDir();
  const raw = new Level<string, unknown>(path.join(dir, 'db'), { valueEncoding: 'json' });
  await raw.open();
  await raw.put('cursor!100001!clicksBlocked', { end: '2026-11-20T01:00:00Z' });
  await raw.put('cursor!100002!maillog', { ts: '2026-11-20T00:59:00.000000-0700' });
  await raw.close();

  const store = await StateStore.open(dir);
  assert.deepEqual((await store.getCursor('100001', 'clicksBlocked'))?.cursor, { end: '2026-11-20T01:00:00Z' });
  assert.deepEqual((await store.getCursor('100002', 'maillog'))?.cursor, { ts: '2026-11-20T00:59:00.000000-0700' });
  assert.equal(await store.meta.get('schema_version'), SCHEMA_VERSION);
  const keys: string[] = [];
  for await (const k of store.db.keys({ gte: 'cursor!', lt: 'cursor!\xff' })) keys.push(k);
  assert.deepEqual(keys, [], 'old keys removed');
  await store.close();
});

test('a layout newer than this code is refused, not discarded', async () => {
  const dir = tmpDir();
  const store = await StateStore.open(dir);
  await store.meta.put('schema_version', SCHEMA_VERSION + 1);
  await store.commit({ input: 'i', service: 's', cursor: 7, keys: [], keysTtlMs: 0 });
  await store.close();
  await assert.rejects(StateStore.open(dir), (e: Error & { code?: string }) => {
    assert.equal(e.code, 'SIDECAR_ERR_STATE_VERSION');
    assert.match(e.message, /newer proofpoint-sidecar/);
    return true;
  });
});

test('de-dup keys age only while the scope makes progress: a long outage counts as a short gap', async () => {
  const { MAX_GAP_MS } = await import('../../plugin/state/seen.ts');
  const dir = tmpDir();
  const clock = new FakeClock();
  const t0 = clock.now();
  let store = await StateStore.open(dir, { clock });
  await store.seen.load('i::s');
  await store.commit({ input: 'i', service: 's', cursor: 1, keys: ['before'], keysTtlMs: 2 * 3600_000 });
  await store.close();

  // Three hours stopped: more than the two-hour window, yet the key is still remembered.
  await clock.advance(3 * 3600_000);
  store = await StateStore.open(dir, { clock });
  await store.seen.load('i::s');
  assert.deepEqual(await store.seen.has('i::s', ['before']), [true]);
  assert.deepEqual(await store.seen.sweep('i::s', 100), { expired: 0, evicted: 0 });

  // The outage added MAX_GAP_MS; then commits every 5 minutes age the key until its two hours of
  // progress are up, and not before.
  assert.equal(store.seen.progressNow('i::s'), t0 + MAX_GAP_MS);
  let commits = 0;
  while (store.seen.progressNow('i::s') < t0 + 2 * 3600_000) {
    assert.deepEqual(await store.seen.has('i::s', ['before']), [true]);
    await clock.advance(5 * 60_000);
    await store.commit({ input: 'i', service: 's', cursor: 2, keys: [], keysTtlMs: 0 });
    commits++;
  }
  // The first 5 minutes after the restart still belong to the capped gap, hence one more.
  assert.equal(commits, (2 * 3600_000 - MAX_GAP_MS) / (5 * 60_000) + 1);
  assert.deepEqual(await store.seen.has('i::s', ['before']), [false]);
  assert.deepEqual(await store.seen.sweep('i::s', 100), { expired: 1, evicted: 0 });
  await store.close();
});
