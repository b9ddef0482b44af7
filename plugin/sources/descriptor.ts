/**
 * What the rest of the sidecar knows about one vendor input: everything config loading, `check`,
 * `check --online`, coordination, telemetry and `state show` need, behind one object exported by
 * `sources/<vendor>/index.ts` and listed in sources/registry.ts.
 *
 * Memory contract: a descriptor module is loaded by every process, standby replicas included, so
 * it imports only light modules (its config schema, constants). The source itself, its client or
 * stream and its probe are loaded by dynamic `import()` inside `create`, `check`, `probe`,
 * `compareCursors` and each feed's `create` (test/coordination/standby.test.ts holds this).
 */
import type { z } from 'zod';
import type { RenamedKey } from '../config/types.ts';
import type { ServiceSpec, Source } from './source.ts';

/** What every input section has: `inputs.<type>.id` and `.enabled`. */
export interface InputConfigBase {
  id: string;
  enabled: boolean;
}

/** One line of `check --online`: a service (or the input) and whether it answered as expected. */
export interface Verdict {
  service: string;
  ok: boolean;
  text: string;
}

/**
 * A source-specific metric, exported on /metrics as `proofpoint_sidecar_<name>` with the input's
 * `input_id` label. `known`: every value a label other than `service` takes; a counter whose
 * labels are all known is exported at 0 from start for each input (and service) of the type, so
 * `rate()` and `absent()` work before the first increment. A label without known values (e.g. a
 * close code) makes series appear as they happen.
 */
export interface SourceMetricDecl {
  type: 'counter' | 'gauge';
  help: string;
  labels: readonly string[];
  known?: Readonly<Record<string, readonly string[]>>;
}

/**
 * One feed: what a single replica at a time pulls (coordination/feeds.ts gives it an id and a
 * Lease). `name` is its part of both: a service name, or e.g. `all` for an input walked as one.
 */
export interface FeedSpec {
  name: string;
  /** The services (de-dup scopes and cursors) the feed's source yields. */
  services: ReadonlyArray<Pick<ServiceSpec, 'name' | 'dedupMaxAgeMs' | 'startTime'>>;
  /** Rate-limit pools whose request times travel with the Lease, and their window. */
  requestPools: readonly string[];
  requestWindowMs: number;
  /** A fresh source pulling only this feed; its code is loaded here. */
  create(): Promise<Source>;
}

/** Where a stored cursor stands, for `state show` when the running sidecar's figures are not at hand. */
export interface StoredPosition {
  /** Event time collected up to (ms). */
  positionMs: number;
  /** Event time the backfill runs to (ms); `now` when it runs to the present. */
  targetMs: number;
  active: boolean;
}

export interface SourceStateView {
  /** Numbers under these cursor keys are epoch-ms times: `state show` prints them as UTC. */
  msKeys: readonly string[];
  /** Cursor keys that only repeat another one in another form: `state show` leaves them out. */
  droppedKeys?: readonly string[];
  /** Where a stored cursor stands; undefined when it does not say. */
  position(cursor: unknown, now: number): StoredPosition | undefined;
}

export interface SourceDescriptor<C extends InputConfigBase = InputConfigBase, T extends string = string> {
  /** The input type id: the key under `inputs`, the `source` label and `Source.type`. */
  readonly type: T;
  /** The schema of `inputs.<type>` (strict, with its defaults). */
  readonly schema: z.ZodType<C>;
  /** What a minimal section holds, for the "no input configured" error, e.g. "id, credentials.api_key, services". */
  readonly requiredKeys: string;
  /** Keys of the section that were renamed (paths relative to `inputs.<type>`); the old names still load. */
  readonly renamedKeys?: readonly RenamedKey[];
  /** The key of each `services.<name>` that holds the start time (a time in the future is error 101). */
  readonly startTimeKey?: string;
  /** The services the section configures, in the input's canonical order. */
  services(cfg: C): string[];
  /** Builds the source. Throws for a config it cannot start with (e.g. a start time in the future). */
  create(cfg: C): Promise<Source>;
  /** Warnings `check` prints, keys named relative to `inputs.<type>` (the caller prefixes it). */
  check(cfg: C, now: number): Promise<string[]>;
  /** `check --online`: one verdict per service, without collecting. */
  probe(cfg: C, now: number): Promise<Verdict[]>;
  /** The feeds coordination shares among replicas. Throws what `create` would throw for the config. */
  feeds(cfg: C, now: number): FeedSpec[];
  /** Orders two committed cursors of one service by progress; -1, 0, 1. Unreadable counts as none. */
  compareCursors(a: unknown, b: unknown): number | Promise<number>;
  /** The event time a committed cursor stands for (ms), for `lag_seconds`; undefined when it has none. */
  cursorTime(cursor: unknown): number | undefined;
  /** The metrics only this input reports (`ctx.metrics`), by name without the `proofpoint_sidecar_` prefix. */
  readonly metrics: Readonly<Record<string, SourceMetricDecl>>;
  /** How `state show` reads this input's cursors. */
  readonly state: SourceStateView;
}

/** A descriptor of any input type, as the registry holds them. */
// eslint-disable-next-line @typescript-eslint/no-explicit-any
export type AnySourceDescriptor = SourceDescriptor<any, string>;
