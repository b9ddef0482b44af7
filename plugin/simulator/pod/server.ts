/**
 * A PoD log stream on loopback, with the behaviours the real service is documented or reported
 * to have (the admission of a session, archive windows and refusals are in upgrade.ts):
 *
 * - `GET /v1/stream?cid=&type=[&sinceTime=&toTime=]` upgraded to a WebSocket; `Authorization:
 *   Bearer <key>` and `cid` checked (401), `type` and times validated (400), other paths 404,
 *   other methods 405, a second session of the same token and type 409 with the vendor's text.
 * - Live mode streams events as they happen. When a live session ends and the next one comes
 *   within the resume window (one hour), it resumes where the previous one ended (optionally a
 *   few events earlier, repeating them); after a longer gap only the last hour is served.
 * - Archive mode (`sinceTime`): `sinceTime` floored and `toTime` ceiled to the hour in the
 *   offset they are written in, data only up to now minus the staleness (30 minutes), at most
 *   30 days back; the window is sent (unsorted as stored) and the session closed.
 * - On demand: unsorted `ts`, repeated events, frames over 1 MiB, malformed frames, drops of the
 *   TCP connection without a close frame, 409s on the first attempts, unanswered pings.
 * - Behaviours the documentation leaves open, one knob each (combined into named profiles in
 *   scenario.ts):
 *   - the close code after a whole archive window (`archiveCloseCode`, 1006 for an RST);
 *   - archive windows whose first attempts are cut part-way with a close code or an RST, with
 *     retries served whole (`archiveCut`);
 *   - a live resume after a drop at the send position or at the newest event, losing the gap
 *     (`liveResumeFrom`);
 *   - empty text frames between events (`emptyFrameEvery`);
 *   - server pings on a real-time interval, with pings and pongs counted (`serverPingMs`);
 *   - a 400 for an archive `toTime` that rounds up into the future (`rejectFutureToTime`);
 *   - events that share the guid/id of the one before them (`sharedKeyEvery`, in the event log).
 * Writing stops while a session's socket holds more than `highWaterBytes`, so a client that
 * stops reading holds the simulator back through TCP, as it would the real server.
 */
import http from 'node:http';
import https from 'node:https';
import type net from 'node:net';
import { once } from 'node:events';
import { WebSocket, WebSocketServer } from 'ws';
import type { GeneratedEvent, PodEventLog, PodStreamType } from './events.ts';
import { FrameWriter, type OpenSession } from './frames.ts';
import type { PodScenario } from './scenario.ts';
import { archiveWindow, eventLogOf, forEachServed, newSessionRecord, requestRefusal, writeRefusal } from './upgrade.ts';

export { ceilHour, floorHour } from './upgrade.ts';

export { AUTH_FAILED_BODY, CONFLICT_BODY } from './upgrade.ts';
import { CONFLICT_BODY } from './upgrade.ts';
/** Real timers pace the sockets: how often an idle or held-back session looks again. */
const POLL_MS = 5;
/** Frames written per turn of the event loop before yielding. */
const FRAMES_PER_TURN = 256;

export interface SessionRecord {
  id: number;
  type: string;
  mode: 'live' | 'archive' | 'refused';
  /** 101 for an accepted session, else the refusal status. */
  status: number;
  body?: string;
  sinceTime?: string;
  toTime?: string;
  /** Archive: the window served, after rounding, staleness and the 30-day limit (ms). */
  windowFrom?: number;
  windowTo?: number;
  startedAt: number;
  endedAt?: number;
  /** Sessions of this token and type open when this one was asked for, this one included. */
  concurrent: number;
  /** Live: events [firstSeq, nextSeq) were sent. Archive: seqs scanned so far. */
  firstSeq?: number;
  nextSeq?: number;
  framesSent: number;
  eventsSent: number;
  bytesSent: number;
  duplicatesSent: number;
  malformedSent: number;
  end?: 'server_close' | 'client_close' | 'drop';
  /** The close code the session ended with: sent by the server, else the client's; 1006: no close frame. */
  closeCode?: number;
  /** Archive: the session was cut part-way through its window (`archiveCut`). */
  cut?: boolean;
  emptyFramesSent: number;
  pingsSent: number;
  pongsReceived: number;
  /** Negotiated WebSocket extensions (e.g. "permessage-deflate"). */
  extensions?: string;
  /** The client's User-Agent (names the replica when coordination is on). */
  userAgent?: string;
}

export interface SimulatorStats {
  framesSent: number;
  eventsSent: number;
  bytesSent: number;
  duplicatesSent: number;
  malformedSent: number;
  emptyFramesSent: number;
  drops: number;
  refused: Record<number, number>;
}

