/**
 * The PoD log-stream simulator: `startPodSimulator()` serves ws://127.0.0.1:<port>
 * for tests, the demo and benchmarks. Give `url` as the input's `override_url_base` and
 * `credentials` as its `credentials`. `profiles` picks named readings of the real server's
 * undocumented behaviour (scenario.ts), applied over the defaults and under explicit options.
 */
import { systemClock } from '../../util/clock.ts';
import type { PodEventLog, PodStreamType } from './events.ts';
import { DEFAULT_SCENARIO, podProfiles, type PodProfileName, type PodScenario } from './scenario.ts';
import { PodSimulatorServer, type SessionRecord, type SimulatorStats } from './server.ts';

export type { PodScenario, MalformedKind, PodProfileName, PodProfile } from './scenario.ts';
export type { SessionRecord, SimulatorStats } from './server.ts';
export type { GeneratedEvent, PodStreamType } from './events.ts';
export { PodEventLog, POD_STREAM_TYPES, formatTs } from './events.ts';
export { DEFAULT_SCENARIO, MALFORMED_KINDS, POD_PROFILES, podProfiles } from './scenario.ts';
export { CONFLICT_BODY, AUTH_FAILED_BODY } from './server.ts';

/** Scenario keys that may change while the simulator runs (the event log itself is fixed). */
export type RuntimeScenario = Omit<PodScenario, 'port' | 'clusterId' | 'apiKey' | 'clock' | 'seed' | 'rate' | 'origin' | 'historyMs' | 'maxEvents' | 'unsortedFraction' | 'unsortedMs' | 'largeEvery' | 'largeFrameBytes' | 'sharedKeyEvery' | 'perMessageDeflate' | 'tls'>;

export interface PodSimulatorOptions extends Partial<PodScenario> {
  /** Named server profiles, merged in order over the defaults; explicit options win over them. */
  profiles?: PodProfileName[];
}

export interface PodSimulator {
  /** Base URL for `override_url_base` (ws://127.0.0.1:<port>, or wss://localhost:<port> with TLS). */
  readonly url: string;
  readonly port: number;
  readonly credentials: { cluster_id: string; api_key: string };
  readonly scenario: Readonly<PodScenario>;
  /** The profiles the simulator was started with, in order. */
  readonly profiles: readonly PodProfileName[];
  /** Every session asked for, accepted or refused, in order. */
  readonly sessions: readonly SessionRecord[];
  readonly stats: Readonly<SimulatorStats>;
  /** The events that exist (ground truth): ids, times and frames per type and seq. */
  readonly events: PodEventLog;
  /** Sessions open now (of a type). */
  openSessions(type?: PodStreamType): number;
  /** Keys of every event sent so far (to any session of the type). */
  servedKeys(type: PodStreamType): Set<string>;
  /** Seqs of every event sent so far (to any session of the type): unique even when keys are shared. */
  servedSeqs(type: PodStreamType): Set<number>;
  /** Drops open sessions without a close frame; returns how many. */
  drop(type?: PodStreamType, how?: 'fin' | 'rst'): number;
  /** Sends a raw frame (e.g. malformed or huge) to the open sessions of a type. */
  sendRaw(type: PodStreamType, text: string): number;
  /** Changes behaviour from now on (drops, repeats, malformed and empty frames, 409s, refusals, pings, archive end and cuts, resume). */
  update(changes: Partial<RuntimeScenario>): void;
  close(): Promise<void>;
}

export async function startPodSimulator(opts: PodSimulatorOptions = {}): Promise<PodSimulator> {
  const { profiles = [], ...explicit } = opts;
  const scenario: PodScenario = { ...DEFAULT_SCENARIO, clock: systemClock, ...podProfiles(...profiles), ...explicit };
  const server = new PodSimulatorServer(scenario);
  const port = await server.listen(scenario.port);
  return {
    url: scenario.tls ? `wss://localhost:${port}` : `ws://127.0.0.1:${port}`,
    port,
    credentials: { cluster_id: scenario.clusterId, api_key: scenario.apiKey },
    scenario,
    profiles: [...profiles],
    sessions: server.sessions,
    stats: server.stats,
    events: server.log,
    openSessions: (type) => server.openSessions(type),
    servedKeys: (type) => server.servedKeys(type),
    servedSeqs: (type) => server.servedSeqs(type),
    drop: (type, how) => server.drop(type, how),
    sendRaw: (type, text) => server.sendRaw(type, text),
    update(changes) {
      Object.assign(scenario, changes);
      server.scenarioChanged(changes);
    },
    close: () => server.close(),
  };
}
