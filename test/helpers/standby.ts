/**
 * A standby replica: the real binary (`plugin/main.ts run`, or a built `main.js`) with Kubernetes
 * coordination against the in-process Lease server, where every feed's Lease is already held by
 * a live peer, one feed per peer (so the standby has no share to take and asks nobody to
 * rebalance). Its inputs point at a closed port: a standby never contacts a vendor. For the
 * standby memory benchmark and the test of what a standby loads.
 */
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { spawn, type ChildProcess } from 'node:child_process';
import { once } from 'node:events';
import { startLeaseServer, type LeaseSimServer } from './lease-server.ts';
import { ForwardReceiver } from './forward-receiver.ts';
import { MAIN } from './cli.ts';
import { freePort, until } from './net.ts';

export const STANDBY_NS = 'sidecars';
const TAP_SERVICES = ['clicksBlocked', 'clicksPermitted', 'messagesBlocked', 'messagesDelivered'];
const POD_TYPES = ['message', 'maillog', 'audit'];
const LEASE_NAMES = ['proofpoint-sidecar-tap-all', ...POD_TYPES.map((t) => `proofpoint-sidecar-pod-${t}`)];

export interface Standby {
  leases: LeaseSimServer;
  child: ChildProcess;
  receiver: ForwardReceiver;
  httpPort: number;
  dir: string;
  output: string[];
}

/** Kubernetes MicroTime: exactly six fractional digits. */
function microTime(ms: number): string {
  return new Date(ms).toISOString().replace(/\.(\d{3})Z$/, '.$1000Z');
}

/** Every feed's Lease, held by a peer of its own, for `seconds` from now. */
async function holdAll(leases: LeaseSimServer, seconds: number): Promise<void> {
  for (const [i, name] of LEASE_NAMES.entries()) {
    const now = microTime(Date.now());
    const res = await fetch(`${leases.url}/apis/coordination.k8s.io/v1/namespaces/${STANDBY_NS}/leases`, {
      method: 'POST',
      headers: { authorization: 'Bearer token-peer', 'content-type': 'application/json' },
      body: JSON.stringify({
        apiVersion: 'coordination.k8s.io/v1',
        kind: 'Lease',
        metadata: { name, namespace: STANDBY_NS },
        spec: { holderIdentity: `peer-${i}_0123abcd`, leaseDurationSeconds: seconds, acquireTime: now, renewTime: now, leaseTransitions: 0 },
      }),
    });
    if (res.status !== 201) throw new Error(`seeding Lease ${name}: HTTP ${res.status} ${await res.text()}`);
  }
}

export interface StandbyOptions {
  /** Node arguments before the entry point; default `--import tsx` (the TypeScript sources). */
  nodeArgs?: string[];
  /** The entry point; default plugin/main.ts. */
  main?: string;
  env?: NodeJS.ProcessEnv;
}

/** Starts the standby and waits until its HTTP endpoint answers and it has read every Lease once. */
export async function startStandby(o: StandbyOptions = {}): Promise<Standby> {
  const leases = await startLeaseServer({ tokens: ['token-standby', 'token-peer'] });
  await holdAll(leases, 24 * 3600);
  const dir = mkdtempSync(path.join(tmpdir(), 'pps-standby-'));
  const kubeconfig = path.join(dir, 'kubeconfig');
  writeFileSync(kubeconfig, leases.kubeconfig('token-standby', { namespace: STANDBY_NS }));
  const receiver = new ForwardReceiver();
  await receiver.listen(0);
  const httpPort = await freePort();
  const closed = await freePort();
  const config = path.join(dir, 'sidecar.json');
  const startTime = new Date(Date.now() - 3600_000).toISOString().replace(/\.\d{3}Z$/, 'Z');
  writeFileSync(
    config,
    JSON.stringify({
      globals: {
        state_dir: path.join(dir, 'state'),
        log_level: 'info',
        shutdown_timeout_secs: 5,
        http: { listen: `127.0.0.1:${httpPort}` },
        coordination: { type: 'kubernetes', kubeconfig, lease_duration_secs: 15, renew_deadline_secs: 10, retry_period_secs: 2 },
      },
      output: { type: 'forward', host: '127.0.0.1', port: receiver.port },
      inputs: {
        proofpoint_tap: {
          id: 'tap',
          credentials: { username: 'standby-principal', password: 'standby-secret' },
          override_url_base: `http://127.0.0.1:${closed}`,
          services: Object.fromEntries(TAP_SERVICES.map((s) => [s, { start_time_in_utc: startTime }])),
        },
        proofpoint_on_demand: {
          id: 'pod',
          credentials: { cluster_id: 'standby-cluster', api_key: 'standby-api-key' },
          override_url_base: `ws://127.0.0.1:${closed}`,
          services: Object.fromEntries(POD_TYPES.map((t) => [t, {}])),
        },
      },
    }),
  );
  const child = spawn(process.execPath, [...(o.nodeArgs ?? ['--import', 'tsx']), o.main ?? MAIN, 'run', '--config', config], {
    env: { ...process.env, POD_NAME: 'standby', FORCE_COLOR: '0', ...o.env },
    stdio: ['ignore', 'pipe', 'pipe'],
  });
  const s: Standby = { leases, child, receiver, httpPort, dir, output: [] };
  child.stdout!.on('data', (c: Buffer) => s.output.push(c.toString()));
  child.stderr!.on('data', (c: Buffer) => s.output.push(c.toString()));
  try {
    await until(() => fetch(`http://127.0.0.1:${httpPort}/healthz`).then((x) => x.ok, () => false), 'the standby up', 60_000);
    const seen = () => new Set(leases.requests.filter((r) => r.token === 'token-standby' && r.status === 200).map((r) => r.path));
    await until(() => LEASE_NAMES.every((n) => [...seen()].some((p) => p.endsWith(`/${n}`))), 'the standby reading every Lease', 30_000);
  } catch (err) {
    await stopStandby(s);
    throw new Error(`${(err as Error).message}\n${s.output.join('').slice(-4000)}`);
  }
  return s;
}

/** Leases this standby holds, by its own writes. */
export function standbyHolds(s: Standby): string[] {
  return LEASE_NAMES.filter((n) => s.leases.lease(STANDBY_NS, n)?.spec?.holderIdentity?.startsWith('standby'));
}

export async function stopStandby(s: Standby): Promise<void> {
  if (s.child.exitCode === null && s.child.signalCode === null) {
    s.child.kill('SIGTERM');
    const t = setTimeout(() => s.child.kill('SIGKILL'), 10_000);
    await once(s.child, 'exit');
    clearTimeout(t);
  }
  await s.receiver.close();
  await s.leases.close();
  rmSync(s.dir, { recursive: true, force: true });
}
