/**
 * Leader election per feed, on the injected clock: three coordinators talk through the sidecar's
 * Lease client (plugin/coordination/kubernetes.ts) to the in-process Lease server, each with its own
 * token so the server can partition one. Time moves in 100 ms steps; between steps the real HTTP
 * exchanges settle. "Pulling" is what the handlers were told: from `acquired` until `lost`.
 *
 * Checked: every feed is pulled by at most one replica at every acquisition; feeds spread 2/2/1;
 * a killed holder's feeds are taken over within two lease durations, with the state it last
 * renewed; a partitioned holder stops pulling before any peer starts; a release hands feeds over
 * within a few retry periods and says it was clean; a refused token never pulls.
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { writeFileSync } from 'node:fs';
import path from 'node:path';
import { pino } from 'pino';
import { startLeaseServer, type LeaseSimServer } from '../helpers/lease-server.ts';
import { createKubernetesLeaseApi } from '../../plugin/coordination/kubernetes.ts';
import { Coordinator, type Acquisition } from '../../plugin/coordination/coordinator.ts';
import { STATE_ANNOTATION, decodeState, type CarriedState } from '../../plugin/coordination/carried-state.ts';
import type { Lease, LeaseApi, LeaseSpec } from '../../plugin/coordination/lease-api.ts';
import type { Feed } from '../../plugin/coordination/feeds.ts';
import { coordinationSchema } from '../../plugin/config/schema.ts';
import { FakeClock, flushMicrotasks } from '../helpers/fake-clock.ts';
import { tmpDir } from '../helpers/tmp.ts';

const NS = 'sidecars';
const TIMING = { leaseDurationMs: 15_000, renewDeadlineMs: 10_000, retryPeriodMs: 2_000 };

function feeds(n: number): Feed[] {
  return Array.from({ length: n }, (_, i) => ({
    id: `in/f${i}`,
    lease: `pps-in-f${i}`,
    type: 'proofpoint_on_demand' as const,
    input: 'in',
    services: [`f${i}`],
    requestPools: [],
    requestWindowMs: 0,
    startTimes: { [`f${i}`]: null },
    dedupTtlMs: { [`f${i}`]: 3_600_000 },
    compareCursors: () => 0,
    create: () => {
      throw new Error('not used: the coordinator does not build sources');
    },
  }));
}

/** Counts calls in flight; a killed replica's calls never end (its process is gone). */
class ObservedApi implements LeaseApi {
  inflight = 0;
  dead = false;
  readonly #inner: LeaseApi;
  constructor(inner: LeaseApi) {
    this.#inner = inner;
  }
  get namespace() {
    return this.#inner.namespace;
  }
  #track<T>(p: () => Promise<T>): Promise<T> {
    if (this.dead) return new Promise<T>(() => {});
    this.inflight++;
    return p().finally(() => this.inflight--);
  }
  get(name: string, signal: AbortSignal): Promise<Lease | undefined> {
    return this.#track(() => this.#inner.get(name, signal));
  }
  create(name: string, spec: LeaseSpec, signal: AbortSignal): Promise<Lease> {
    return this.#track(() => this.#inner.create(name, spec, signal));
  }
  update(name: string, rv: string, spec: LeaseSpec, signal: AbortSignal): Promise<Lease> {
    return this.#track(() => this.#inner.update(name, rv, spec, signal));
  }
}

interface Event {
  at: number;
  replica: string;
  feed: string;
  what: 'acquired' | 'lost' | 'released';
  how?: Acquisition;
}

class World {
  readonly clock = new FakeClock();
  readonly events: Event[] = [];
  readonly violations: string[] = [];
  readonly replicas: Replica[] = [];
  readonly feeds: Feed[];
  constructor(
    readonly server: LeaseSimServer,
    n: number,
  ) {
    this.feeds = feeds(n);
  }

  pullers(feed: string): string[] {
    return this.replicas.filter((r) => !r.api.dead && r.pulling.has(feed)).map((r) => r.name);
  }

  async add(name: string, token: string): Promise<Replica> {
    const dir = tmpDir('pps-coord-');
    const file = path.join(dir, 'kubeconfig');
    writeFileSync(file, this.server.kubeconfig(token, { namespace: NS }));
    const cfg = coordinationSchema.parse({ type: 'kubernetes', kubeconfig: file });
    const api = new ObservedApi(await createKubernetesLeaseApi(cfg, { userAgent: `test ${name}` }));
    const r = new Replica(this, name, token, api);
    this.replicas.push(r);
    return r;
  }

