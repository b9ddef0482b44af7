/**
 * The TAP SIEM API on loopback, as Proofpoint documents it: Basic auth, the six endpoints,
 * the window rules with the API's 400 texts, 200 with empty or missing arrays and 204, the per-pool
 * rolling budget with 429 (no Retry-After), and injected failures. Every request is logged with
 * what the simulator made of it, so tests can check that each one was a valid window.
 */
import { createServer, type IncomingMessage, type Server, type ServerResponse } from 'node:http';
import type { AddressInfo } from 'node:net';
import { TAP_SERVICES, type TapServiceName } from '../../sources/tap/config.ts';
import { parseTimestampMs } from '../../util/time.ts';
import { TapEventGenerator, type SimEvent } from './events.ts';
import { Rng } from './random.ts';
import type { InjectedFailure, TapScenario } from './scenario.ts';

export type SimPool = 'shared' | 'clicksPermitted';

/** The six endpoints and the arrays each returns (`/issues`: permitted clicks and delivered messages). */
export const SIM_ENDPOINTS: Record<string, readonly TapServiceName[]> = {
  '/v2/siem/clicks/blocked': ['clicksBlocked'],
  '/v2/siem/clicks/permitted': ['clicksPermitted'],
  '/v2/siem/messages/blocked': ['messagesBlocked'],
  '/v2/siem/messages/delivered': ['messagesDelivered'],
  '/v2/siem/issues': ['clicksPermitted', 'messagesDelivered'],
  '/v2/siem/all': TAP_SERVICES,
};

/** The vendor's texts, word for word: collectors match on them. */
export const TEXT = {
  tooFarBack: 'The requested start time is too far into the past. Requests for information up to 7.00d are accepted',
  stillCurrent: 'The requested interval is still current.',
  tooShort: 'The requested interval is too short. The minimum interval is thirty seconds.',
  tooLong: 'The requested interval is too long. A maximum of one hour of data can be requested in a single transaction.',
  badRequest:
    'The request is missing a mandatory request parameter, a parameter contains data which is incorrectly formatted, or the API doesn\'t have enough information to determine the identity of the customer.',
  unauthorized: 'There is no authorization information included in the request, the authorization information is incorrect, or the user is not authorized.',
  forbidden: 'The user is authenticated for the service but is not authorized to access data for the given customer.',
  throttled: 'The user has made too many requests over the past 24 hours and has been throttled.',
  serverError: 'The service has encountered an unexpected situation and is unable to give a better response to the request.',
} as const;

export interface SimRequest {
  /** Scenario time of arrival (ms). */
  at: number;
  method: string;
  path: string;
  query: Record<string, string[]>;
  pool?: SimPool;
  /** HTTP status answered; 0 when the connection was reset or left hanging. */
  status: number;
  /** The window the request asked for, as the simulator understood it. */
  window?: { start: number; end: number };
  /** How the window was selected: only `interval` is what a collector should send. */
  selector?: 'interval' | 'sinceSeconds' | 'sinceTime';
  /** The 400 text, when refused. */
  refusal?: string;
  events: number;
  authorized: boolean;
  /** The client's User-Agent (names the replica when coordination is on). */
  userAgent?: string;
  /** Scenario time the answer was finished or the connection closed. */
  endedAt?: number;
}

export function poolOfPath(path: string): SimPool {
  return path === '/v2/siem/clicks/permitted' ? 'clicksPermitted' : 'shared';
}

const DURATION = /^P(?:(\d+)D)?(?:T(?:(\d+)H)?(?:(\d+)M)?(?:(\d+(?:\.\d+)?)S)?)?$/;

function parseDuration(text: string): number | undefined {
  const m = DURATION.exec(text);
  if (!m || text === 'P' || text.endsWith('T')) return undefined;
  const [, d = '0', h = '0', mi = '0', s = '0'] = m;
  return ((+d * 24 + +h) * 60 + +mi) * 60_000 + Math.round(+s * 1000);
}

/** `start/end`, `PT30M/end` or `start/PT30M` (the vendor's three forms). */
export function parseInterval(text: string): { start: number; end: number } | undefined {
  const parts = text.split('/');
  if (parts.length !== 2) return undefined;
  const [a, b] = parts as [string, string];
  const sa = parseTimestampMs(a);
  const sb = parseTimestampMs(b);
  if (sa !== undefined && sb !== undefined) return { start: sa, end: sb };
  if (sa === undefined && sb !== undefined) {
    const d = parseDuration(a);
    return d === undefined ? undefined : { start: sb - d, end: sb };
  }
  if (sa !== undefined && sb === undefined) {
    const d = parseDuration(b);
    return d === undefined ? undefined : { start: sa, end: sa + d };
  }
  return undefined;
}

const apiTime = (ms: number) => new Date(ms).toISOString().replace(/\.\d{3}Z$/, 'Z');

