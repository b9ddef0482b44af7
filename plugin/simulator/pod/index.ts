/**
 * The PoD log-stream simulator (issue 4): `startPodSimulator()` serves ws://127.0.0.1:<port>
 * for tests, the demo and benchmarks. Give `url` as the input's `override_url_base` and
 * `credentials` as its `credentials`.
 */
import { systemClock } from '../../util/clock.ts';
import type { PodEventLog, PodStreamType } from './events.ts';
import { DEFAULT_SCENARIO, type PodScenario } from './scenario.ts';
import { PodSimulatorServer, type SessionRecord, type SimulatorStats } from './server.ts';

export type { PodScenario, MalformedKind } from './scenario.ts';
export type { SessionRecord, SimulatorStats } from './server.ts';
export type { GeneratedEvent, PodStreamType } from './events.ts';
export { PodEventLog, POD_STREAM_TYPES, formatTs } from './events.ts';
export { DEFAULT_SCENARIO, MALFORMED_KINDS } from './scenario.ts';
export { CONFLICT_BODY, AUTH_FAILED_BODY } from './server.ts';

/** Scenario keys that may change while the simulator runs (the event log itself is fixed). */
export type RuntimeScenario = Omit<PodScenario, 'port' | 'clusterId' | 'apiKey' | 'clock' | 'seed' | 'rate' | 'origin' | 'historyMs' | 'maxEvents' | 'unsortedFraction' | 'unsortedMs' | 'largeEvery' | 'largeFrameBytes' | 'perMessageDeflate' | 'tls'>;

export interface PodSimulator {
  /** Base URL for `override_url_base` (ws://127.0.0.1:<port>, or wss://localhost:<port> with TLS). */
  readonly url: string;
  readonly port: number;
  readonly credentials: { cluster_id: string; api_key: string };
  readonly scenario: Readonly<PodScenario>;
  /** Every session asked for, accepted or refused, in order. */
  readonly sessions: readonly SessionRecord[];
  readonly stats: Readonly<SimulatorStats>;
  /** The events that exist (ground truth): ids, times and frames per type and seq. */
  readonly events: PodEventLog;
  /** Sessions open now (of a type). */
  openSessions(type?: PodStreamType): number;
  /** Keys of every event sent so far (to any session of the type). */
  servedKeys(type: PodStreamType): Set<string>;
  /** Drops open sessions without a close frame; returns how many. */
  drop(type?: PodStreamType, how?: 'fin' | 'rst'): number;
  /** Sends a raw frame (e.g. malformed or huge) to the open sessions of a type. */
  sendRaw(type: PodStreamType, text: string): number;
  /** Changes behaviour from now on (drops, repeats, malformed frames, 409s, refusals, pings, archive end). */
  update(changes: Partial<RuntimeScenario>): void;
  close(): Promise<void>;
}

export async function startPodSimulator(opts: Partial<PodScenario> = {}): Promise<PodSimulator> {
  const scenario: PodScenario = { ...DEFAULT_SCENARIO, clock: systemClock, ...opts };
  const server = new PodSimulatorServer(scenario);
  const port = await server.listen(scenario.port);
  return {
    url: scenario.tls ? `wss://localhost:${port}` : `ws://127.0.0.1:${port}`,
    port,
    credentials: { cluster_id: scenario.clusterId, api_key: scenario.apiKey },
    scenario,
    sessions: server.sessions,
    stats: server.stats,
    events: server.log,
    openSessions: (type) => server.openSessions(type),
    servedKeys: (type) => server.servedKeys(type),
    drop: (type, how) => server.drop(type, how),
    sendRaw: (type, text) => server.sendRaw(type, text),
    update(changes) {
      Object.assign(scenario, changes);
    },
    close: () => server.close(),
  };
}
