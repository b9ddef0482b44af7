/**
 * A cluster of sidecar processes (the real binary, `plugin/main.ts run`) beside the TAP and PoD
 * simulators and, with coordination, the in-process Lease server; one forward receiver per replica
 * (each replica has its own Fluent Bit in a DaemonSet). For the replicas end-to-end test (test/e2e/replicas.test.ts) and the
 * coordination benchmark.
 */
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import type { ChildProcess } from 'node:child_process';
import { once } from 'node:events';
import { startLeaseServer, type LeaseSimServer } from './lease-server.ts';
import { startPodSimulator, type PodSimulator, type PodStreamType } from '../../plugin/simulator/pod/index.ts';
import { NO_QUIRKS, startTapSimulator, type TapSimulator } from '../../plugin/simulator/tap/index.ts';
import { TAP_SERVICES } from '../../plugin/sources/tap/create.ts';
import { ForwardReceiver } from './forward-receiver.ts';
import { startCli } from './cli.ts';
import { freePort, until } from './net.ts';

export const NS = 'sidecars';
export const POD_TYPES: PodStreamType[] = ['message', 'maillog', 'audit'];
export const FEEDS = ['tap/all', 'pod/message', 'pod/maillog', 'pod/audit'] as const;
export type FeedId = (typeof FEEDS)[number];
export const LEASES: Record<FeedId, string> = {
  'tap/all': 'proofpoint-sidecar-tap-all',
  'pod/message': 'proofpoint-sidecar-pod-message',
  'pod/maillog': 'proofpoint-sidecar-pod-maillog',
  'pod/audit': 'proofpoint-sidecar-pod-audit',
};

export interface Replica {
  name: string;
  token: string;
  child: ChildProcess;
  receiver: ForwardReceiver;
  httpPort: number;
  output: string[];
  exited?: number | null;
}

export interface Cluster {
  leases: LeaseSimServer;
  tap: TapSimulator;
  pod: PodSimulator;
  replicas: Replica[];
  startedAt: number;
  tapStart: number;
  /** Each replica's directory (config, kubeconfig, state), removed by stopCluster. */
  dirs: string[];
}

export interface ClusterOptions {
  replicas?: number;
  /** globals.coordination timings; null: no coordination (every replica pulls every feed). */
  coordination?: { lease_duration_secs: number; renew_deadline_secs: number; retry_period_secs: number } | null;
  /** TAP requests per pool per 24 h, at the simulator and in the sidecars' config. */
  tapBudget?: number;
  tapStartHoursAgo?: number;
  tapRequestPeriodSecs?: number;
  podRates?: Partial<Record<PodStreamType, number>>;
  /** TAP events per hour per service (default 1800, messagesDelivered 3600). */
  tapRatePerHour?: number;
}

export async function startCluster(o: ClusterOptions = {}): Promise<Cluster> {
  const names = Array.from({ length: o.replicas ?? 3 }, (_, i) => `replica-${'abcdefghij'[i]}`);
  const leases = await startLeaseServer({ tokens: names.map((n) => `token-${n}`) });
  // As in a DaemonSet rollout, the replicas meet the API server together: it answers nobody until
  // every process is up (tsx start-up takes a second or two each).
  for (const n of names) leases.partition(`token-${n}`);
  const budget = o.tapBudget ?? 1800;
  const tap = await startTapSimulator({
    quirks: NO_QUIRKS,
    ratesPerHour: o.tapRatePerHour !== undefined
      ? { clicksBlocked: o.tapRatePerHour, clicksPermitted: o.tapRatePerHour, messagesBlocked: o.tapRatePerHour, messagesDelivered: o.tapRatePerHour }
      : { clicksBlocked: 1800, clicksPermitted: 1800, messagesBlocked: 1800, messagesDelivered: 3600 },
    budgetPerPool: budget,
  });
  const pod = await startPodSimulator({ rate: o.podRates ?? { message: 30, maillog: 60, audit: 3 }, historyMs: 5_000, archiveStalenessMs: 1000 });
  const tapStart = Date.now() - (o.tapStartHoursAgo ?? 0.5) * 3600_000;
  const startTime = new Date(tapStart).toISOString().replace(/\.\d{3}Z$/, 'Z');
  const replicas: Replica[] = [];
  const dirs: string[] = [];
  for (const name of names) {
    // Not tmpDir(): the benchmark uses this too, outside node:test.
    const dir = mkdtempSync(path.join(tmpdir(), 'pps-replica-'));
    dirs.push(dir);
    const kubeconfig = path.join(dir, 'kubeconfig');
    writeFileSync(kubeconfig, leases.kubeconfig(`token-${name}`, { namespace: NS }));
    const receiver = new ForwardReceiver();
    await receiver.listen(0);
    const httpPort = await freePort();
    const config = path.join(dir, 'sidecar.json');
    const coordination = o.coordination === null ? undefined : { type: 'kubernetes', kubeconfig, ...(o.coordination ?? {}) };
    writeFileSync(
      config,
      JSON.stringify({
        globals: {
          state_dir: path.join(dir, 'state'),
          log_level: 'info',
          shutdown_timeout_secs: 5,
          http: { listen: `127.0.0.1:${httpPort}` },
          ...(coordination ? { coordination } : {}),
        },
        output: { type: 'forward', host: '127.0.0.1', port: receiver.port },
        inputs: {
          proofpoint_tap: {
            id: 'tap',
            credentials: tap.credentials,
            override_url_base: tap.url,
            window_lag_secs: 2,
            settle_delay_secs: 60,
            settle_window_secs: 30,
            max_requests_per_day: budget,
            services: Object.fromEntries(
              TAP_SERVICES.map((s) => [s, { start_time_in_utc: startTime, request_period_in_seconds: o.tapRequestPeriodSecs ?? 1 }]),
            ),
          },
          proofpoint_on_demand: {
            id: 'pod',
            credentials: pod.credentials,
            override_url_base: pod.url,
            archive_staleness_secs: 1,
            batch_flush_secs: 0.1,
            services: Object.fromEntries(POD_TYPES.map((t) => [t, { request_period_in_seconds: 1 }])),
          },
        },
      }),
    );
    const child = startCli(['run', '--config', config], { env: { POD_NAME: name, FORCE_COLOR: '0' } });
    const r: Replica = { name, token: `token-${name}`, child, receiver, httpPort, output: [] };
    child.stdout!.on('data', (c: Buffer) => r.output.push(c.toString()));
    child.stderr!.on('data', (c: Buffer) => r.output.push(c.toString()));
    child.on('exit', (code) => (r.exited = code));
    replicas.push(r);
  }
  await until(
    async () => (await Promise.all(replicas.map((r) => fetch(`http://127.0.0.1:${r.httpPort}/healthz`).then((x) => x.ok, () => false)))).every(Boolean),
    'every replica up',
    60_000,
  );
  for (const n of names) leases.heal(`token-${n}`);
  return { leases, tap, pod, replicas, startedAt: Date.now(), tapStart, dirs };
}