export class TapSimServer {
  readonly requests: SimRequest[] = [];
  readonly generator: TapEventGenerator;
  readonly #sc: TapScenario;
  readonly #server: Server;
  /** Accepted request times per (credential, pool), for the rolling budget. */
  readonly #budget = new Map<string, number[]>();
  #served = 0;
  #pending = 0;

  constructor(scenario: TapScenario) {
    this.#sc = scenario;
    this.generator = new TapEventGenerator(scenario);
    this.#server = createServer((req, res) => this.#handle(req, res));
    this.#server.keepAliveTimeout = 5_000;
  }

  async listen(): Promise<string> {
    await new Promise<void>((resolve, reject) => {
      this.#server.once('error', reject);
      this.#server.listen(this.#sc.port, this.#sc.host, () => resolve());
    });
    const addr = this.#server.address() as AddressInfo;
    const host = addr.family === 'IPv6' ? `[${addr.address}]` : addr.address;
    return `http://${host}:${addr.port}`;
  }

  async close(): Promise<void> {
    await new Promise<void>((resolve) => {
      this.#server.close(() => resolve());
      this.#server.closeAllConnections();
    });
  }

  /** Requests counted in the pool's rolling window at `now` (all credentials). */
  budgetUsed(pool: SimPool, now = this.#sc.clock.now()): number {
    let n = 0;
    for (const [k, times] of this.#budget) if (k.endsWith(`|${pool}`)) n += times.filter((t) => t > now - this.#sc.budgetWindowMs).length;
    return n;
  }

  /** Requests received and not yet answered (or dropped). */
  get pending(): number {
    return this.#pending;
  }

  resetBudget(): void {
    this.#budget.clear();
  }

  #handle(req: IncomingMessage, res: ServerResponse): void {
    const now = this.#sc.clock.now();
    const url = new URL(req.url ?? '/', 'http://sim');
    const rec = this.#track(req, res, url, now);
    const reply = (status: number, body?: string, type = 'text/plain; charset=utf-8') => {
      rec.status = status;
      if (body === undefined || status === 204) {
        res.writeHead(status).end();
      } else {
        res.writeHead(status, { 'content-type': type, 'content-length': Buffer.byteLength(body) }).end(body);
      }
    };

    const services = SIM_ENDPOINTS[url.pathname];
    if (!services) return reply(404, 'Not Found');
    if (req.method !== 'GET') return reply(405, 'Method Not Allowed');
    const user = this.#authorize(req.headers.authorization);
    if (user === undefined) return reply(401, TEXT.unauthorized);
    rec.authorized = true;
    const pool = poolOfPath(url.pathname);
    rec.pool = pool;

    const failure = this.#takeFailure(url.pathname);
    if (failure?.kind === 'reset') {
      req.socket.destroy();
      return;
    }
    if (failure?.kind === 'hang') return; // the client's timeout ends it; close() destroys it
    if (!this.#spend(`${user}|${pool}`, now)) return reply(429, TEXT.throttled);
    if (failure?.kind === 'status') return reply(failure.status, failure.body ?? defaultText(failure.status));

    const selected = this.#window(rec.query, now, rec);
    if (typeof selected === 'string') {
      rec.refusal = selected;
      return reply(400, selected);
    }
    rec.window = selected;
    const answer = this.#answer(services, rec, selected, now);
    return reply(answer.status, answer.body, answer.type);
  }

  /** Logs the request in `requests` and counts it as pending until answered or dropped. */
  #track(req: IncomingMessage, res: ServerResponse, url: URL, now: number): SimRequest {
    const query: Record<string, string[]> = {};
    for (const [k, v] of url.searchParams) (query[k] ??= []).push(v);
    const rec: SimRequest = {
      at: now,
      method: req.method ?? '',
      path: url.pathname,
      query,
      status: 0,
      events: 0,
      authorized: false,
      userAgent: req.headers['user-agent'],
    };
    this.requests.push(rec);
    this.#pending++;
    let counted = true;
    const done = () => {
      rec.endedAt ??= this.#sc.clock.now();
      if (counted) this.#pending--;
      counted = false;
    };
    res.once('finish', done);
    res.once('close', done);
    return rec;
  }