  async step(ms = 100): Promise<void> {
    await this.clock.advance(ms);
    // Let the real HTTP exchanges of this instant finish (the partitioned ones wait for their timeout).
    let quiet = 0;
    const giveUp = Date.now() + 20_000;
    while (quiet < 3 && Date.now() < giveUp) {
      await flushMicrotasks();
      const busy = this.replicas.some((r) => !r.api.dead && !r.partitioned && r.api.inflight > 0);
      quiet = busy ? 0 : quiet + 1;
      if (busy) await new Promise((res) => setTimeout(res, 1));
    }
  }

  async run(ms: number, until?: () => boolean): Promise<number> {
    const start = this.clock.now();
    while (this.clock.now() - start < ms) {
      await this.step();
      if (until?.()) break;
    }
    return this.clock.now() - start;
  }

  held(): Map<string, string[]> {
    const m = new Map<string, string[]>();
    for (const r of this.replicas) if (!r.api.dead) m.set(r.name, [...r.pulling].sort());
    return m;
  }
}

class Replica {
  readonly pulling = new Set<string>();
  readonly coordinator: Coordinator;
  partitioned = false;
  state = 0;
  constructor(
    readonly world: World,
    readonly name: string,
    readonly token: string,
    readonly api: ObservedApi,
  ) {
    this.coordinator = new Coordinator({
      api,
      identity: name,
      feeds: world.feeds,
      timing: TIMING,
      clock: world.clock,
      logger: pino({ level: 'silent' }),
      handlers: {
        acquired: async (feed, how) => {
          if (api.dead) return;
          const others = world.pullers(feed.id).filter((n) => n !== name);
          if (others.length > 0) world.violations.push(`${name} acquired ${feed.id} while ${others.join(', ')} pulled it`);
          this.pulling.add(feed.id);
          world.events.push({ at: world.clock.now(), replica: name, feed: feed.id, what: 'acquired', how });
        },
        lost: (feed) => {
          if (api.dead) return;
          this.pulling.delete(feed.id);
          world.events.push({ at: world.clock.now(), replica: name, feed: feed.id, what: 'lost' });
        },
        release: async (feed) => {
          this.pulling.delete(feed.id);
          world.events.push({ at: world.clock.now(), replica: name, feed: feed.id, what: 'released' });
        },
        snapshot: async (feed): Promise<CarriedState> => ({
          v: 1,
          at: world.clock.now(),
          cursors: { [feed.services[0]!]: { by: name, n: ++this.state } },
          start_times: feed.startTimes,
        }),
      },
    });
  }

  /** kill -9: no more requests, nothing pulled, no release. */
  kill(): void {
    this.api.dead = true;
    this.pulling.clear();
  }

  partition(): void {
    this.partitioned = true;
    this.world.server.partition(this.token);
  }
}

async function world(n = 5, replicas = 3): Promise<World> {
  const tokens = Array.from({ length: replicas }, (_, i) => `token-${i}`);
  const server = await startLeaseServer({ tokens });
  const w = new World(server, n);
  for (let i = 0; i < replicas; i++) (await w.add(`replica-${'abc'[i]}`, tokens[i]!)).coordinator.start();
  return w;
}

async function close(w: World): Promise<void> {
  for (const r of w.replicas) r.api.dead = true;
  await w.server.close();
}

const allHeld = (w: World) => w.feeds.every((f) => w.pullers(f.id).length === 1);

test('three replicas take five feeds: one puller per feed, spread 2/2/1, renewals keep them in place', async () => {
  const w = await world();
  try {
    await w.run(30_000, () => allHeld(w));
    assert.ok(allHeld(w), `every feed pulled: ${JSON.stringify([...w.held()])}`);
    const counts = [...w.held().values()].map((f) => f.length).sort();
    assert.deepEqual(counts, [1, 2, 2], `spread: ${JSON.stringify([...w.held()])}`);
    const before = JSON.stringify([...w.held()]);
    await w.run(60_000);
    assert.equal(JSON.stringify([...w.held()]), before, 'renewed Leases do not move');
    assert.deepEqual(w.violations, []);
    assert.equal(w.events.filter((e) => e.what === 'lost').length, 0);
    // Connections are kept alive: the client alone would open one per request.
    assert.ok(w.server.connections * 5 < w.server.requests.length, `${w.server.connections} connections for ${w.server.requests.length} requests`);
    // Every Lease names its holder, with the state it renews.
    for (const f of w.feeds) {
      const lease = w.server.lease(NS, f.lease);
      assert.equal(lease.spec.holderIdentity, w.pullers(f.id)[0]);
      assert.equal(lease.spec.leaseDurationSeconds, 15);
      assert.match(lease.spec.renewTime, /\.\d{6}Z$/);
      assert.ok(decodeState(lease.metadata.annotations).state, 'state annotation written');
    }
  } finally {
    await close(w);
  }
});

