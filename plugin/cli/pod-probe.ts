/**
 * `check --online --probe`: asks a PoD tenant what the vendor's documentation leaves open and the
 * sidecar therefore assumes, and prints each answer beside the assumption, one line per question:
 *
 *   PROBE proofpoint_on_demand/<service> <question>: <what the server did> | sidecar assumes: <assumption> | <MATCHES|DIFFERS|INCONCLUSIVE>
 *
 * Questions, per enabled service, each bounded by `capMs` (`--probe-timeout`):
 * - archive window end: one whole past hour (an hour boundary to the next, ended at least three
 *   hours ago), read to its end and counted, never delivered. How did the server end it (close
 *   code and reason, or not at all), how long after the last frame, were there pauses?
 * - future toTime: the previous hour up to now; `toTime` is not on an hour boundary, so the
 *   server's rounding up puts it in the future. Refused, or served, and how?
 * - empty frames and pings: what the other sessions of the probe saw.
 * - with `live` (`--probe-live`) only, and asked first so that the probe's archive sessions cannot
 *   influence it: where the first live session starts (from now, from the last hour, from a
 *   resume point), and whether an archive session opened beside it is refused with 409.
 *   A live session moves the server's resume point for this token and type: the sidecar's next
 *   live session would resume after what the probe read. So these run only while the state
 *   directory is free (a running sidecar locks it), and afterwards an owed archive replay
 *   (reason `probe`) covering the probe's live session is written into the service's cursor.
 *
 * Verdicts only report: nothing here changes the exit code of `check --online`. No credential is
 * printed: every line goes through scrub(), and refusal texts are quoted and cut like the
 * sidecar's own messages.
 */
import type { RawData } from 'ws';
import type { Config } from '../config/schema.ts';
import { ErrorCode, SidecarError, VendorHttpError } from '../errors.ts';
import { scrub } from '../telemetry/secrets.ts';
import { USER_AGENT } from '../util/user-agent.ts';
import { parseTimestampMs } from '../util/time.ts';
import { StateStore } from '../state/store.ts';
import { enabledPodServices, podEndpoint } from '../sources/pod/source.ts';
import { openSocket, type OpenedSocket } from '../sources/pod/socket.ts';
import { floorHour, offsetOf, podStreamUrl } from '../sources/pod/mode.ts';
import { readCursor, type PodCursor } from '../sources/pod/cursor.ts';
import { PodCredentialsError, quote } from '../sources/pod/errors.ts';
import { proxyFor } from '../sources/pod/proxy.ts';
import { POD_LIVE_RESUME_MS, type PodInputConfig, type PodServiceName } from '../sources/pod/config.ts';

const HOUR = 3600_000;
const MINUTE = 60_000;
/** The live question reads at most this long (bounded by the cap too). */
export const LIVE_READ_MS = 20_000;
/** How close a live session's oldest `ts` must come to where it was expected to start. */
const START_TOLERANCE_MS = 5 * MINUTE;
const INPUT = 'proofpoint_on_demand';

export type ProbeVerdict = 'MATCHES' | 'DIFFERS' | 'INCONCLUSIVE';

export interface ProbeAnswer {
  service: string;
  question: string;
  observed: string;
  assumption: string;
  verdict: ProbeVerdict;
}

export interface ProbeOptions {
  /** Longest time one question may take (ms). */
  capMs: number;
  /** Also ask the live questions (moves the server's live resume point; see the module comment). */
  live: boolean;
}

export interface ProbeSummary {
  answers: ProbeAnswer[];
  counts: Record<ProbeVerdict, number>;
}

