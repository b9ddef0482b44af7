/**
 * Feeds: what one process at a time must pull (issue 6). The TAP input is one feed (one
 * credential, one request budget, one `/all` walk); each PoD service is one (one session per token
 * and type). A feed's id is `<input id>/<service>` (TAP: `<input id>/all`) and its Lease is
 * `<lease_prefix>-<input id>-<service>`, lowercased, other characters turned into `-`.
 */
import type { Config } from '../config/schema.ts';
import type { InputType, Source } from '../sources/source.ts';
import { compareTapCursors, createTapSource } from '../sources/tap/index.ts';
import { comparePodCursors, createPodSource, enabledPodServices } from '../sources/pod/index.ts';
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
  compareCursors(a: unknown, b: unknown): number;
  /** A fresh source pulling only this feed (one per Lease acquisition). */
  create(): Source;
}

export function leaseName(prefix: string, input: string, service: string): string {
  return `${prefix}-${input}-${service}`
    .toLowerCase()
    .replace(/[^a-z0-9.-]/g, '-')
    .replace(/^[^a-z0-9]+|[^a-z0-9]+$/g, '');
}

function startTimesOf(source: Source): Record<string, string | null> {
  return Object.fromEntries(source.services.map((s) => [s.name, s.startTime ?? null]));
}

function ttlsOf(source: Source): Record<string, number> {
  return Object.fromEntries(source.services.map((s) => [s.name, s.dedupMaxAgeMs]));
}

export function feedsOf(config: Config, leasePrefix: string): Feed[] {
  const feeds: Feed[] = [];
  const { proofpoint_tap: tap, proofpoint_on_demand: pod } = config.inputs;
  if (tap?.enabled) {
    const probe = createTapSource(tap);
    feeds.push({
      id: `${tap.id}/all`,
      lease: leaseName(leasePrefix, tap.id, 'all'),
      type: 'proofpoint_tap',
      input: tap.id,
      services: probe.services.map((s) => s.name),
      requestPools: TAP_POOLS,
      requestWindowMs: DAY_MS,
      startTimes: startTimesOf(probe),
      dedupTtlMs: ttlsOf(probe),
      compareCursors: compareTapCursors,
      create: () => createTapSource(tap) as Source,
    });
  }
  if (pod?.enabled) {
    for (const svc of enabledPodServices(pod)) {
      const only = { ...pod, services: { [svc]: pod.services[svc] } };
      const probe = createPodSource(only);
      feeds.push({
        id: `${pod.id}/${svc}`,
        lease: leaseName(leasePrefix, pod.id, svc),
        type: 'proofpoint_on_demand',
        input: pod.id,
        services: [svc],
        requestPools: [],
        requestWindowMs: 0,
        startTimes: startTimesOf(probe),
        dedupTtlMs: ttlsOf(probe),
        compareCursors: comparePodCursors,
        create: () => createPodSource(only) as Source,
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
