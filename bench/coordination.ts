/**
 * `npm run bench coordination`: what one puller per feed costs and saves.
 *
 * Three runs of the real binary against the TAP and PoD simulators, each BENCH_COORD_SECS long
 * (default 90): one replica without coordination, three replicas with Leases (default timings),
 * three replicas without coordination (what a DaemonSet without Leases would do). Printed per run:
 * TAP requests (and per 24 h at that rate), 429 answers, PoD sessions and 409 refusals, events
 * delivered twice, Kubernetes API requests. In the coordinated run, the holder of the most feeds is
 * killed (SIGKILL) half way: takeover time and duplicates of that failover are printed.
 */
import { once } from 'node:events';
import { decodeState } from '../plugin/coordination/carried-state.ts';
import { fingerprint } from '../plugin/pipeline/dedupe.ts';
import {
  FEEDS,
  LEASES,
  NS,
  POD_TYPES,
  holders,
  podDelivered,
  replicaOf,
  startCluster,
  stopCluster,
  type Cluster,
  type ClusterOptions,
} from '../test/helpers/replicas.ts';

const DAY_MS = 86_400_000;

interface RunResult {
  name: string;
  minutes: number;
  tapRequests: number;
  tap429: number;
  podSessions: number;
  pod409: number;
  podEvents: number;
  podTwice: number;
  apiRequests: number;
  failover?: string;
}

async function run(name: string, o: ClusterOptions, durationMs: number, kill: boolean): Promise<RunResult> {
  const c: Cluster = await startCluster({ tapRequestPeriodSecs: 5, ...o });
  let failover: string | undefined;
  try {
    await new Promise((r) => setTimeout(r, durationMs / 2));
    if (kill) failover = await killBusiest(c);
    await new Promise((r) => setTimeout(r, durationMs / 2));
  } finally {
    await stopCluster(c);
  }
  const minutes = (Date.now() - c.startedAt) / 60_000;
  let podEvents = 0;
  let podTwice = 0;
  for (const type of POD_TYPES) {
    const all = [...podDelivered(c, type).values()].flat();
    podEvents += all.length;
    podTwice += all.length - new Set(all).size;
  }
  return {
    name,
    minutes,
    tapRequests: c.tap.requests.length,
    tap429: c.tap.requests.filter((r) => r.status === 429).length,
    podSessions: c.pod.sessions.filter((s) => s.status === 101).length,
    pod409: c.pod.sessions.filter((s) => s.status === 409).length,
    podEvents,
    podTwice,
    apiRequests: c.leases.requests.length,
    failover,
  };
}

/** kill -9 of the replica holding the most feeds; returns what the failover cost. */
async function killBusiest(c: Cluster): Promise<string> {
  const h = holders(c);
  const counts = c.replicas.map((r) => ({ r, n: FEEDS.filter((f) => h[f] === r.name).length })).sort((a, b) => b.n - a.n);
  const victim = counts[0]!.r;
  const feeds = FEEDS.filter((f) => h[f] === victim.name);
  const killedAt = Date.now();
  victim.child.kill('SIGKILL');
  await once(victim.child, 'exit');
  const carried = new Map(feeds.map((f) => [f, decodeState(c.leases.lease(NS, LEASES[f])?.metadata?.annotations ?? {}).state]));
  const deadline = Date.now() + 120_000;
  while (!feeds.every((f) => holders(c)[f] && holders(c)[f] !== victim.name) && Date.now() < deadline) await new Promise((r) => setTimeout(r, 100));
  const parts: string[] = [];
  for (const f of feeds) {
    const w = c.leases.writes.find((x) => x.name === LEASES[f] && x.at >= killedAt && replicaOf(x.holder) !== victim.name);
    let twice = '';
    if (f.startsWith('pod/')) {
      const type = f.slice(4) as (typeof POD_TYPES)[number];
      const victimKeys = podDelivered(c, type).get(victim.name) ?? [];
      const keys = new Set(carried.get(f)?.keys?.[type] ?? []);
      twice = `, ${victimKeys.filter((k) => !keys.has(fingerprint(k))).length} delivered by ${victim.name} after its last renewal`;
    }
    parts.push(`${f} taken over after ${w ? `${w.at - killedAt} ms by ${replicaOf(w.holder)}` : 'no takeover'}${twice}`);
  }
  return `killed ${victim.name} (${feeds.join(', ')}): ${parts.join('; ')}`;
}

export async function runCoordinationBench(): Promise<RunResult[]> {
  const durationMs = Number(process.env.BENCH_COORD_SECS ?? 90) * 1000;
  const defaults = { lease_duration_secs: 15, renew_deadline_secs: 10, retry_period_secs: 2 };
  const results = [
    await run('1 replica, no coordination', { replicas: 1, coordination: null }, durationMs, false),
    await run('3 replicas, Leases', { replicas: 3, coordination: defaults }, durationMs, true),
    await run('3 replicas, no coordination', { replicas: 3, coordination: null }, durationMs, false),
  ];
  const per24h = (n: number, minutes: number) => Math.round((n / minutes) * (DAY_MS / 60_000));
  process.stdout.write(
    '| run | minutes | TAP requests | TAP requests per 24 h | TAP 429 | PoD sessions | PoD 409 | PoD events | PoD delivered twice | Kubernetes API requests per 24 h |\n|---|---|---|---|---|---|---|---|---|---|\n',
  );
  for (const r of results) {
    process.stdout.write(
      `| ${r.name} | ${r.minutes.toFixed(1)} | ${r.tapRequests} | ${per24h(r.tapRequests, r.minutes)} | ${r.tap429} | ${r.podSessions} | ${r.pod409} | ${r.podEvents} | ${r.podTwice} | ${per24h(r.apiRequests, r.minutes)} |\n`,
    );
  }
  for (const r of results) if (r.failover) process.stdout.write(`${r.name}: ${r.failover}\n`);
  return results;
}