  /** The rolling budget: false (429) until 24 h past the oldest counted request; 429s are not counted. */
  #spend(key: string, now: number): boolean {
    const times = (this.#budget.get(key) ?? []).filter((t) => t > now - this.#sc.budgetWindowMs);
    this.#budget.set(key, times);
    if (times.length >= this.#sc.budgetPerPool) return false;
    times.push(now);
    return true;
  }

  /** The answer to a valid window: the events visible by now, in the requested format and empty style. */
  #answer(services: readonly TapServiceName[], rec: SimRequest, selected: { start: number; end: number }, now: number): { status: number; body?: string; type?: string } {
    const query = rec.query;
    const statuses = new Set((query['threatStatus'] ?? ['active', 'cleared']).map((s) => s.toLowerCase()));
    const types = query['threatType'] ? new Set(query['threatType']) : undefined;
    const arrays: Partial<Record<TapServiceName, Record<string, unknown>[]>> = {};
    const order = Rng.of(this.#sc.seed, 'order', this.#served++);
    let total = 0;
    for (const svc of services) {
      const events = this.generator
        .eventsIn(svc, selected.start, selected.end)
        .filter((e) => e.visibleAt <= now && matches(e, statuses, types));
      arrays[svc] = order.shuffle(events.map((e) => e.body));
      total += events.length;
    }
    rec.events = total;

    const format = (query['format']?.[0] ?? 'syslog').toLowerCase();
    if (format !== 'json') {
      // The API's default is syslog; a collector that forgets format=json gets lines it cannot parse.
      const lines = services.flatMap((s) => (arrays[s] ?? []).map((b) => `${apiTime(now)} tap-siem ${s}: ${JSON.stringify(b)}`));
      return { status: 200, body: lines.join('\n') };
    }
    const json = 'application/json';
    if (total === 0) {
      const style = this.#sc.quirks.emptyResponse === 'mixed' ? order.pick(['200', 'missing', '204'] as const) : this.#sc.quirks.emptyResponse;
      if (style === '204') return { status: 204 };
      const body: Record<string, unknown> = { queryEndTime: apiTime(selected.end) };
      if (style === '200') for (const s of services) body[s] = [];
      return { status: 200, body: JSON.stringify(body), type: json };
    }
    const body: Record<string, unknown> = { queryEndTime: apiTime(selected.end) };
    for (const s of services) {
      const name = s === 'messagesDelivered' && order.chance(this.#sc.quirks.malformedKeys) ? 'messagesDelivered:' : s;
      body[name] = arrays[s];
    }
    return { status: 200, body: JSON.stringify(body), type: json };
  }

  #authorize(header: string | undefined): string | undefined {
    const m = /^Basic\s+(.+)$/i.exec(header ?? '');
    if (!m) return undefined;
    const text = Buffer.from(m[1]!, 'base64').toString('utf8');
    const i = text.indexOf(':');
    const user = text.slice(0, i);
    const pass = text.slice(i + 1);
    const c = this.#sc.credentials;
    return i > 0 && user === c.username && pass === c.password ? user : undefined;
  }

  #takeFailure(path: string): InjectedFailure | undefined {
    const list = this.#sc.failures;
    const i = list.findIndex((f) => f.path === undefined || f.path === path);
    if (i < 0) return undefined;
    const f = list[i]!;
    const left = (f.times ?? 1) - 1;
    if (left <= 0) list.splice(i, 1);
    else list[i] = { ...f, times: left };
    return f;
  }

  /** The window a request selects, or the 400 text refusing it. */
  #window(query: Record<string, string[]>, now: number, rec: SimRequest): { start: number; end: number } | string {
    const selectors = (['interval', 'sinceSeconds', 'sinceTime'] as const).filter((k) => query[k] !== undefined);
    if (selectors.length !== 1 || query[selectors[0]!]!.length !== 1) return TEXT.badRequest;
    const which = selectors[0]!;
    rec.selector = which;
    const value = query[which]![0]!;
    // sinceSeconds / sinceTime end at the server's time rounded to the nearest minute.
    const rounded = Math.round(now / 60_000) * 60_000;
    let w: { start: number; end: number } | undefined;
    if (which === 'interval') w = parseInterval(value);
    else if (which === 'sinceSeconds') w = /^\d+$/.test(value) ? { start: rounded - Number(value) * 1000, end: rounded } : undefined;
    else {
      const start = parseTimestampMs(value);
      w = start === undefined ? undefined : { start, end: rounded };
    }
    if (!w) return TEXT.badRequest;
    if (w.end < w.start) return '';
    const len = w.end - w.start;
    if (len < 30_000) return TEXT.tooShort;
    if (len > 3600_000) return TEXT.tooLong;
    if (w.start < now - this.#sc.lookbackMs) return TEXT.tooFarBack;
    if (w.end > now) return TEXT.stillCurrent;
    return w;
  }
}

function matches(e: SimEvent, statuses: Set<string>, types: Set<string> | undefined): boolean {
  if (!e.statuses.some((s) => statuses.has(s))) return false;
  return types === undefined || e.threatTypes.some((t) => types.has(t));
}

function defaultText(status: number): string {
  if (status === 401) return TEXT.unauthorized;
  if (status === 403) return TEXT.forbidden;
  if (status === 429) return TEXT.throttled;
  if (status === 400) return TEXT.badRequest;
  return status >= 500 ? TEXT.serverError : '';
}
