/**
 * The TAP half of the simulator: start it, point `override_url_base` at `url`, and use
 * `credentials`. The scenario can be changed while it runs (rates, quirks, injected failures), and
 * `truth()` says which events a correct collector must deliver for a span of time, by the
 * simulator's own notion of identity (`logicalKey`), so tests need not trust the collector's.
 */
import type { TapServiceName } from '../../sources/tap/config.ts';
import { systemClock } from '../../util/clock.ts';
import { logicalKey, type SimEvent } from './events.ts';
import { resolveScenario, type InjectedFailure, type TapQuirks, type TapScenario, type TapScenarioOptions } from './scenario.ts';
import { TapSimServer, type SimPool, type SimRequest } from './server.ts';

export { logicalKey, type SimEvent } from './events.ts';
export { DEFAULT_QUIRKS, DEFAULT_RATES, NO_QUIRKS, type InjectedFailure, type TapQuirks, type TapScenario, type TapScenarioOptions } from './scenario.ts';
export { SIM_ENDPOINTS, TEXT as TAP_SIM_TEXT, parseInterval, type SimPool, type SimRequest } from './server.ts';

export interface TruthOptions {
  /** Threat statuses the collector asked for (default: the API's default, active and cleared). */
  threatStatus?: readonly string[];
  /** Only events visible by this time (default: all). */
  asOf?: number;
}

export interface TapSimulator {
  /** Base URL for `override_url_base`. */
  readonly url: string;
  readonly credentials: { username: string; password: string };
  /** Every request received, in order. */
  readonly requests: readonly SimRequest[];
  /** Requests received and not yet answered. */
  readonly pending: number;
  /** The live scenario: changes apply to the next request. */
  readonly scenario: TapScenario;
  setRate(service: TapServiceName, perHour: number): void;
  setQuirks(quirks: Partial<TapQuirks>): void;
  /** Queues a failure for the next matching request(s). */
  inject(failure: InjectedFailure): void;
  /** Requests counted in a pool's rolling window now. */
  budgetUsed(pool: SimPool): number;
  resetBudget(): void;
  /** Every event (originals and repeats, as served) with index time in [from, to). */
  events(service: TapServiceName, from: number, to: number): SimEvent[];
  /**
   * What a collector must deliver for [from, to): one entry per distinct event version
   * (logical key -> one JSON text of it), after the threat-status filter.
   */
  truth(service: TapServiceName, from: number, to: number, opts?: TruthOptions): Map<string, string>;
  logicalKey(service: TapServiceName, event: string | Record<string, unknown>): string;
  close(): Promise<void>;
}

export async function startTapSimulator(opts: TapScenarioOptions = {}): Promise<TapSimulator> {
  const scenario = resolveScenario(opts, systemClock);
  const server = new TapSimServer(scenario);
  const url = await server.listen();
  return {
    url,
    credentials: scenario.credentials,
    requests: server.requests,
    get pending() {
      return server.pending;
    },
    scenario,
    setRate(service, perHour) {
      scenario.ratesPerHour[service] = perHour;
    },
    setQuirks(quirks) {
      Object.assign(scenario.quirks, quirks);
    },
    inject(failure) {
      scenario.failures.push(failure);
    },
    budgetUsed: (pool) => server.budgetUsed(pool),
    resetBudget: () => server.resetBudget(),
    events: (service, from, to) => server.generator.eventsIn(service, from, to),
    truth(service, from, to, o = {}) {
      const statuses = new Set((o.threatStatus ?? ['active', 'cleared']).map((s) => s.toLowerCase()));
      const out = new Map<string, string>();
      for (const e of server.generator.eventsIn(service, from, to)) {
        if (o.asOf !== undefined && e.visibleAt > o.asOf) continue;
        if (!e.statuses.some((s) => statuses.has(s))) continue;
        if (!out.has(e.key)) out.set(e.key, JSON.stringify(e.body));
      }
      return out;
    },
    logicalKey,
    close: () => server.close(),
  };
}