test('kill -9 of a holder: its feeds are taken over within two lease durations, from the state it last renewed', async () => {
  const w = await world();
  try {
    await w.run(30_000, () => allHeld(w));
    await w.run(10_000);
    const victim = w.replicas.find((r) => r.pulling.size === 2)!;
    const taken = [...victim.pulling];
    const lastState = new Map(
      taken.map((id) => [id, decodeState(w.server.lease(NS, w.feeds.find((f) => f.id === id)!.lease).metadata.annotations).state!]),
    );
    const killedAt = w.clock.now();
    victim.kill();
    await w.run(60_000, () => allHeld(w));
    assert.ok(allHeld(w), 'the survivors pull every feed');
    for (const id of taken) {
      const e = w.events.find((x) => x.feed === id && x.what === 'acquired' && x.at > killedAt)!;
      const takeover = e.at - killedAt;
      assert.ok(takeover <= 2 * TIMING.leaseDurationMs, `${id} taken over after ${takeover} ms`);
      assert.ok(takeover >= TIMING.leaseDurationMs - TIMING.retryPeriodMs, `${id} not taken before the Lease could expire (${takeover} ms)`);
      assert.equal(e.how?.from, 'expired');
      assert.equal(e.how?.previousHolder, victim.name);
      assert.deepEqual(e.how?.carried?.cursors, lastState.get(id)!.cursors, 'the carried state is the one last renewed');
    }
    assert.deepEqual(
      [...w.held().values()].map((f) => f.length).sort(),
      [2, 3],
    );
    assert.deepEqual(w.violations, []);
  } finally {
    await close(w);
  }
});

test('partition from the API server: the holder stops pulling before any peer starts, and the peers take over', async () => {
  const w = await world();
  try {
    await w.run(30_000, () => allHeld(w));
    await w.run(5_000);
    const cut = w.replicas.find((r) => r.pulling.size === 2)!;
    const feedsOfCut = [...cut.pulling];
    const cutAt = w.clock.now();
    cut.partition();
    await w.run(60_000, () => feedsOfCut.every((id) => w.pullers(id).length === 1 && !cut.pulling.has(id)));
    for (const id of feedsOfCut) {
      const lost = w.events.find((e) => e.feed === id && e.what === 'lost' && e.replica === cut.name)!;
      const taken = w.events.find((e) => e.feed === id && e.what === 'acquired' && e.at > cutAt && e.replica !== cut.name)!;
      assert.ok(lost, `${cut.name} stopped pulling ${id}`);
      assert.ok(lost.at - cutAt <= TIMING.renewDeadlineMs, `stopped within the renew deadline (${lost.at - cutAt} ms)`);
      assert.ok(taken, `${id} taken over`);
      assert.ok(
        taken.at - lost.at >= TIMING.leaseDurationMs - TIMING.renewDeadlineMs - TIMING.retryPeriodMs,
        `${id}: stopped ${taken.at - lost.at} ms before the peer started`,
      );
      assert.equal(taken.how?.from, 'expired');
    }
    assert.deepEqual(w.violations, []);
    assert.ok(cut.coordinator.status().some((s) => s.renewFailures > 0), 'renew failures counted');
    // Healed: it takes no feed from a live peer, but asks for one and is handed it.
    w.server.heal(cut.token);
    cut.partitioned = false;
    await w.run(60_000, () => cut.pulling.size === 1);
    assert.equal(cut.pulling.size, 1);
    const back = w.events.find((e) => e.replica === cut.name && e.what === 'acquired' && e.at > cutAt)!;
    assert.equal(back.how?.from, 'released', 'handed over, not taken');
    assert.ok(allHeld(w));
    assert.deepEqual(w.violations, []);
  } finally {
    await close(w);
  }
});

test('release on shutdown: peers take the feeds over within a few retry periods, told the release was clean', async () => {
  const w = await world();
  try {
    await w.run(30_000, () => allHeld(w));
    const leaving = w.replicas.find((r) => r.pulling.size === 2)!;
    const feedsOfLeaving = [...leaving.pulling];
    leaving.coordinator.stopAcquiring();
    // The sidecar stops its sources (pipeline.stop) before it releases.
    leaving.pulling.clear();
    // Peers may take a feed as soon as its release is written, before release() resolves.
    const releasedAt = w.clock.now();
    const releasing = leaving.coordinator.release(true);
    await w.run(5_000, () => leaving.coordinator.held().length === 0);
    await releasing;
    for (const id of feedsOfLeaving) {
      const name = w.feeds.find((f) => f.id === id)!.lease;
      const release = w.server.writes.filter((x) => x.name === name && x.token === leaving.token).at(-1)!;
      assert.equal(release.holder, undefined, 'holder cleared');
      assert.equal(decodeState(release.annotations).state?.released, true);
    }
    await w.run(20_000, () => allHeld(w));
    for (const id of feedsOfLeaving) {
      const e = w.events.find((x) => x.feed === id && x.what === 'acquired' && x.at >= releasedAt)!;
      assert.ok(e.at - releasedAt <= 4 * TIMING.retryPeriodMs, `${id} taken ${e.at - releasedAt} ms after the release`);
      assert.equal(e.how?.from, 'released');
      assert.equal(e.how?.carried?.released, true);
    }
    assert.deepEqual(w.violations, []);
    assert.equal(leaving.coordinator.status().reduce((n, s) => n + s.released, 0), 2);
  } finally {
    await close(w);
  }
});

