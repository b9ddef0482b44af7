/**
 * The `proofpoint_tap` source: walks explicit windows over the TAP SIEM API and yields, per
 * service, batches of events with the cursor they advance to (sources/source.ts).
 *
 * One request per window: `/v2/siem/all` when two or more services are enabled (its arrays are
 * routed to their services; one shared-pool request instead of up to four), the service's own
 * endpoint when it is alone. Each window is planned by window.ts from the services' positions:
 * the first pass walks 1 h windows from the cursor until caught up, then polls every period; time
 * that was collected while still recent is re-queried once after it settled, and de-duplication
 * (keys = content hashes, identity.ts) drops what the first pass already delivered.
 *
 * The source never writes state: positions advance in memory when a window's batches are yielded
 * and reach the store only when the pipeline commits them. A window's answer is split into batches
 * of at most `max_events_per_batch`; only the last batch of a service carries its cursor, so a
 * crash mid-window re-queries the window and the committed keys drop what was already delivered.
 */
import type { Dispatcher } from 'undici';
import type { Batch, ServiceSpec, Source, SourceContext } from '../source.ts';
import { TAP_DEFAULT_TAGS, enabledServices, type TapInputConfig, type TapServiceName } from './config.ts';
import { tapRequestPath } from './endpoint.ts';
import type { TapCursor } from './cursor.ts';
import { TapRun } from './run.ts';

export { fromCursor, toCursor, type TapCursor } from './cursor.ts';

export interface TapSourceOptions {
  dispatcher?: Dispatcher;
}

export class TapSource implements Source<TapCursor> {
  readonly type = 'proofpoint_tap' as const;
  readonly id: string;
  readonly services: readonly ServiceSpec[];
  readonly #cfg: TapInputConfig;
  readonly #names: TapServiceName[];
  readonly #dispatcher?: Dispatcher;
  /** Pulling ids stay unique across runs of this source. */
  #lastPullingId = 0;

  constructor(cfg: TapInputConfig, opts: TapSourceOptions = {}) {
    this.#cfg = cfg;
    this.id = cfg.id;
    this.#names = enabledServices(cfg);
    this.#dispatcher = opts.dispatcher;
    this.services = this.#names.map((name) => ({
      name,
      tag: cfg.services[name]?.override_tag_base ?? TAP_DEFAULT_TAGS[name],
      dedupMaxAgeMs: cfg.dedup_window_secs * 1000,
      startTime: cfg.services[name]?.start_time_in_utc ?? undefined,
    }));
  }

  /** The endpoint this input queries: `/all` for two or more services. */
  get path(): string {
    return tapRequestPath(this.#names);
  }

  run(ctx: SourceContext): AsyncIterable<Batch<TapCursor>> {
    return this.#run(ctx);
  }

  /** Throws StartTimeError (101) on the first batch asked for when a start time is in the future. */
  async *#run(ctx: SourceContext): AsyncGenerator<Batch<TapCursor>> {
    const run = await TapRun.start(ctx, {
      cfg: this.#cfg,
      id: this.id,
      names: this.#names,
      path: this.path,
      dispatcher: this.#dispatcher,
      nextPullingId: (now) => this.#nextPullingId(now),
    });
    yield* run.batches();
  }

  #nextPullingId(now: number): number {
    this.#lastPullingId = Math.max(this.#lastPullingId + 1, now);
    return this.#lastPullingId;
  }
}
