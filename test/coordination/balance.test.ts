/**
 * Which feed a replica takes or asks for (plugin/coordination/balance.ts), as a table: what the
 * replica has seen of each Lease, the time, and the answer.
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { WANTED_ANNOTATION, isFree, pickAsk, pickFeed, shouldHandOver, type FeedView } from '../../plugin/coordination/balance.ts';
import { leaseSpec } from '../../plugin/coordination/lease.ts';
import type { Lease } from '../../plugin/coordination/lease-api.ts';

const ME = 'me';
const TIMING = { leaseDurationMs: 15_000, retryPeriodMs: 2_000 };
const NOW = 100_000;
const first = () => 0;

const lease = (holder: string | undefined, annotations: Record<string, string> = {}): Lease => ({
  name: 'l',
  resourceVersion: '7',
  ...(holder ? { holder } : {}),
  leaseDurationSeconds: 15,
  leaseTransitions: 3,
  annotations,
});
/** Seen `ago` ms ago (its last renewal), free since `freeFor` ms when given. */
const seen = (holder: string | undefined, ago = 0, o: { freeFor?: number; annotations?: Record<string, string> } = {}): FeedView => ({
  held: false,
  seen: { lease: lease(holder, o.annotations), observedAt: NOW - ago },
  ...(o.freeFor !== undefined ? { freeSince: NOW - o.freeFor } : {}),
});
const held: FeedView = { held: true };
const missing = (freeFor?: number): FeedView => ({ held: false, seen: { observedAt: NOW }, ...(freeFor !== undefined ? { freeSince: NOW - freeFor } : {}) });

test('which free feed a replica takes, by what it has seen', () => {
  const table: { case: string; views: FeedView[]; take: number | undefined }[] = [
    { case: 'nothing seen yet', views: [{ held: false }], take: undefined },
    { case: 'no Lease, holding nothing: at once', views: [missing(0)], take: 0 },
    { case: 'a live holder keeps its feed', views: [seen('peer', 1_000)], take: undefined },
    { case: 'expired (not renewed for a lease duration): free', views: [seen('peer', 15_000, { freeFor: 0 })], take: 0 },
    { case: 'a Lease naming this replica is taken first', views: [missing(0), seen(ME, 0, { freeFor: 0 })], take: 1 },
    { case: 'released for this replica (wanted-by): first', views: [missing(0), seen(undefined, 0, { freeFor: 0, annotations: { [WANTED_ANNOTATION]: ME } })], take: 1 },
    { case: 'released for another replica: everyone else waits a lease duration', views: [seen(undefined, 0, { freeFor: 14_000, annotations: { [WANTED_ANNOTATION]: 'other' } })], take: undefined },
    { case: 'released for another, free for a lease duration: anyone', views: [seen(undefined, 0, { freeFor: 15_000, annotations: { [WANTED_ANNOTATION]: 'other' } })], take: 0 },
    { case: 'holding one below its share: waits one retry period', views: [held, missing(1_000), seen('peer'), seen('peer')], take: undefined },
    { case: 'holding one below its share, free for a retry period: takes', views: [held, missing(2_000), seen('peer'), seen('peer')], take: 1 },
    { case: 'at its share: only a feed free for a lease duration', views: [held, held, missing(14_000), seen('peer')], take: undefined },
    { case: 'at its share, free for a lease duration: somebody must pull it', views: [held, held, missing(15_000), seen('peer')], take: 2 },
  ];
  for (const row of table) assert.equal(pickFeed(row.views, ME, NOW, TIMING, first), row.take, row.case);
});

test('whom a replica asks for a feed, and when', () => {
  const busy = [seen('busy', 1_000), seen('busy', 1_000), seen('busy', 1_000)];
  const table: { case: string; views: FeedView[]; lastAskAt?: number; ask: number | undefined }[] = [
    { case: 'two fewer than the busiest: asks for a feed renewed lately', views: [held, ...busy], ask: 1 },
    { case: 'one fewer: does not ask', views: [held, held, ...busy], ask: undefined },
    { case: 'asked less than a lease duration ago: waits', views: [held, ...busy], lastAskAt: NOW - 14_000, ask: undefined },
    { case: 'not renewed lately (maybe dead): waits for expiry instead', views: [seen('busy', 5_000), seen('busy', 5_000)], ask: undefined },
    { case: 'already asked for (wanted-by set): the next one', views: [seen('busy', 0, { annotations: { [WANTED_ANNOTATION]: 'x' } }), seen('busy', 0)], ask: 1 },
  ];
  for (const row of table) assert.equal(pickAsk(row.views, ME, NOW, row.lastAskAt ?? -Infinity, TIMING, first)?.index, row.ask, row.case);
  assert.deepEqual(pickAsk([held, ...busy], ME, NOW, -Infinity, TIMING, first), { index: 1, lease: busy[0]!.seen!.lease, theirs: 3, ours: 1 });
});

test('free means no Lease, released, this replica, or expired on this replica\'s clock', () => {
  assert.equal(isFree({ held: false }, ME, NOW, TIMING), false);
  assert.equal(isFree(missing(), ME, NOW, TIMING), true);
  assert.equal(isFree(seen(undefined), ME, NOW, TIMING), true);
  assert.equal(isFree(seen(ME), ME, NOW, TIMING), true);
  assert.equal(isFree(seen('peer', 14_999), ME, NOW, TIMING), false);
  assert.equal(isFree(seen('peer', 15_000), ME, NOW, TIMING), true);
  assert.equal(shouldHandOver(2), true);
  assert.equal(shouldHandOver(1), false);
});

test('every Lease write is built by one builder: acquire drops wanted-by and counts a transition, ask leaves the spec as read', () => {
  const prev = lease('peer', { [WANTED_ANNOTATION]: ME, kept: 'v' });
  assert.deepEqual(leaseSpec({ kind: 'acquire', identity: ME, previous: prev, now: 5 }, TIMING), {
    holder: ME,
    leaseDurationSeconds: 15,
    acquireTime: 5,
    renewTime: 5,
    leaseTransitions: 4,
    annotations: { kept: 'v' },
  });
  assert.equal(leaseSpec({ kind: 'acquire', identity: ME, now: 5 }, TIMING).leaseTransitions, 0);
  const h = { resourceVersion: '1', acquireTime: 2, transitions: 4, renewedSentAt: 2, ready: true, annotations: {}, cancelDeadline: () => {} };
  assert.deepEqual(leaseSpec({ kind: 'renew', identity: ME, held: h, now: 9, annotations: { a: 'b' } }, TIMING), {
    holder: ME,
    leaseDurationSeconds: 15,
    acquireTime: 2,
    renewTime: 9,
    leaseTransitions: 4,
    annotations: { a: 'b' },
  });
  assert.deepEqual(leaseSpec({ kind: 'release', held: h, now: 9, annotations: {} }, TIMING), {
    holder: undefined,
    leaseDurationSeconds: 1,
    acquireTime: 9,
    renewTime: 9,
    leaseTransitions: 4,
    annotations: {},
  });
  const asked = leaseSpec({ kind: 'ask', lease: { ...prev, annotations: {}, renewTime: 3, acquireTime: 1 }, asker: ME, now: 9 }, TIMING);
  assert.deepEqual(asked, { holder: 'peer', leaseDurationSeconds: 15, acquireTime: 1, renewTime: 3, leaseTransitions: 3, annotations: { [WANTED_ANNOTATION]: ME } });
});