export class PodSimulatorServer {
  readonly scenario: PodScenario;
  readonly log: PodEventLog;
  readonly sessions: SessionRecord[] = [];
  readonly stats: SimulatorStats = { framesSent: 0, eventsSent: 0, bytesSent: 0, duplicatesSent: 0, malformedSent: 0, emptyFramesSent: 0, drops: 0, refused: {} };
  readonly #http: http.Server | https.Server;
  readonly #wss: WebSocketServer;
  readonly #open = new Set<OpenSession>();
  readonly #frames: FrameWriter;
  /** Per token+type: where the next live session resumes and when the last one ended. */
  readonly #resume = new Map<string, { seq: number; at: number }>();
  readonly #attempts = new Map<string, number>();
  /** Accepted archive sessions per window (type, rounded sinceTime, rounded toTime), for `archiveCut`. */
  readonly #windowAttempts = new Map<string, number>();
  #nextId = 1;

  constructor(scenario: PodScenario) {
    this.scenario = scenario;
    this.log = eventLogOf(scenario);
    this.#frames = new FrameWriter(scenario, this.log, this.stats);
    this.#wss = new WebSocketServer({ noServer: true, perMessageDeflate: scenario.perMessageDeflate, autoPong: false, maxPayload: 1_048_576 });
    const onRequest = (req: http.IncomingMessage, res: http.ServerResponse) => {
      const url = new URL(req.url ?? '/', 'http://localhost');
      if (url.pathname !== '/v1/stream') return plain(res, 404, 'Not Found');
      if (req.method !== 'GET') return plain(res, 405, 'Method Not Allowed');
      plain(res, 404, 'Invalid URL or protocol (http/https not supported)');
    };
    this.#http = scenario.tls ? https.createServer({ key: scenario.tls.key, cert: scenario.tls.cert }, onRequest) : http.createServer(onRequest);
    this.#http.on('upgrade', (req, socket: net.Socket, head) => this.#upgrade(req, socket, head));
  }

