/**
 * Feeds: what one process at a time must pull. Each input's descriptor says how it divides into
 * feeds (sources/tap/index.ts: the whole input; sources/pod/index.ts: one per service). A feed's
 * id is `<input id>/<feed name>` and its Lease is `<lease_prefix>-<input id>-<feed name>`,
 * lowercased, other characters turned into `-`.
 */
import type { Config } from '../config/schema.ts';
import type { InputType, ServiceSpec, Source } from '../sources/source.ts';
import { enabledInputs } from '../sources/registry.ts';
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

/**
 * The feeds of the enabled inputs, from the configuration alone (the services each source will
 * yield, as its descriptor names them): no source module is loaded until a feed is acquired.
 * Throws what creating the sources would throw for the config (e.g. StartTimeError,
 * 101, for a start time in the future).
 */
export function feedsOf(config: Config, leasePrefix: string, now: number = Date.now()): Feed[] {
  const feeds: Feed[] = [];
  for (const { descriptor, cfg } of enabledInputs(config.inputs)) {
    for (const spec of descriptor.feeds(cfg, now)) {
      feeds.push({
        id: `${cfg.id}/${spec.name}`,
        lease: leaseName(leasePrefix, cfg.id, spec.name),
        type: descriptor.type,
        input: cfg.id,
        services: spec.services.map((s) => s.name),
        requestPools: spec.requestPools,
        requestWindowMs: spec.requestWindowMs,
        startTimes: startTimesOf(spec.services),
        dedupTtlMs: ttlsOf(spec.services),
        compareCursors: (a, b) => descriptor.compareCursors(a, b),
        create: () => spec.create(),
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
