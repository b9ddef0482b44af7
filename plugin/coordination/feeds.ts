/**
 * Feeds: what one process at a time must pull (issue 6). The TAP input is one feed (one
 * credential, one request budget, one `/all` walk); each PoD service is one (one session per token
 * and type). A feed's id is `<input id>/<service>` (TAP: `<input id>/all`) and its Lease is
 * `<lease_prefix>-<input id>-<service>`, lowercased, other characters turned into `-`.
 */
import type { Config } from '../config/schema.ts';
import type { InputType, ServiceSpec, Source } from '../sources/source.ts';
import { enabledServices, tapStartTimes } from '../sources/tap/config.ts';
import { podStartTimes, POD_SERVICES } from '../sources/pod/config.ts';
import { assertStartTimes } from '../sources/start-time.ts';
import { DAY_MS, TAP_POOLS } from '../sources/tap/budget.ts';
import { ErrorCode, SidecarError } from '../errors.ts';

export interface Feed {
  /** `<input id>/<service>`; TAP: `<input id>/all`. Used in logs and metrics. */
  id: string;
  /** The Lease's name. */
  lease: string;
  type: InputType;
  input: string;
  /** The services (de-dup scopes and cursors) the feed's source yields. */
  services: string[];
  /** Rate-limit pools whose request times travel with the Lease (TAP), and their window. */
  requestPools: readonly string[];
  requestWindowMs: number;
  /** The configured start time of each service (null: none): the cursor's context. */
  startTimes: Record<string, string | null>;
  /** How long each service's de-dup keys are kept (their expiry minus their commit time). */
  dedupTtlMs: Record<string, number>;
  /** Orders two committed cursors of one of the feed's services by progress. */
  compareCursors(a: unknown, b: unknown): number | Promise<number>;
  /**
   * A fresh source pulling only this feed (one per Lease acquisition). The source's code is
   * loaded here, at the first acquisition: a replica holding no feed never loads it.
   */
  create(): Source | Promise<Source>;
}

export function leaseName(prefix: string, input: string, service: string): string {
  return `${prefix}-${input}-${service}`
    .toLowerCase()
    .replace(/[^a-z0-9.-]/g, '-')
    .replace(/^[^a-z0-9]+|[^a-z0-9]+$/g, '');
}

function startTimesOf(services: readonly Pick<ServiceSpec, 'name' | 'startTime'>[]): Record<string, string | null> {
  return Object.fromEntries(services.map((s) => [s.name, s.startTime ?? null]));
}

function ttlsOf(services: readonly Pick<ServiceSpec, 'name' | 'dedupMaxAgeMs'>[]): Record<string, number> {
  return Object.fromEntries(services.map((s) => [s.name, s.dedupMaxAgeMs]));
}

const tapModule = () => import('../sources/tap/index.ts');
const podModule = () => import('../sources/pod/index.ts');

/**
 * The feeds of the enabled inputs, from the configuration alone (the services each source will
 * yield, as TapSource and PodSource name them): no source module is loaded until a feed is
 * acquired. Throws StartTimeError (101) for a start time in the future, as
 * creating the sources would.
 */
export function feedsOf(config: Config, leasePrefix: string): Feed[] {
  const feeds: Feed[] = [];
  const { proofpoint_tap: tap, proofpoint_on_demand: pod } = config.inputs;
  if (tap?.enabled) {
    assertStartTimes(tapStartTimes(tap), Date.now());
    const services = enabledServices(tap).map((name) => ({
      name,
      dedupMaxAgeMs: tap.dedup_window_secs * 1000,
      startTime: tap.services[name]?.start_time_in_utc ?? undefined,
    }));
    feeds.push({
      id: `${tap.id}/all`,
      lease: leaseName(leasePrefix, tap.id, 'all'),
      type: 'proofpoint_tap',
      input: tap.id,
      services: services.map((s) => s.name),
      requestPools: TAP_POOLS,
      requestWindowMs: DAY_MS,
      startTimes: startTimesOf(services),
      dedupTtlMs: ttlsOf(services),
      compareCursors: async (a, b) => (await tapModule()).compareTapCursors(a, b),
      create: async () => (await tapModule()).createTapSource(tap) as Source,
    });
  }
  if (pod?.enabled) {
    assertStartTimes(podStartTimes(pod), Date.now());
    for (const svc of POD_SERVICES.filter((s) => pod.services[s] !== undefined)) {
      const only = { ...pod, services: { [svc]: pod.services[svc] } };
      const spec = pod.services[svc]!;
      const services = [{ name: svc, dedupMaxAgeMs: spec.dedup_window_secs * 1000, startTime: spec.start_time }];
      feeds.push({
        id: `${pod.id}/${svc}`,
        lease: leaseName(leasePrefix, pod.id, svc),
        type: 'proofpoint_on_demand',
        input: pod.id,
        services: [svc],
        requestPools: [],
        requestWindowMs: 0,
        startTimes: startTimesOf(services),
        dedupTtlMs: ttlsOf(services),
        compareCursors: async (a, b) => (await podModule()).comparePodCursors(a, b),
        create: async () => (await podModule()).createPodSource(only) as Source,
      });
    }
  }
  const seen = new Map<string, Feed>();
  for (const f of feeds) {
    const other = seen.get(f.lease);
    if (other) {
      throw new SidecarError(
        ErrorCode.CONFIG,
        `Feeds ${other.id} and ${f.id} would share the Lease "${f.lease}": give the inputs ids that differ in more than case and punctuation (inputs.<type>.id)`,
        { exitCode: 2, fatal: true },
      );
    }
    seen.set(f.lease, f);
  }
  return feeds;
}