  async listen(port: number): Promise<number> {
    this.#http.listen(port, '127.0.0.1');
    await once(this.#http, 'listening');
    return (this.#http.address() as net.AddressInfo).port;
  }

  openSessions(type?: string): number {
    let n = 0;
    for (const s of this.#open) if (type === undefined || s.type === type) n++;
    return n;
  }

  /** Drops open sessions (of a type, or all) without a close frame; returns how many. */
  drop(type?: string, how: 'fin' | 'rst' = this.scenario.dropHow): number {
    const dropped = [...this.#open].filter((s) => type === undefined || s.type === type);
    for (const s of dropped) this.#drop(s, how);
    return dropped.length;
  }

  /** Sends a raw frame to the open sessions of a type; returns how many got it. */
  sendRaw(type: string, text: string): number {
    const open = [...this.#open].filter((s) => s.type === type && !s.closed);
    for (const s of open) this.#frames.send(s, text);
    return open.length;
  }

  /** Every event key a type's sessions have sent (written to the socket), repeats counted once. */
  servedKeys(type: PodStreamType): Set<string> {
    const keys = new Set<string>();
    this.#served(type, (e) => keys.add(e.key));
    return keys;
  }

  /** Every seq a type's sessions have sent (written to the socket); keys may be shared, seqs are not. */
  servedSeqs(type: PodStreamType): Set<number> {
    const seqs = new Set<number>();
    this.#served(type, (e) => seqs.add(e.seq));
    return seqs;
  }

  #served(type: PodStreamType, each: (e: GeneratedEvent) => void): void {
    forEachServed(this.sessions, this.log, type, each);
  }

  /** Applies scenario changes made at runtime to what is already running. */
  scenarioChanged(changes: object): void {
    if ('archiveCut' in changes) this.#windowAttempts.clear();
    if ('serverPingMs' in changes) for (const s of this.#open) this.#armPing(s);
  }

  async close(): Promise<void> {
    for (const s of [...this.#open]) {
      s.closed = true;
      clearTimeout(s.timer);
      clearInterval(s.pingTimer);
      if (s.immediate) clearImmediate(s.immediate);
      s.socket.destroy();
    }
    this.#wss.close();
    this.#http.closeAllConnections();
    await new Promise<void>((r) => this.#http.close(() => r()));
  }

  #upgrade(req: http.IncomingMessage, socket: net.Socket, head: Buffer): void {
    const now = this.scenario.clock.now();
    const url = new URL(req.url ?? '/', 'http://localhost');
    const type = url.searchParams.get('type') ?? '';
    const token = (req.headers.authorization ?? '').replace(/^Bearer\s+/i, '');
    const slot = `${token}\u0000${type}`;
    const rec = newSessionRecord(this.#nextId++, url, req, now);
    this.sessions.push(rec);
    const refuse = (status: number, body: string) => {
      rec.status = status;
      rec.body = body;
      rec.endedAt = now;
      this.stats.refused[status] = (this.stats.refused[status] ?? 0) + 1;
      writeRefusal(socket, status, body);
    };
    const refusal = requestRefusal(req, url, this.scenario);
    if (refusal) return refuse(...refusal);
    const streamType = type as PodStreamType;
    const asked = archiveWindow(rec, streamType, now, this.scenario);
    if (asked && 'refusal' in asked) return refuse(...asked.refusal);
    const window = asked?.window;
    const mode = window ? 'archive' : 'live';

    const attempts = (this.#attempts.get(streamType) ?? 0) + 1;
    this.#attempts.set(streamType, attempts);
    const holders = [...this.#open].filter((s) => s.token === token && s.type === streamType && (s.rec.mode === 'live' || this.scenario.archiveCountsAsSession));
    rec.concurrent = holders.length + 1;
    if (attempts <= this.scenario.conflictFirstAttempts) return refuse(409, CONFLICT_BODY);
    if (holders.length > 0 && (mode === 'live' || this.scenario.archiveCountsAsSession)) return refuse(409, CONFLICT_BODY);

    this.#wss.handleUpgrade(req, socket, head, (ws) => {
      rec.status = 101;
      rec.mode = mode;
      rec.extensions = ws.extensions;
      const s: OpenSession = { rec, type: streamType, ws, socket, token, pos: 0, closed: false, unflushed: 0 };
      this.#open.add(s);
      ws.on('ping', (data) => {
        if (!this.scenario.ignorePings) ws.pong(data);
      });
      ws.on('pong', () => rec.pongsReceived++);
      ws.on('error', () => undefined);
      ws.on('close', (code) => {
        rec.closeCode ??= code;
        this.#ended(s, s.rec.end ?? 'client_close');
      });
      this.#armPing(s);
      if (window) {
        rec.windowFrom = window.from;
        rec.windowTo = window.to;
        // Events whose ts falls in the window happened up to unsortedMs later than their ts.
        s.pos = this.log.firstAtOrAfter(streamType, window.from);
        rec.firstSeq = s.pos;
        rec.nextSeq = s.pos;
        const attempt = (this.#windowAttempts.get(window.key) ?? 0) + 1;
        this.#windowAttempts.set(window.key, attempt);
        const cut = this.scenario.archiveCut;
        if (cut && attempt <= cut.attempts) {
          const total = this.log.countTsIn(streamType, s.pos, this.#archiveLast(streamType, window.to, now), window.from, window.to);
          s.cut = { after: Math.floor(total * Math.min(1, Math.max(0, cut.afterFraction))), code: cut.code };
        }
        this.#pumpArchive(s, window.from, window.to);
      } else {
        s.pos = this.#liveStart(slot, streamType, now);
        rec.firstSeq = s.pos;
        rec.nextSeq = s.pos;
        this.#pumpLive(s);
      }
    });
  }

  #liveStart(slot: string, type: PodStreamType, now: number): number {
    const r = this.#resume.get(slot);
    if (r && now - r.at <= this.scenario.resumeWindowMs) {
      if (this.scenario.liveResumeFrom === 'now') return this.log.count(type, now);
      return Math.max(0, r.seq - this.scenario.resumeOverlapEvents);
    }
    if (r) return this.log.firstAtOrAfter(type, now - this.scenario.resumeWindowMs);
    return this.scenario.firstSessionFrom === 'origin' ? 0 : this.log.count(type, now);
  }

  #pumpLive(s: OpenSession): void {
    const step = () => {
      s.timer = undefined;
      s.immediate = undefined;
      // Closing (our close frame or the client's): nothing more is written.
      if (s.closed || s.ws.readyState !== WebSocket.OPEN) return;
      const available = this.log.count(s.type, this.scenario.clock.now());
      let n = 0;
      while (s.pos < available && n < FRAMES_PER_TURN && s.ws.bufferedAmount < this.scenario.highWaterBytes && s.ws.readyState === WebSocket.OPEN) {
        this.#frames.event(s, s.pos);
        s.pos++;
        s.rec.nextSeq = s.pos;
        n++;
        if (this.scenario.dropAfterFrames > 0 && s.rec.framesSent >= this.scenario.dropAfterFrames) {
          this.#drop(s, this.scenario.dropHow);
          return;
        }
        if (s.closed) return;
      }
      const more = s.pos < available && s.ws.bufferedAmount < this.scenario.highWaterBytes;
      if (more) s.immediate = setImmediate(step);
      else s.timer = setTimeout(step, POLL_MS);
    };
    step();
  }

  /** One past the last seq an archive window [.., to) can hold that exists at `now`. */
  #archiveLast(type: PodStreamType, to: number, now: number): number {
    return Math.min(this.log.firstAtOrAfter(type, to + this.log.options.unsortedMs + 1), this.log.count(type, now));
  }

  #pumpArchive(s: OpenSession, from: number, to: number): void {
    const last = this.#archiveLast(s.type, to, this.scenario.clock.now());
    const step = () => {
      s.timer = undefined;
      s.immediate = undefined;
      if (s.closed || s.ws.readyState !== WebSocket.OPEN) return;
      let n = 0;
      while (s.pos < last && n < FRAMES_PER_TURN * 4 && s.ws.bufferedAmount < this.scenario.highWaterBytes && s.ws.readyState === WebSocket.OPEN) {
        const e = this.log.event(s.type, s.pos);
        if (e.tsMs >= from && e.tsMs < to) {
          if (s.cut && s.rec.eventsSent >= s.cut.after) return this.#cutArchive(s);
          this.#frames.event(s, s.pos, e);
          n++;
        }
        s.pos++;
        s.rec.nextSeq = s.pos;
        if (s.closed) return;
      }
      if (s.pos >= last) {
        if (s.cut) this.#cutArchive(s);
        else if (this.scenario.archiveEnd === 'close') this.#serverClose(s, this.scenario.archiveCloseCode, 'end of window');
        return;
      }
      const more = s.ws.bufferedAmount < this.scenario.highWaterBytes;
      if (more) s.immediate = setImmediate(step);
      else s.timer = setTimeout(step, POLL_MS);
    };
    step();
  }

  #cutArchive(s: OpenSession): void {
    s.rec.cut = true;
    this.#serverClose(s, s.cut!.code, 'going away');
  }

  /** Ends a session with a close frame carrying `code`, or with an RST for 1006 (no close frame). */
  #serverClose(s: OpenSession, code: number, reason: string): void {
    s.rec.closeCode = code;
    if (code === 1006) return this.#drop(s, 'rst');
    s.rec.end = 'server_close';
    s.ws.close(code, reason);
  }

  /** (Re)starts a session's pings at the scenario's interval; none when it is 0. */
  #armPing(s: OpenSession): void {
    const every = this.scenario.serverPingMs;
    if (s.closed || every === s.pingEvery) return;
    clearInterval(s.pingTimer);
    s.pingTimer = undefined;
    s.pingEvery = every;
    if (every <= 0) return;
    s.pingTimer = setInterval(() => {
      if (s.closed || s.ws.readyState !== WebSocket.OPEN) return;
      s.ws.ping();
      s.rec.pingsSent++;
    }, every);
    s.pingTimer.unref();
  }

  #drop(s: OpenSession, how: 'fin' | 'rst'): void {
    if (s.closed) return;
    s.rec.end = 'drop';
    s.rec.closeCode = 1006;
    this.stats.drops++;
    this.#ended(s, 'drop');
    if (how === 'rst') s.socket.resetAndDestroy();
    else {
      // FIN after every frame sent so far (some may still be compressing); no WebSocket close
      // frame. Cut it for good if the peer lingers.
      const fin = () => {
        s.socket.end();
        setTimeout(() => s.socket.destroy(), 1000).unref();
      };
      if (s.unflushed > 0) s.onFlushed = fin;
      else fin();
    }
  }

  #ended(s: OpenSession, end: NonNullable<SessionRecord['end']>): void {
    if (s.closed) return;
    s.closed = true;
    clearTimeout(s.timer);
    clearInterval(s.pingTimer);
    if (s.immediate) clearImmediate(s.immediate);
    this.#open.delete(s);
    s.rec.end = end;
    s.rec.endedAt = this.scenario.clock.now();
    if (s.rec.mode === 'live') this.#resume.set(`${s.token}\u0000${s.type}`, { seq: s.pos, at: s.rec.endedAt });
  }
}

function plain(res: http.ServerResponse, status: number, body: string): void {
  res.writeHead(status, { 'content-type': 'text/plain;charset=iso-8859-1', connection: 'close' });
  res.end(body);
}
