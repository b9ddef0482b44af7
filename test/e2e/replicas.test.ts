/**
 * One puller per feed, end to end: three sidecar processes (the real binary, `plugin/main.ts run`) share the
 * feeds through the in-process Lease server (driven by the Lease client of plugin/coordination/kubernetes.ts in each process),
 * with the TAP and PoD simulators and one forward receiver per replica (each replica has its own
 * Fluent Bit in a DaemonSet). Each replica has its own token, so the Lease server can partition one.
 *
 * The simulators record who pulled what (User-Agent names the replica), so "one puller per feed at
 * every moment" is read off the vendor side: PoD sessions of one type never overlap across
 * replicas and none is refused 409; TAP requests of different replicas never overlap.
 *
 * Figures (takeover time, duplicates per failover, requests) are printed with `# figures:`.
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { once } from 'node:events';
import { TAP_SERVICES, type TapServiceName } from '../../plugin/sources/tap/create.ts';
import { decodeState } from '../../plugin/coordination/carried-state.ts';
import { fingerprint } from '../../plugin/pipeline/dedupe.ts';
import { until } from '../helpers/net.ts';
import {
  FEEDS,
  LEASES,
  NS,
  POD_TYPES,
  holders,
  podDelivered,
  podOverlaps,
  replicaOf,
  scrape,
  startCluster,
  stopCluster,
  tapOverlaps,
  uaReplica,
  type ClusterOptions,
} from '../helpers/replicas.ts';

const LEASE_S = 5;
const TIMING = { lease_duration_secs: LEASE_S, renew_deadline_secs: 3, retry_period_secs: 0.5 };
const cluster = (o: ClusterOptions = {}) => startCluster({ coordination: TIMING, ...o });

test('three replicas: one puller per feed, spread; kill -9 of a holder: taken over within two lease durations, nothing lost, duplicates only from its last renew period', async (t) => {
  const c = await cluster();
  t.after(() => stopCluster(c));
  await until(() => Object.values(holders(c)).every((h) => h !== undefined), 'every feed held', 60_000);
  // Spread: every replica pulls a feed (one that came late is handed one on request).
  const perReplica = () => c.replicas.map((r) => Object.values(holders(c)).filter((h) => h === r.name).length).sort().join('/');
  await until(() => perReplica() === '1/1/2', `feeds spread over the replicas (${perReplica()})`, 60_000);
  const spread = holders(c);
  // /readyz and /metrics say which feeds each replica holds.
  for (const r of c.replicas) {
    const mine = FEEDS.filter((f) => spread[f] === r.name);
    const ready = await scrape(r, '/readyz');
    for (const f of mine) assert.ok(ready.includes(f), `${r.name} /readyz names ${f}: ${ready}`);
    const metrics = await scrape(r, '/metrics');
    for (const f of mine) assert.match(metrics, new RegExp(`proofpoint_sidecar_lease_held\\{feed="${f}",lease="${LEASES[f]}"\\} 1`));
  }
  // Events flow from every feed.
  await until(
    () => POD_TYPES.every((t) => c.replicas.some((r) => r.receiver.records.some((x) => x.record.service === t))) && c.replicas.some((r) => r.receiver.records.some((x) => x.record.source === 'proofpoint_tap')),
    'events from every feed',
    60_000,
  );
  await new Promise((r) => setTimeout(r, 3000));

  // kill -9 the replica holding two feeds (the busiest maillog included when it can).
  const victim = c.replicas.find((r) => Object.values(holders(c)).filter((h) => h === r.name).length === 2)!;
  const victimFeeds = FEEDS.filter((f) => holders(c)[f] === victim.name);
  const killedAt = Date.now();
  victim.child.kill('SIGKILL');
  await once(victim.child, 'exit');
  // The state the victim carried in its Leases at death: what a takeover starts from.
  const lastState = new Map(victimFeeds.map((f) => [f, decodeState(c.leases.lease(NS, LEASES[f]).metadata.annotations ?? {}).state]));
  await until(() => victimFeeds.every((f) => holders(c)[f] !== undefined && holders(c)[f] !== victim.name), 'takeover', 30_000);
  const takeover: Record<string, number> = {};
  for (const f of victimFeeds) {
    const w = c.leases.writes.find((x) => x.name === LEASES[f] && x.at >= killedAt && replicaOf(x.holder) !== victim.name)!;
    takeover[f] = w.at - killedAt;
    assert.ok(takeover[f]! <= 2 * LEASE_S * 1000, `${f} taken over ${takeover[f]} ms after the kill (two lease durations: ${2 * LEASE_S * 1000} ms)`);
  }

  // Caught up: every PoD event the simulator had served by now (the streams go on, so "everything
  // served" would race with the newest frames) is delivered somewhere.
  const target = new Map(POD_TYPES.map((type) => [type, [...c.pod.servedKeys(type)]]));
  const missing = () =>
    POD_TYPES.flatMap((type) => {
      const got = new Set([...podDelivered(c, type).values()].flat());
      return target.get(type)!.filter((k) => !got.has(k)).map((k) => `${type}:${k}`);
    });
  let checked = 0;
  await until(
    () => {
      if (Date.now() - checked < 1000) return false;
      checked = Date.now();
      return missing().length === 0;
    },
    'every served PoD event delivered after the takeover',
    90_000,
  ).catch((err: Error) => {
    const m = missing();
    const sessions = c.pod.sessions.map((x) => `${x.id} ${x.type} ${x.mode} ${x.status} ${uaReplica(x.userAgent)} seq ${x.firstSeq}..${x.nextSeq} window ${x.windowFrom}..${x.windowTo} ${x.startedAt}..${x.endedAt}`);
    throw new Error(`${err.message}: ${m.length} missing (${m.slice(0, 5).join(', ')}), killed at ${killedAt}; sessions:\n${sessions.join('\n')}`);
  });
  const survivors = c.replicas.filter((r) => r !== victim);
  for (const r of survivors) r.child.kill('SIGTERM');
  for (const r of survivors) {
    const [code] = r.exited !== undefined ? [r.exited] : ((await once(r.child, 'exit')) as [number]);
    assert.equal(code, 0, `${r.name} exits cleanly on SIGTERM`);
  }
  // Released after the final commit: no holder, state marked released.
  for (const f of FEEDS) {
    const lease = c.leases.lease(NS, LEASES[f]);
    assert.equal(lease.spec.holderIdentity, undefined, `${f} released on SIGTERM`);
    assert.equal(decodeState(lease.metadata.annotations ?? {}).state?.released, true);
  }

  // One puller per feed at every moment, as the vendor saw it.
  assert.deepEqual(podOverlaps(c), []);
  assert.deepEqual(tapOverlaps(c), []);

  // PoD: nothing lost; every duplicate is an event the victim delivered after its last renewal.
  const figures: string[] = [];
  for (const type of POD_TYPES) {
    const delivered = podDelivered(c, type);
    const all = [...delivered.values()].flat();
    const got = new Set(all);
    const served = c.pod.servedKeys(type);
    assert.deepEqual([...served].filter((k) => !got.has(k)), [], `${type}: nothing lost`);
    const dups = all.length - got.size;
    const feed = `pod/${type}` as const;
    if (victimFeeds.includes(feed)) {
      const carried = new Set(lastState.get(feed)?.keys?.[type] ?? []);
      const counts = new Map<string, number>();
      for (const k of all) counts.set(k, (counts.get(k) ?? 0) + 1);
      const repeated = [...counts].filter(([, n]) => n > 1).map(([k]) => k);
      const afterLastRenew = new Set((delivered.get(victim.name) ?? []).filter((k) => !carried.has(fingerprint(k))));
      assert.deepEqual(repeated.filter((k) => !afterLastRenew.has(k)), [], `${type}: only events delivered after the last renewal come twice`);
      figures.push(`${feed}: takeover ${takeover[feed]} ms, ${dups} delivered twice of ${got.size} (${afterLastRenew.size} delivered by the victim after its last renewal)`);
    } else {
      assert.equal(dups, 0, `${type}: a feed that did not move delivers nothing twice`);
    }
  }
  // TAP: every event of the span collected is delivered, and at most the last renew period twice.
  const tapState = decodeState(c.leases.lease(NS, LEASES['tap/all']).metadata.annotations ?? {}).state!;
  let tapDups = 0;
  let tapDelivered = 0;
  for (const svc of TAP_SERVICES as readonly TapServiceName[]) {
    const collectedTo = Date.parse((tapState.cursors[svc] as { collected_to: string }).collected_to);
    const truth = c.tap.truth(svc, c.tapStart, collectedTo);
    const counts = new Map<string, number>();
    for (const r of c.replicas) {
      for (const x of r.receiver.records.filter((y) => y.record.service === svc)) {
        const k = c.tap.logicalKey(svc, x.record.message as string);
        counts.set(k, (counts.get(k) ?? 0) + 1);
      }
    }
    assert.deepEqual([...truth.keys()].filter((k) => !counts.has(k)), [], `TAP ${svc}: nothing lost up to ${new Date(collectedTo).toISOString()}`);
    tapDups += [...counts.values()].filter((n) => n > 1).reduce((a, n) => a + n - 1, 0);
    tapDelivered += counts.size;
  }
  const tapFigure = `tap/all: ${victimFeeds.includes('tap/all') ? `takeover ${takeover['tap/all']} ms, ` : 'did not move, '}${tapDups} delivered twice of ${tapDelivered}`;
  figures.push(tapFigure);
  if (!victimFeeds.includes('tap/all')) assert.equal(tapDups, 0, 'TAP did not move: nothing twice');
  const minutes = (Date.now() - c.startedAt) / 60_000;
  figures.push(`TAP requests: ${c.tap.requests.length} in ${minutes.toFixed(1)} min from all replicas, ${c.tap.requests.filter((r) => r.status === 429).length} answered 429`);
  for (const line of figures) console.log(`# figures: ${line}`);
  assert.equal(c.tap.requests.filter((r) => r.status === 429).length, 0);
  const logs = c.replicas.map((r) => r.output.join('')).join('');
  assert.ok(!logs.includes(c.tap.credentials.password) && !logs.includes(c.pod.credentials.api_key), 'credentials never logged');
});

test('partition from the API server: the holder stops pulling before its Lease expires; the TAP budget holds across the handover', async (t) => {
  // A budget of 8 requests per pool: the backfill spends it, so a new holder that forgot the
  // inherited requests would ask again and be answered 429.
  const c = await cluster({ tapBudget: 8, tapStartHoursAgo: 12, tapRatePerHour: 120 });
  t.after(() => stopCluster(c));
  await until(() => Object.values(holders(c)).every((h) => h !== undefined), 'every feed held', 60_000);
  await until(() => c.tap.budgetUsed('shared') >= 8, 'the TAP budget spent', 120_000);
  const holder = c.replicas.find((r) => r.name === holders(c)['tap/all'])!;
  const cutFeeds = FEEDS.filter((f) => holders(c)[f] === holder.name);
  const cutAt = Date.now();
  c.leases.partition(holder.token);
  await until(() => cutFeeds.every((f) => holders(c)[f] !== undefined && holders(c)[f] !== holder.name), 'takeover from the partitioned replica', 30_000);
  // The partitioned replica said it stopped, and it stopped before the new holder started.
  for (const f of cutFeeds) {
    const w = c.leases.writes.find((x) => x.name === LEASES[f] && x.at >= cutAt && replicaOf(x.holder) !== holder.name)!;
    const lastOwnRequest = f === 'tap/all'
      ? Math.max(0, ...c.tap.requests.filter((r) => uaReplica(r.userAgent) === holder.name).map((r) => r.endedAt ?? Infinity))
      : Math.max(0, ...c.pod.sessions.filter((s) => s.type === f.slice(4) && uaReplica(s.userAgent) === holder.name).map((s) => s.endedAt ?? Infinity));
    assert.ok(lastOwnRequest < w.at, `${f}: the partitioned replica stopped pulling (${lastOwnRequest - cutAt} ms after the cut) before ${replicaOf(w.holder)} took over (${w.at - cutAt} ms)`);
    console.log(`# figures: partition, ${f}: stopped ${lastOwnRequest - cutAt} ms after the cut, taken over after ${w.at - cutAt} ms`);
  }
  const metrics = await scrape(holder, '/metrics');
  assert.match(metrics, /proofpoint_sidecar_lease_renew_failures_total\{feed="tap\/all",lease="proofpoint-sidecar-tap-all"\} [1-9]/);
  assert.match(metrics, /proofpoint_sidecar_lease_held\{feed="tap\/all",lease="proofpoint-sidecar-tap-all"\} 0/);
  assert.match(holder.output.join(''), /Lost feed tap\/all/);
  // The new TAP holder inherited the spent budget: it waits instead of asking.
  await new Promise((r) => setTimeout(r, 4000));
  assert.equal(c.tap.requests.filter((r) => r.status === 429).length, 0, 'no request over the budget');
  assert.ok(c.tap.budgetUsed('shared') <= 8, `at most 8 requests in the pool (${c.tap.budgetUsed('shared')})`);
  const newHolder = c.replicas.find((r) => r.name === holders(c)['tap/all'])!;
  assert.match(newHolder.output.join(''), /pool shared is spent/);
  assert.deepEqual(podOverlaps(c), []);
  assert.deepEqual(tapOverlaps(c), []);
});
