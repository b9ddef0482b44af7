/**
 * Writing a session's frames: each event, with the scenario's repeats, malformed frames and
 * empty frames after it, counted on the session and in the server's stats.
 */
import { WebSocket } from 'ws';
import type net from 'node:net';
import { hash32, type GeneratedEvent, type PodEventLog, type PodStreamType } from './events.ts';
import { MALFORMED_KINDS, type PodScenario } from './scenario.ts';
import type { SessionRecord, SimulatorStats } from './server.ts';
import { malformedFrame } from './upgrade.ts';

/** A repeated event is sent again this many events after the first time. */
const DUPLICATE_DISTANCE = 3;

/** An accepted session while it is open. */
export interface OpenSession {
  rec: SessionRecord;
  type: PodStreamType;
  ws: WebSocket;
  socket: net.Socket;
  token: string;
  pos: number;
  timer?: NodeJS.Timeout;
  immediate?: NodeJS.Immediate;
  closed: boolean;
  /** Sends not yet handed to the socket (permessage-deflate compresses asynchronously). */
  unflushed: number;
  onFlushed?: () => void;
  pingTimer?: NodeJS.Timeout;
  pingEvery?: number;
  /** Archive: stop after this many of the window's events and end with `code`. */
  cut?: { after: number; code: number };
}

export class FrameWriter {
  readonly #scenario: PodScenario;
  readonly #log: PodEventLog;
  readonly #stats: SimulatorStats;
  #malformedTurn = 0;

  constructor(scenario: PodScenario, log: PodEventLog, stats: SimulatorStats) {
    this.#scenario = scenario;
    this.#log = log;
    this.#stats = stats;
  }

  event(s: OpenSession, seq: number, e: GeneratedEvent = this.#log.event(s.type, seq)): void {
    this.send(s, e.text);
    s.rec.eventsSent++;
    this.#stats.eventsSent++;
    const sc = this.#scenario;
    const earlier = seq - DUPLICATE_DISTANCE;
    if (sc.duplicateEvery > 0 && earlier >= (s.rec.firstSeq ?? 0) && hash32(sc.seed, 77, earlier, s.type.length) % sc.duplicateEvery === 0) {
      const d = this.#log.event(s.type, earlier);
      if (s.rec.mode === 'live' || (d.tsMs >= s.rec.windowFrom! && d.tsMs < s.rec.windowTo!)) {
        this.send(s, d.text);
        s.rec.duplicatesSent++;
        this.#stats.duplicatesSent++;
      }
    }
    if (sc.malformedEvery > 0 && s.rec.eventsSent % sc.malformedEvery === 0) {
      this.send(s, this.#malformed(s.type, e));
      s.rec.malformedSent++;
      this.#stats.malformedSent++;
    }
    if (sc.emptyFrameEvery > 0 && s.rec.eventsSent % sc.emptyFrameEvery === 0) {
      this.send(s, '');
      s.rec.emptyFramesSent++;
      this.#stats.emptyFramesSent++;
    }
  }

  #malformed(type: PodStreamType, e: GeneratedEvent): string {
    return malformedFrame(MALFORMED_KINDS[this.#malformedTurn++ % MALFORMED_KINDS.length]!, type, e);
  }

  send(s: OpenSession, text: string): void {
    if (s.ws.readyState !== WebSocket.OPEN) return;
    s.unflushed++;
    s.ws.send(text, () => {
      if (--s.unflushed === 0 && s.onFlushed) s.onFlushed();
    });
    s.rec.framesSent++;
    s.rec.bytesSent += Buffer.byteLength(text);
    this.#stats.framesSent++;
    this.#stats.bytesSent += text.length;
  }
}
