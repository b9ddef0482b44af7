/**
 * What the TAP simulator serves: event rates, the vendor quirks (each one can be turned off), the
 * rate budget, injected failures and the clock that decides "now". Tests, the demo and the
 * benchmarks share it; `startTapSimulator(options)` fills in what is left out.
 */
import type { TapServiceName } from '../../sources/tap/config.ts';

export interface TapQuirks {
  /** Share of clicks that come with 1 to 3 more clicks on the same message (same GUID, own `id`). */
  sharedGuidClicks: number;
  /** Share of messages sent to 2 to 5 recipients: one event each, same GUID (elastic #9966). */
  multiRecipient: number;
  /** Share of multi-recipient messages whose events carry no `id` at all (they differ only by `recipient`). */
  multiRecipientWithoutId: number;
  /** Share of events indexed late: visible only `lateMinMs`..`lateMaxMs` after their index time. */
  lateIndexed: number;
  lateMinMs: number;
  lateMaxMs: number;
  /** Events per hour and service, as a share of its rate, that come back unchanged in a later window. */
  exactRepeats: number;
  /** Same, but with a new threat status (cleared, or falsePositive): a real change. */
  statusChanges: number;
  /** Repeats arrive with their keys and set-like arrays in another order (canonical hashing must cope). */
  reorderRepeats: boolean;
  /** How far back a repeated event may come from, at most (ms). */
  repeatMaxAgeMs: number;
  /** Share of message events with the null-heavy shape of the Elastic samples. */
  nulls: number;
  /** Share of events with an array where a string is usual or the reverse (`recipient`, `fromAddress`, `completelyRewritten`). */
  typeVariants: number;
  /** Share of answers whose `messagesDelivered` key comes as `"messagesDelivered:"` (elastic #9965). */
  malformedKeys: number;
  /** How an answer with no events looks: 200 with empty arrays, 200 without arrays, 204, or any of them. */
  emptyResponse: '200' | 'missing' | '204' | 'mixed';
}

export type InjectedFailure =
  | { kind: 'status'; status: number; body?: string; path?: string; times?: number }
  /** The connection is destroyed without an answer. */
  | { kind: 'reset'; path?: string; times?: number }
  /** No answer until the client gives up (its timeout). */
  | { kind: 'hang'; path?: string; times?: number };

export interface TapScenario {
  seed: number;
  /** Decides "now" for windows, visibility of late events and the budget. */
  clock: { now(): number };
  credentials: { username: string; password: string };
  /** Original events per hour and service (repeats, extra recipients and extra clicks come on top). */
  ratesPerHour: Record<TapServiceName, number>;
  quirks: TapQuirks;
  /** Requests per rolling window and pool before 429 (the API: 1800 per 24 h). */
  budgetPerPool: number;
  budgetWindowMs: number;
  /** How far back a window may start (the API: 7 days). */
  lookbackMs: number;
  failures: InjectedFailure[];
  host: string;
  port: number;
}

export type TapScenarioOptions = Partial<Omit<TapScenario, 'quirks' | 'ratesPerHour'>> & {
  quirks?: Partial<TapQuirks>;
  ratesPerHour?: Partial<Record<TapServiceName, number>>;
};

export const DEFAULT_QUIRKS: TapQuirks = {
  sharedGuidClicks: 0.3,
  multiRecipient: 0.2,
  multiRecipientWithoutId: 0.5,
  lateIndexed: 0.05,
  lateMinMs: 3 * 60_000,
  lateMaxMs: 30 * 60_000,
  exactRepeats: 0.05,
  statusChanges: 0.03,
  reorderRepeats: true,
  repeatMaxAgeMs: 2 * 24 * 3600_000,
  nulls: 0.1,
  typeVariants: 0.1,
  malformedKeys: 0,
  emptyResponse: 'mixed',
};

/** Every quirk off: one event per item, in time, never repeated, always the same shapes. */
export const NO_QUIRKS: TapQuirks = {
  ...DEFAULT_QUIRKS,
  sharedGuidClicks: 0,
  multiRecipient: 0,
  lateIndexed: 0,
  exactRepeats: 0,
  statusChanges: 0,
  reorderRepeats: false,
  nulls: 0,
  typeVariants: 0,
  malformedKeys: 0,
  emptyResponse: '200',
};

export const DEFAULT_RATES: Record<TapServiceName, number> = {
  clicksBlocked: 20,
  clicksPermitted: 20,
  messagesBlocked: 20,
  messagesDelivered: 40,
};

export function resolveScenario(o: TapScenarioOptions, defaultClock: { now(): number }): TapScenario {
  return {
    seed: o.seed ?? 1,
    clock: o.clock ?? defaultClock,
    credentials: o.credentials ?? { username: 'sim-service-principal', password: 'sim-secret-0f3c9a7e' },
    ratesPerHour: { ...DEFAULT_RATES, ...o.ratesPerHour },
    quirks: { ...DEFAULT_QUIRKS, ...o.quirks },
    budgetPerPool: o.budgetPerPool ?? 1800,
    budgetWindowMs: o.budgetWindowMs ?? 24 * 3600_000,
    lookbackMs: o.lookbackMs ?? 7 * 24 * 3600_000,
    failures: [...(o.failures ?? [])],
    host: o.host ?? '127.0.0.1',
    port: o.port ?? 0,
  };
}
