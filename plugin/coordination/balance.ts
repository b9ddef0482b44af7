/**
 * Which feed a replica takes, or asks for: pure functions of what it has seen of the Leases, its
 * own identity, the time and a random number. No I/O; the coordinator (coordinator.ts) acts on them.
 *
 * - A feed is free when no Lease exists, its holder is empty (released) or this replica, or its
 *   holder has not renewed for the Lease's duration since this replica first saw that renewal
 *   (expiry judged on this replica's clock, as client-go does: clocks are never compared).
 * - Spreading: the replicas a replica can see are the holders of live Leases and itself; its share
 *   is the number of feeds over that, rounded up. Below its share it takes a free feed once the feed
 *   has been free for as many retry periods as it holds feeds (a replica holding none, which nobody
 *   can see, goes first); at or above its share, only a feed free for a lease duration (somebody
 *   must pull it). Feeds do not move away from a live holder.
 * - A feed whose Lease names this replica as holder or as `wanted-by` is taken first. One released
 *   for another replica that asked for it waits a lease duration for everyone else.
 * - Asking: a replica holding at least two feeds fewer than the busiest live holder asks for one
 *   of its feeds renewed lately (asking a dead holder would only wait for its expiry anyway) and not
 *   already asked for; at most once per lease duration.
 * - A holder asked for a feed hands it over only while it holds at least two it is not handing
 *   over already; holding one, it is not the busiest any more and declines.
 */
import type { Lease } from './lease-api.ts';

/** The replica that asked for a feed (rebalancing); kept on release so it takes the feed first. */
export const WANTED_ANNOTATION = 'proofpoint-sidecar/wanted-by';

export interface BalanceTiming {
  leaseDurationMs: number;
  retryPeriodMs: number;
}

/** What a replica knows of one feed. */
export interface FeedView {
  held: boolean;
  /** Last observation of a Lease not held here (undefined lease: 404); observedAt: when its holder or renewTime last changed. */
  seen?: { lease?: Lease; observedAt: number };
  /** When this replica first saw the feed free. */
  freeSince?: number;
}

export function leaseDurationOf(lease: Lease, timing: BalanceTiming): number {
  return (lease.leaseDurationSeconds ?? timing.leaseDurationMs / 1000) * 1000;
}

export function isFree(v: FeedView, identity: string, now: number, timing: BalanceTiming): boolean {
  if (!v.seen) return false;
  const lease = v.seen.lease;
  if (!lease || !lease.holder || lease.holder === identity) return true;
  return now - v.seen.observedAt >= leaseDurationOf(lease, timing);
}

/** A new read is a renewal (or a release, a take-over, a deletion) when holder, renewTime or existence changed. */
export function isRenewal(before: Lease | undefined, after: Lease | undefined): boolean {
  return before?.holder !== after?.holder || before?.renewTime !== after?.renewTime || (before === undefined) !== (after === undefined);
}

/** The index of the free feed to take now, or undefined. */
export function pickFeed(views: readonly FeedView[], identity: string, now: number, timing: BalanceTiming, random: () => number): number | undefined {
  const free = views.map((v, i) => ({ v, i })).filter(({ v }) => !v.held && isFree(v, identity, now, timing));
  if (free.length === 0) return undefined;
  const mine = free.find(({ v }) => v.seen?.lease?.holder === identity || v.seen?.lease?.annotations[WANTED_ANNOTATION] === identity);
  if (mine) return mine.i;
  const replicas = new Set([identity]);
  for (const v of views) {
    const holder = v.seen?.lease?.holder;
    if (!v.held && holder && !isFree(v, identity, now, timing)) replicas.add(holder);
  }
  const share = Math.ceil(views.length / replicas.size);
  const held = views.filter((v) => v.held).length;
  // Replicas holding nothing are invisible (no Lease names them), so the more a replica holds,
  // the longer a feed must have been free before it tries: the least loaded go first.
  const wait = held < share ? held * timing.retryPeriodMs : timing.leaseDurationMs;
  const eligible = free.filter(({ v }) => {
    const waited = now - (v.freeSince ?? now);
    const wanted = v.seen?.lease?.annotations[WANTED_ANNOTATION];
    if (wanted && !v.seen?.lease?.holder) return waited >= timing.leaseDurationMs;
    return waited >= wait;
  });
  if (eligible.length === 0) return undefined;
  return eligible[Math.floor(random() * eligible.length)]!.i;
}

export interface Ask {
  /** The feed to ask for. */
  index: number;
  lease: Lease;
  /** Feeds its holder holds, and this replica. */
  theirs: number;
  ours: number;
}

/** The feed to ask its holder for, or undefined; `lastAskAt`: when this replica last asked. */
export function pickAsk(views: readonly FeedView[], identity: string, now: number, lastAskAt: number, timing: BalanceTiming, random: () => number): Ask | undefined {
  if (now - lastAskAt < timing.leaseDurationMs) return undefined;
  const ours = views.filter((v) => v.held).length;
  const byHolder = new Map<string, number[]>();
  views.forEach((v, i) => {
    const lease = v.seen?.lease;
    if (v.held || !lease?.holder || isFree(v, identity, now, timing)) return;
    byHolder.set(lease.holder, [...(byHolder.get(lease.holder) ?? []), i]);
  });
  const [, busiest] = [...byHolder].sort((a, b) => b[1].length - a[1].length)[0] ?? [];
  if (!busiest || busiest.length - ours < 2) return undefined;
  const fresh = busiest.filter((i) => {
    const seen = views[i]!.seen!;
    return now - seen.observedAt <= 2 * timing.retryPeriodMs && !seen.lease!.annotations[WANTED_ANNOTATION];
  });
  if (fresh.length === 0) return undefined;
  const index = fresh[Math.floor(random() * fresh.length)]!;
  return { index, lease: views[index]!.seen!.lease!, theirs: busiest.length, ours };
}

/** Asked for a feed while holding `notHandingOver` feeds not being handed over already: give it? */
export function shouldHandOver(notHandingOver: number): boolean {
  return notHandingOver >= 2;
}