/** What one session did, as the probe read it (frames counted, never kept). */
export interface Reading {
  openedAt: number;
  endedAt: number;
  frames: number;
  /** Frames empty or whitespace only. */
  empty: number;
  /** Non-empty frames without a readable `ts`. */
  unreadable: number;
  /** Pings the server sent (ws answers them by itself). */
  pings: number;
  firstFrameAt?: number;
  lastFrameAt?: number;
  /** Longest wait for a frame while the session was open, not counting the silence at the end. */
  longestPauseMs: number;
  firstTs?: number;
  tsMin?: number;
  tsMax?: number;
  /** Frames whose `ts` lies outside the asked window (archive). */
  outside: number;
  /** The server ended the session (close frame, or a drop: 1006). */
  serverEnd?: { code: number; reason: string };
  /** The probe ended it (cap reached, or done reading). */
  byProbe: boolean;
}

/** Runs the probe of every enabled PoD service, writing each line to `out` as it is known. */
export async function probePodTenant(config: Config, out: NodeJS.WritableStream, opts: ProbeOptions): Promise<ProbeSummary> {
  const answers: ProbeAnswer[] = [];
  const write = (line: string) => out.write(scrub(line) + '\n');
  const say = (a: ProbeAnswer) => {
    answers.push(a);
    write(`PROBE ${INPUT}/${a.service} ${a.question}: ${clean(a.observed)} | sidecar assumes: ${a.assumption} | ${a.verdict}`);
  };
  const cfg = config.inputs.proofpoint_on_demand;
  if (!cfg?.enabled) {
    write(`NOTE ${INPUT}: no enabled proofpoint_on_demand input; nothing to probe`);
    return summarize(answers);
  }
  const prober = new PodProber(cfg, opts.capMs);
  let store: StateStore | undefined;
  if (opts.live) {
    try {
      // maintenance: the unclean-shutdown marker is neither set nor cleared (a crash stays visible).
      store = await StateStore.open(config.globals.state_dir, { maintenance: true });
    } catch (err) {
      const why = err instanceof SidecarError && err.code === ErrorCode.STATE_LOCKED ? `${err.message}: stop the sidecar first, then probe again` : `the state could not be opened: ${(err as Error).message}`;
      write(`NOTE ${INPUT}: --probe-live skipped (first live session, archive beside live): ${why}`);
    }
  } else {
    write(`NOTE ${INPUT}: first live session and archive beside live not asked: they need --probe-live (a live session moves the server's resume point; the sidecar must be stopped)`);
  }
  try {
    for (const service of enabledPodServices(cfg)) {
      const seen: Array<{ label: string; r: Reading }> = [];
      if (store) {
        const live = await prober.live(service, store, cfg.id, cfg.services[service]?.start_time);
        for (const a of live.answers) say(a);
        if (live.reading) seen.push({ label: 'live', r: live.reading });
        write(`NOTE ${INPUT}/${service}: ${live.owedNote}`);
      }
      const end = await prober.archiveWindowEnd(service);
      say(end.answer);
      if (end.reading) seen.unshift({ label: 'archive', r: end.reading });
      say(await prober.futureToTime(service));
      say(emptyFramesAndPings(service, seen));
    }
  } finally {
    await store?.close();
  }
  return summarize(answers);
}

function summarize(answers: ProbeAnswer[]): ProbeSummary {
  const counts: Record<ProbeVerdict, number> = { MATCHES: 0, DIFFERS: 0, INCONCLUSIVE: 0 };
  for (const a of answers) counts[a.verdict]++;
  return { answers, counts };
}

/** Server texts go on one line and must not look like the line's separators. */
function clean(text: string): string {
  return text.replace(/[\r\n]+/g, ' ').replace(/\|/g, '/');
}

class PodProber {
  readonly #cfg: PodInputConfig;
  readonly #capMs: number;
  readonly #endpoint: URL;

  constructor(cfg: PodInputConfig, capMs: number) {
    this.#cfg = cfg;
    this.#capMs = capMs;
    this.#endpoint = podEndpoint(cfg);
  }