export async function stopCluster(c: Cluster): Promise<void> {
  if (process.env.REPLICAS_DEBUG) {
    for (const r of c.replicas) console.error(`----- ${r.name}\n${r.output.join('').slice(-20_000)}`);
  }
  for (const r of c.replicas) if (r.exited === undefined) r.child.kill('SIGKILL');
  await Promise.all(c.replicas.map((r) => r.receiver.close()));
  await Promise.all([c.leases.close(), c.tap.close(), c.pod.close()]);
  await Promise.all(c.replicas.map((r) => (r.exited === undefined ? once(r.child, 'exit') : undefined)));
  for (const dir of c.dirs) rmSync(dir, { recursive: true, force: true });
}

/** The replica (its POD_NAME) of a holder identity or a User-Agent. */
export const replicaOf = (identity: string | undefined) => identity?.replace(/_[0-9a-f]+$/, '');
export const uaReplica = (ua: string | undefined) => replicaOf(/\(replica ([^)]+)\)/.exec(ua ?? '')?.[1]);

export function holders(c: Cluster): Record<FeedId, string | undefined> {
  return Object.fromEntries(FEEDS.map((f) => [f, replicaOf(c.leases.lease(NS, LEASES[f])?.spec?.holderIdentity)])) as Record<FeedId, string | undefined>;
}

export function podKey(type: PodStreamType, message: string): string {
  const o = JSON.parse(message) as { guid?: string; id?: string };
  return (type === 'maillog' ? o.id : o.guid) ?? '';
}

/** Delivered records of a PoD type per replica, as keys. */
export function podDelivered(c: Cluster, type: PodStreamType): Map<string, string[]> {
  return new Map(
    c.replicas.map((r) => [r.name, r.receiver.records.filter((x) => x.record.service === type).map((x) => podKey(type, x.record.message as string))]),
  );
}

/** Vendor-side check: per PoD type, accepted sessions of different replicas never overlap; no 409. */
export function podOverlaps(c: Cluster): string[] {
  const bad: string[] = [];
  for (const type of POD_TYPES) {
    const s = c.pod.sessions.filter((x) => x.type === type && x.status === 101).sort((a, b) => a.startedAt - b.startedAt);
    for (let i = 1; i < s.length; i++) {
      const prev = s[i - 1]!;
      const cur = s[i]!;
      if (uaReplica(prev.userAgent) !== uaReplica(cur.userAgent) && (prev.endedAt === undefined || prev.endedAt > cur.startedAt)) {
        bad.push(`${type}: session ${cur.id} of ${uaReplica(cur.userAgent)} opened while ${prev.id} of ${uaReplica(prev.userAgent)} was open`);
      }
    }
  }
  const refused = c.pod.sessions.filter((x) => x.status === 409);
  if (refused.length) bad.push(`${refused.length} PoD sessions refused 409 (two sessions of one token and type)`);
  return bad;
}

/** Vendor-side check: TAP requests of different replicas never overlap in time. */
export function tapOverlaps(c: Cluster): string[] {
  const bad: string[] = [];
  const r = [...c.tap.requests].sort((a, b) => a.at - b.at);
  for (let i = 1; i < r.length; i++) {
    const prev = r[i - 1]!;
    const cur = r[i]!;
    if (uaReplica(prev.userAgent) !== uaReplica(cur.userAgent) && (prev.endedAt === undefined || prev.endedAt > cur.at)) {
      bad.push(`TAP request of ${uaReplica(cur.userAgent)} at ${cur.at} while one of ${uaReplica(prev.userAgent)} was open`);
    }
  }
  return bad;
}

export async function scrape(r: Replica, urlPath: string): Promise<string> {
  const res = await fetch(`http://127.0.0.1:${r.httpPort}${urlPath}`);
  return res.text();
}