test('a replica whose token is refused (401) never pulls; the others do', async () => {
  const server = await startLeaseServer({ tokens: ['good'] });
  const w = new World(server, 2);
  try {
    const good = await w.add('good', 'good');
    const bad = await w.add('bad', 'wrong');
    good.coordinator.start();
    bad.coordinator.start();
    await w.run(20_000, () => allHeld(w));
    assert.ok(allHeld(w));
    assert.equal(bad.pulling.size, 0);
    assert.ok(server.requests.some((r) => r.token === 'wrong' && r.status === 401));
    assert.deepEqual(w.violations, []);
  } finally {
    await close(w);
  }
});

test('persist() writes the state into the Lease out of turn; once the Lease is lost it answers false', async () => {
  const server = await startLeaseServer({ tokens: ['t'] });
  const w = new World(server, 1);
  try {
    const r = await w.add('solo', 't');
    r.coordinator.start();
    await w.run(10_000, () => allHeld(w));
    const how = w.events.find((e) => e.what === 'acquired')!.how!;
    const before = server.writes.length;
    const stateBefore = r.state;
    assert.equal(await how.persist(), true);
    assert.equal(server.writes.length, before + 1, 'one write, now');
    const last = decodeState(server.writes.at(-1)!.annotations).state!;
    assert.deepEqual(last.cursors, { f0: { by: 'solo', n: stateBefore + 1 } }, 'it carries the state as of the call');
    // Cut off: persist keeps trying every retry period until the renew deadline takes the feed away.
    r.partition();
    const answer = how.persist();
    await w.run(TIMING.renewDeadlineMs + 2 * TIMING.retryPeriodMs, () => r.pulling.size === 0);
    await w.run(3 * TIMING.retryPeriodMs);
    assert.equal(await answer, false);
    assert.equal(r.pulling.size, 0);
  } finally {
    await close(w);
  }
});

test('a replica that starts late asks the busiest one for a feed: it is handed over, never pulled twice', async () => {
  const server = await startLeaseServer({ tokens: ['t0', 't1', 't2'] });
  const w = new World(server, 4);
  try {
    const a = await w.add('replica-a', 't0');
    const b = await w.add('replica-b', 't1');
    a.coordinator.start();
    b.coordinator.start();
    await w.run(30_000, () => allHeld(w));
    await w.run(10_000);
    assert.deepEqual([a.pulling.size, b.pulling.size].sort(), [2, 2]);
    const c = await w.add('replica-c', 't2');
    c.coordinator.start();
    const joined = w.clock.now();
    await w.run(60_000, () => c.pulling.size === 1 && allHeld(w));
    assert.equal(c.pulling.size, 1, 'the late replica got a feed');
    assert.deepEqual([a.pulling.size, b.pulling.size].sort(), [1, 2]);
    const handed = w.events.find((e) => e.what === 'released' && e.at >= joined)!;
    const taken = w.events.find((e) => e.what === 'acquired' && e.replica === 'replica-c')!;
    assert.equal(handed.feed, taken.feed);
    assert.equal(taken.how?.from, 'released');
    assert.equal(taken.how?.carried?.released, true, 'the state was written after the final commit');
    assert.ok(taken.at - joined <= 2 * TIMING.leaseDurationMs, `handed over ${taken.at - joined} ms after the late replica started`);
    const lease = server.lease(NS, w.feeds.find((f) => f.id === taken.feed)!.lease);
    assert.equal(lease.metadata.annotations?.['proofpoint-sidecar/wanted-by'], undefined, 'the request is cleared by the taker');
    // Balanced now: nothing moves any more.
    const before = JSON.stringify([...w.held()]);
    await w.run(60_000);
    assert.equal(JSON.stringify([...w.held()]), before);
    assert.deepEqual(w.violations, []);
  } finally {
    await close(w);
  }
});