  get #idleMs(): number {
    return this.#cfg.archive_idle_timeout_secs * 1000;
  }

  /**
   * A whole past hour, ended at least three hours ago: the hour before the one `check --online`
   * opened and closed at once, so this is the first session of this run to ask for it.
   */
  #pastHour(now: number): { since: number; to: number } {
    const to = floorHour(now - 3 * HOUR);
    return { since: to - HOUR, to };
  }

  /** Another whole past hour (the one `check --online` asked), for the session beside live. */
  #otherPastHour(now: number): { since: number; to: number } {
    const since = floorHour(now - 3 * HOUR);
    return { since, to: since + HOUR };
  }

  /** Opens a session; the handshake is bounded by the config and by what is left of the cap. */
  #open(service: PodServiceName, archive: { since: number; to: number } | undefined, deadline: number): Promise<OpenedSocket> {
    const agent = proxyFor(this.#endpoint)?.agent;
    return openSocket({
      url: podStreamUrl(this.#endpoint, this.#cfg.credentials.cluster_id, service, archive),
      apiKey: this.#cfg.credentials.api_key,
      service,
      handshakeTimeoutMs: Math.max(1, Math.min(this.#cfg.handshake_timeout_secs * 1000, deadline - Date.now())),
      maxFrameBytes: this.#cfg.max_frame_bytes,
      perMessageDeflate: this.#cfg.per_message_deflate,
      closeTimeoutMs: this.#cfg.close_timeout_secs * 1000,
      userAgent: `${USER_AGENT} (check --probe)`,
      ...(agent ? { agent } : {}),
    });
  }

  async archiveWindowEnd(service: PodServiceName): Promise<{ answer: ProbeAnswer; reading?: Reading }> {
    const question = 'archive window end';
    const idle = this.#cfg.archive_idle_timeout_secs;
    const assumption = `a window is complete only on close 1000, or after archive_idle_timeout_secs (${idle} s) of silence while reading; any other end re-asks the window`;
    const start = Date.now();
    const deadline = start + this.#capMs;
    const window = this.#pastHour(start);
    const asked = `window ${utc(window.since)} to ${utc(window.to)}`;
    let opened: OpenedSocket;
    try {
      opened = await this.#open(service, window, deadline);
    } catch (err) {
      return { answer: { service, question, observed: `${asked}: ${refusal(err)}`, assumption, verdict: 'INCONCLUSIVE' } };
    }
    const r = await readSession(opened, { deadline, closeTimeoutMs: this.#cfg.close_timeout_secs * 1000, window: { from: window.since, to: window.to } }).done;
    const counts = `${r.frames} frames (${r.empty} empty${r.outside ? `, ${r.outside} with a ts outside the window` : ''}), ${r.pings} server pings, longest pause ${secs(r.longestPauseMs)}`;
    const silence = r.endedAt - (r.lastFrameAt ?? r.openedAt);
    const sinceLast = r.lastFrameAt !== undefined ? `${secs(silence)} after the last frame` : `${secs(silence)} after opening, no frame at all`;
    const pausedTooLong = r.longestPauseMs >= this.#idleMs;
    let observed: string;
    let verdict: ProbeVerdict;
    if (r.serverEnd) {
      observed = `${asked}: ${describeEnd(r.serverEnd)} ${sinceLast}; ${counts}`;
      if (r.serverEnd.code === 1000) verdict = pausedTooLong ? 'DIFFERS' : 'MATCHES';
      else verdict = 'DIFFERS';
      if (pausedTooLong) observed += `; a pause inside the window outlasted archive_idle_timeout_secs, so the sidecar would have taken it as complete early`;
      else if (r.serverEnd.code !== 1000) observed += `; the sidecar asks such a window again, and never advances if every window ends so`;
    } else {
      observed = `${asked}: no close within the ${secs(this.#capMs)} cap (still open; the probe closed it), silent for the last ${secs(silence)}; ${counts}`;
      if (pausedTooLong) {
        verdict = 'DIFFERS';
        observed += `; a pause inside the window outlasted archive_idle_timeout_secs, so the sidecar would have taken it as complete early`;
      } else if (silence >= this.#idleMs) {
        verdict = 'MATCHES';
        observed += `; the sidecar ends such a window after ${idle} s of silence (an idle end)`;
      } else {
        verdict = 'INCONCLUSIVE';
        observed += `; still sending, or silent for less than archive_idle_timeout_secs: raise --probe-timeout`;
      }
    }
    return { answer: { service, question, observed, assumption, verdict }, reading: r };
  }

  async futureToTime(service: PodServiceName): Promise<ProbeAnswer> {
    const question = 'future toTime';
    const assumption =
      `it asks only for whole past hours older than archive_staleness_secs (${this.#cfg.archive_staleness_secs} s), ` +
      'so this request is never made by it; a 400 on an archive request is retried, never fatal';
    const start = Date.now();
    const deadline = start + this.#capMs;
    const since = floorHour(start) - HOUR;
    // Not on an hour boundary: rounded up, it lies in the future.
    const to = start % HOUR === 0 ? start + 1 : start;
    const asked = `sinceTime ${utc(since)}, toTime ${utc(to)} (rounded up: ${utc(floorHour(to) + HOUR)})`;
    let opened: OpenedSocket;
    try {
      opened = await this.#open(service, { since, to }, deadline);
    } catch (err) {
      return { service, question, observed: `${asked}: ${refusal(err)}`, assumption, verdict: statusOf(err) === 400 ? 'MATCHES' : 'INCONCLUSIVE' };
    }
    const r = await readSession(opened, { deadline, closeTimeoutMs: this.#cfg.close_timeout_secs * 1000 }).done;
    const newest = r.tsMax !== undefined ? `, newest ts ${minutes(r.openedAt - r.tsMax)} before now` : '';
    const silence = r.endedAt - (r.lastFrameAt ?? r.openedAt);
    const how = r.serverEnd ? describeEnd(r.serverEnd) : `still open after the ${secs(this.#capMs)} cap (silent for the last ${secs(silence)}; the probe closed it)`;
    return {
      service,
      question,
      observed: `${asked}: served, ${r.frames} frames (${r.empty} empty)${newest}; ${how}`,
      assumption,
      verdict: 'MATCHES',
    };
  }

  /**
   * The live questions. The server's resume point moves with them, so an owed replay covering
   * the probe's live session is written into the cursor unless the server refused the session.
   */
  async live(service: PodServiceName, store: StateStore, input: string, startTime: string | undefined): Promise<{ answers: ProbeAnswer[]; reading?: Reading; owedNote: string }> {
    const stored = await store.getCursor(input, service);
    const { cursor, problem } = readCursor(stored?.cursor);
    const answers: ProbeAnswer[] = [];
    const attemptAt = Date.now();
    const deadline = attemptAt + this.#capMs;
    let opened: OpenedSocket | undefined;
    let refusedErr: unknown;
    try {
      opened = await this.#open(service, undefined, deadline);
    } catch (err) {
      refusedErr = err;
    }
    const beside = {
      question: 'archive beside live',
      assumption: 'archive sessions count toward the one-session-per-token limit, so it never runs one beside live',
    };
    const first = { question: 'first live session', assumption: liveAssumption(cursor?.liveAt, attemptAt) };
    if (!opened) {
      answers.push({ service, ...first, observed: refusal(refusedErr), verdict: 'INCONCLUSIVE' });
      answers.push({ service, ...beside, observed: 'not asked: no live session open', verdict: 'INCONCLUSIVE' });
      // A refused handshake moved nothing; a failure after it may have.
      const nothingMoved = statusOf(refusedErr) !== undefined;
      const owedNote = nothingMoved
        ? 'the live session was refused: the server sent nothing, no replay is owed'
        : await this.#recordOwed(store, input, service, stored?.cursor, cursor, problem, startTime, attemptAt, Date.now());
      return { answers, owedNote };
    }
    const session = readSession(opened, { deadline: Math.min(deadline, Date.now() + LIVE_READ_MS), closeTimeoutMs: this.#cfg.close_timeout_secs * 1000, keepOpen: true });
    // While live is open: one archive session of the same type for a past hour.
    let besideAnswer: ProbeAnswer;
    try {
      const other = await this.#open(service, this.#otherPastHour(Date.now()), deadline);
      other.release();
      other.ws.terminate();
      besideAnswer = { service, ...beside, observed: 'an archive session opened while the live session was open was accepted (closed at once): archive sessions are exempt, the sidecar is more careful than needed', verdict: 'DIFFERS' };
    } catch (err) {
      besideAnswer = { service, ...beside, observed: `an archive session asked while the live session was open: ${refusal(err, 'the probe\'s own live session holds the token for this type')}`, verdict: statusOf(err) === 409 ? 'MATCHES' : 'INCONCLUSIVE' };
    }
    await session.readUntilDeadline;
    session.stop();
    const r = await session.done;
    answers.push({ service, ...first, ...judgeFirstLive(r, cursor?.liveAt) });
    answers.push(besideAnswer);
    const owedNote = await this.#recordOwed(store, input, service, stored?.cursor, cursor, problem, startTime, attemptAt, r.endedAt);
    return { answers, reading: r, owedNote };
  }

  /**
   * Records in the stored cursor that the events of [hour of `openedAt`, `closedAt`) are owed
   * in archive mode, merged with an owed replay already there. Returns the note to print.
   */
  async #recordOwed(
    store: StateStore,
    input: string,
    service: PodServiceName,
    raw: unknown,
    cursor: PodCursor | undefined,
    problem: string | undefined,
    startTime: string | undefined,
    openedAt: number,
    closedAt: number,
  ): Promise<string> {
    const range = (o: { from: number; until: number }) => `${utc(o.from)} to ${utc(o.until)}`;
    if (raw !== undefined && !cursor) {
      return `the probe's live session read events the server will not send again live, but the stored cursor is not understood (${problem}): nothing written; replay ${range({ from: floorHour(openedAt), until: closedAt })} by hand (start_time) if needed`;
    }
    const offsetMin = cursor?.owed?.offsetMin ?? offsetOf(cursor?.ts);
    let from = floorHour(openedAt, offsetMin);
    let until = closedAt;
    const next: PodCursor = cursor ? { ...cursor } : { v: 1 };
    if (!cursor) {
      // A cursor without any mark is taken for none at start (its owed replay ignored, and a
      // first start's start_time replay skipped): the replay's start is given as the mark, and
      // a configured start_time is kept as where the replay begins.
      const st = startTime !== undefined ? parseTimestampMs(startTime) : undefined;
      if (st !== undefined && st < from) from = floorHour(st, offsetMin);
      next.archivedUntil = from;
    }
    const prev = cursor?.owed;
    if (prev && prev.from < prev.until) {
      from = Math.min(from, prev.from);
      until = Math.max(until, prev.until);
    }
    next.owed = { reason: 'probe', from, until, offsetMin };
    // adoptCursor writes the cursor with the start time it was collected under, so the next
    // start does not take the cursor for one of another start time (which would reset it).
    const recorded = await store.getStartTime(input, service);
    await store.adoptCursor(input, service, next, recorded !== undefined ? recorded : (startTime ?? null));
    return `the probe's live session read events the server will not send again live: recorded an owed archive replay in the stored cursor, ${range(next.owed)} (reason probe${prev && prev.from < prev.until ? `, merged with the replay already owed` : ''}); the sidecar's next start replays it`;
  }
}

/** What the sidecar assumes about where this live session starts, given its last live contact. */
function liveAssumption(liveAt: number | undefined, openedAt: number): string {
  if (liveAt !== undefined && openedAt - liveAt <= POD_LIVE_RESUME_MS) {
    return `a live session opened within an hour of the previous one of this token and type resumes where that one ended (the sidecar's last live contact: ${minutes(openedAt - liveAt)} before)`;
  }
  return (
    'a live session opened more than an hour after the previous one of this token and type serves the last hour; ' +
    'a replay stops archive_threshold_secs before now and leaves the rest to it' +
    (liveAt === undefined ? ' (no live contact in the state: when this token last had a session is unknown)' : ` (the sidecar's last live contact: ${minutes(openedAt - liveAt)} before)`)
  );
}

export function judgeFirstLive(r: Reading, liveAt: number | undefined): { observed: string; verdict: ProbeVerdict } {
  const read = `${secs(r.endedAt - r.openedAt)} read, ${r.frames} frames (${r.empty} empty), ${r.pings} server pings`;
  const dropped = r.serverEnd ? `; the server ended it: ${describeEnd(r.serverEnd)}` : '';
  if (r.tsMin === undefined || r.firstTs === undefined) {
    return { observed: `no frame with a ts in ${read}${dropped} (a quiet stream?)`, verdict: 'INCONCLUSIVE' };
  }
  const lag = r.openedAt - r.tsMin;
  const where =
    lag <= START_TOLERANCE_MS
      ? 'served from now'
      : Math.abs(lag - HOUR) <= START_TOLERANCE_MS
        ? 'served from the last hour'
        : lag < HOUR
          ? `served from ${minutes(lag)} before opening (a resume point?)`
          : `served from ${minutes(lag)} before opening, more than the last hour`;
  const observed = `${where}: first frame's ts ${relative(r.openedAt - r.firstTs)} opening, oldest ts ${relative(lag)}; ${read}${dropped}`;
  const recent = liveAt !== undefined && r.openedAt - liveAt <= POD_LIVE_RESUME_MS;
  if (recent) {
    const verdict = r.tsMin >= liveAt! - START_TOLERANCE_MS && r.tsMin <= liveAt! + 2 * START_TOLERANCE_MS ? 'MATCHES' : 'DIFFERS';
    return { observed, verdict };
  }
  if (Math.abs(lag - HOUR) <= START_TOLERANCE_MS) return { observed, verdict: 'MATCHES' };
  if (liveAt === undefined && lag <= START_TOLERANCE_MS) {
    return { observed: `${observed}; the token's first session ever, or no last hour served: probe again when no session of this token ran for over an hour`, verdict: 'INCONCLUSIVE' };
  }
  return { observed, verdict: 'DIFFERS' };
}

function emptyFramesAndPings(service: string, seen: Array<{ label: string; r: Reading }>): ProbeAnswer {
  const question = 'empty frames and pings';
  const assumption = 'empty frames are counted as contact, not dead-lettered; server pings are answered by the WebSocket library and count as contact';
  if (seen.length === 0) return { service, question, observed: 'no session was read', assumption, verdict: 'INCONCLUSIVE' };
  const parts = seen.map(({ label, r }) => {
    const span = r.endedAt - r.openedAt;
    const every = r.pings >= 2 ? `, about every ${secs(span / r.pings)}` : '';
    return `${label}: ${r.empty} empty of ${r.frames} frames, ${r.pings} server pings in ${secs(span)}${every}`;
  });
  const any = seen.some(({ r }) => r.empty > 0 || r.pings > 0);
  return { service, question, observed: parts.join('; ') + (any ? '' : ' (none seen: the assumption is not exercised)'), assumption, verdict: any ? 'MATCHES' : 'INCONCLUSIVE' };
}

interface ReadOptions {
  /** The probe ends the session at this time (ms) if the server has not. */
  deadline: number;
  closeTimeoutMs: number;
  /** Archive: the asked window, to count frames whose ts lies outside it. */
  window?: { from: number; to: number };
  /** Do not close at the deadline; resolve `readUntilDeadline` and wait for stop(). */
  keepOpen?: boolean;
}

/** Reads a session, counting and discarding frames, until the server ends it or the deadline. */
function readSession(opened: OpenedSocket, o: ReadOptions): { done: Promise<Reading>; readUntilDeadline: Promise<void>; stop(): void } {
  const ws = opened.ws;
  const early = opened.early;
  const now = Date.now();
  const r: Reading = { openedAt: now, endedAt: now, frames: 0, empty: 0, unreadable: 0, pings: 0, longestPauseMs: 0, outside: 0, byProbe: false };
  let lastMark = now;
  let finished = false;
  let resolveDone!: (r: Reading) => void;
  let resolveRead!: () => void;
  const done = new Promise<Reading>((res) => (resolveDone = res));
  const readUntilDeadline = new Promise<void>((res) => (resolveRead = res));
  let cutTimer: NodeJS.Timeout | undefined;
  const finish = () => {
    if (finished) return;
    finished = true;
    clearTimeout(deadlineTimer);
    clearTimeout(cutTimer);
    r.endedAt = Date.now();
    resolveRead();
    resolveDone(r);
  };
  const onFrame = (data: RawData) => {
    const at = Date.now();
    r.longestPauseMs = Math.max(r.longestPauseMs, at - lastMark);
    lastMark = at;
    r.frames++;
    r.firstFrameAt ??= at;
    r.lastFrameAt = at;
    const text = (Array.isArray(data) ? Buffer.concat(data) : Buffer.isBuffer(data) ? data : Buffer.from(data)).toString('utf8');
    if (text.trim() === '') {
      r.empty++;
      return;
    }
    const ts = tsOf(text);
    if (ts === undefined) {
      r.unreadable++;
      return;
    }
    r.firstTs ??= ts;
    r.tsMin = Math.min(r.tsMin ?? ts, ts);
    r.tsMax = Math.max(r.tsMax ?? ts, ts);
    if (o.window && (ts < o.window.from || ts >= o.window.to)) r.outside++;
  };
  const stop = () => {
    if (finished || r.byProbe) return;
    r.byProbe = true;
    try {
      ws.close(1000, 'probe done');
    } catch {
      ws.terminate();
    }
    cutTimer = setTimeout(() => ws.terminate(), o.closeTimeoutMs);
  };
  opened.release();
  ws.on('message', onFrame);
  ws.on('ping', () => r.pings++);
  ws.on('close', (code: number, reason: Buffer) => {
    if (!r.byProbe) r.serverEnd = { code, reason: reason.toString('utf8') };
    finish();
  });
  for (const f of early.frames.splice(0)) onFrame(f);
  const deadlineTimer = setTimeout(() => (o.keepOpen ? resolveRead() : stop()), Math.max(0, o.deadline - Date.now()));
  if (early.close) {
    r.serverEnd = { code: early.close.code, reason: early.close.reason.toString('utf8') };
    finish();
  }
  return { done, readUntilDeadline, stop };
}

function tsOf(text: string): number | undefined {
  try {
    const v = JSON.parse(text) as { ts?: unknown };
    return v && typeof v === 'object' && typeof v.ts === 'string' ? parseTimestampMs(v.ts) : undefined;
  } catch {
    return undefined;
  }
}

function describeEnd(end: { code: number; reason: string }): string {
  if (end.code === 1006) return 'dropped by the server without a close frame (1006)';
  return `closed by the server with ${end.code}${end.reason ? ` (${quote(end.reason)})` : ''}`;
}

/** The HTTP status of a refused handshake; undefined when there was no HTTP answer. */
function statusOf(err: unknown): number | undefined {
  return err instanceof VendorHttpError || err instanceof PodCredentialsError ? err.status : undefined;
}

function refusal(err: unknown, conflict = 'another session holds the token for this type (is the sidecar running?)'): string {
  if (err instanceof VendorHttpError || err instanceof PodCredentialsError) {
    const hint = err.status === 409 ? `: ${conflict}` : '';
    return `refused: HTTP ${err.status} ${quote(err.body)}${hint}`;
  }
  return `no session: ${(err as Error)?.message ?? String(err)}`;
}

function utc(ms: number): string {
  return new Date(ms).toISOString();
}

function secs(ms: number): string {
  return `${(Math.max(0, ms) / 1000).toFixed(1)} s`;
}

/** `ms` before (positive) or after (negative) the moment a session opened. */
function relative(ms: number): string {
  return ms >= 0 ? `${minutes(ms)} before` : `${minutes(-ms)} after`;
}

function minutes(ms: number): string {
  return Math.abs(ms) < 2 * MINUTE ? `${(ms / 1000).toFixed(1)} s` : `${(ms / MINUTE).toFixed(1)} min`;
}
