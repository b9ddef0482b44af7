/**
 * Seeded fuzzing of the TAP source over HTTP: an in-process server on port 0 answers each window
 * with mutated fixture bodies (truncation, type swaps, deep nesting, huge strings, byte flips) and
 * random bodies before a readable answer, and the source must:
 *
 *  - never fail, throw or crash (the only failure allowed is "window retried");
 *  - retry every unreadable answer's window, never commit past it, count and report it;
 *  - deliver every well-formed event of every readable answer exactly once, and dead-letter the
 *    elements that are not events (not an object, nested deeper than the limit) with a reason.
 *
 * What is readable is decided here from the documented answer shape, independently of the client:
 * a JSON object with `queryEndTime` (a timestamp) whose service keys (trailing punctuation
 * ignored) hold arrays. The seed is printed; `FUZZ_SEED=<n>` replays a run, `FUZZ_WINDOWS=<n>`
 * sets how many one-hour windows are fuzzed (default 40, at most 160).
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { createServer, type IncomingMessage, type ServerResponse } from 'node:http';
import { existsSync, readFileSync } from 'node:fs';
import path from 'node:path';
import { Rng } from '../../../plugin/simulator/tap/random.ts';
import { tapInputSchema } from '../../../plugin/sources/tap/config.ts';
import { jsonText } from '../../../plugin/sources/tap/event.ts';
import { createTapSource, type TapCursor, type TapServiceName } from '../../../plugin/sources/tap/create.ts';
import type { Batch } from '../../../plugin/sources/source.ts';
import { parseInterval, type SimRequest } from '../../../plugin/simulator/tap/index.ts';
import { parseTimestamp } from '../../../plugin/util/time.ts';
import { FakeClock } from '../../helpers/fake-clock.ts';
import { DirectState, HOUR, T0, TrackingClock, captureLogger, directContext, driveUntil } from './harness.ts';
import { closeNow, listenLoopback } from '../../helpers/net.ts';

const SEED = Number(process.env.FUZZ_SEED ?? Math.floor(Math.random() * 2 ** 31));
const WINDOWS = Math.min(160, Number(process.env.FUZZ_WINDOWS ?? 40));
const SERVICES: TapServiceName[] = ['clicksBlocked', 'clicksPermitted', 'messagesBlocked', 'messagesDelivered'];
/** Containers an event may nest before it is refused. */
const MAX_DEPTH = 512;
/** Windows from here on are answered plainly: the run ends once the cursors pass it. */
const CUTOFF = T0 - 3 * HOUR;
const START = CUTOFF - WINDOWS * HOUR;

const FIXTURES = path.resolve(import.meta.dirname, '../../../../shared/fixtures/tap');
const FILES: Record<TapServiceName, string> = {
  clicksBlocked: 'clicks-blocked.ndjson',
  clicksPermitted: 'clicks-permitted.ndjson',
  messagesBlocked: 'messages-blocked.ndjson',
  messagesDelivered: 'messages-delivered.ndjson',
};

/** Fixture events per service; two plain ones each when the shared fixtures are absent. */
function loadSamples(): Record<TapServiceName, Record<string, unknown>[]> {
  const out = {} as Record<TapServiceName, Record<string, unknown>[]>;
  for (const s of SERVICES) {
    const file = path.join(FIXTURES, FILES[s]);
    if (existsSync(file)) {
      out[s] = readFileSync(file, 'utf8').split('\n').filter((l) => l.trim()).map((l) => JSON.parse(l) as Record<string, unknown>);
    } else {
      const timeField = s.startsWith('clicks') ? 'clickTime' : 'messageTime';
      out[s] = [0, 1].map((i) => ({ GUID: `g${i}`, id: `i${i}`, [timeField]: '2022-03-30T10:11:12.000Z', recipient: s.startsWith('clicks') ? 'r@example.com' : ['r@example.com'], threatsInfoMap: [{ threatID: 't', threatStatus: 'active' }] }));
    }
  }
  return out;
}
const SAMPLES = loadSamples();

// ---------------------------------------------------------------------------------------------
// What a readable answer is, and what it must deliver (the documented shape, not the client's code)

interface Expect {
  /** Per service, the messages (event JSON) the answer must deliver. */
  events: Map<TapServiceName, string[]>;
  /** Elements that must go to the dead-letter file. */
  rejected: number;
}

/** Containers `v` nests (0 for a scalar), counted without recursion. */
function depthOf(v: unknown): number {
  let max = 0;
  const stack: Array<[unknown, number]> = [[v, 1]];
  while (stack.length > 0) {
    const [x, d] = stack.pop()!;
    if (x === null || typeof x !== 'object') continue;
    if (d > max) max = d;
    for (const c of Array.isArray(x) ? x : Object.values(x)) if (c !== null && typeof c === 'object') stack.push([c, d + 1]);
  }
  return max;
}

/** The expectations of a 200 body, or undefined when it is not a readable answer. */
function readable(text: string): Expect | undefined {
  let body: unknown;
  try {
    body = JSON.parse(text);
  } catch {
    return undefined;
  }
  if (body === null || typeof body !== 'object' || Array.isArray(body)) return undefined;
  const events = new Map<TapServiceName, string[]>();
  let rejected = 0;
  let endTime = false;
  for (const [k, v] of Object.entries(body)) {
    const key = k.trim().replace(/[^A-Za-z]+$/, '');
    if (key === 'queryEndTime') {
      if (typeof v !== 'string' || parseTimestamp(v) === undefined) return undefined;
      endTime = true;
      continue;
    }
    if (!(SERVICES as string[]).includes(key)) continue;
    if (!Array.isArray(v)) return undefined;
    const list = events.get(key as TapServiceName) ?? [];
    events.set(key as TapServiceName, list);
    for (const el of v) {
      if (el !== null && typeof el === 'object' && !Array.isArray(el) && depthOf(el) <= MAX_DEPTH) list.push(JSON.stringify(el));
      else rejected++;
    }
  }
  return endTime ? { events, rejected } : undefined;
}

// ---------------------------------------------------------------------------------------------
// Bodies

function nest(depth: number, rng: Rng): unknown {
  let v: unknown = rng.pick([1, 'leaf', null, true]);
  for (let i = 0; i < depth; i++) v = rng.chance(0.5) ? [v] : { n: v };
  return v;
}

function randomString(rng: Rng): string {
  const alphabet = ['a', 'Z', '0', ' ', '"', '\\', '/', '\n', '\u0000', '\u00e9', '\u2028', '\ud83d\ude00', '\ud800', '{', ']'];
  let s = '';
  for (let i = rng.int(0, 12); i > 0; i--) s += rng.pick(alphabet);
  return s;
}

function randomJson(rng: Rng, depth: number): unknown {
  const kind = rng.int(0, depth > 0 ? 7 : 4);
  switch (kind) {
    case 0:
      return null;
    case 1:
      return rng.chance(0.5);
    case 2:
      return rng.pick([0, -0, 1, -1, 0.5, 1e308, -1e-308, 2 ** 53 + 1, 123456789.123, -42]);
    case 3:
    case 4:
      return randomString(rng);
    case 5:
      return Array.from({ length: rng.int(0, 4) }, () => randomJson(rng, depth - 1));
    default: {
      const o: Record<string, unknown> = {};
      for (let i = rng.int(0, 5); i > 0; i--) o[rng.pick(['a', 'b', 'k1', 'k2', '', '__proto__', 'constructor', randomString(rng)])] = randomJson(rng, depth - 1);
      return o;
    }
  }
}

const ODD_TIMES = ['1969-12-31T23:59:59.999Z', '1900-01-01T00:00:00Z', '2106-02-07T06:28:16.000Z', '9999-12-31T23:59:59.999Z', '2022-02-30T00:00:00Z', 'yesterday', ''];

/** An element of the readable answer: a fixture event (maybe with odd fields), or something that is not an event. */
function element(service: TapServiceName, rng: Rng): unknown {
  const e: Record<string, unknown> = { ...rng.pick(SAMPLES[service]) };
  // A new identity, so every generated event is a distinct event.
  e['id'] = rng.uuid();
  const timeField = service.startsWith('clicks') ? 'clickTime' : 'messageTime';
  const mutation = rng.int(0, 14);
  switch (mutation) {
    case 0:
      return rng.pick([null, 42, 'text', true, [e], []]);
    case 1:
      e['deep'] = nest(rng.int(MAX_DEPTH + 1, 5000), rng); // refused: deeper than the limit
      return e;
    case 2:
      e['deep'] = nest(rng.int(1, 300), rng); // within the limit: an event
      return e;
    case 3:
      e['huge'] = 'x'.repeat(rng.int(100_000, 400_000));
      return e;
    case 4:
      e[timeField] = rng.pick([...ODD_TIMES, 0, null, {}, [], 1.5e12]);
      return e;
    case 5:
      e['recipient'] = rng.pick(['one@example.com', ['a@example.com', 'b@example.com'], { to: 'x' }, null, 7]);
      return e;
    case 6:
      e['messageParts'] = rng.pick(['none', { md5: 'x' }, [null, 1, { md5: 'a' }], null]);
      e['threatsInfoMap'] = rng.pick([{}, 'x', [[]], [{ threatStatus: 5 }]]);
      return e;
    case 7:
      e['completelyRewritten'] = rng.pick(['true', 'na', 1, null]);
      e['classification'] = rng.pick(['MALWARE', 7, null, ['phish']]);
      return e;
    case 8: {
      const keys = Object.keys(e).filter((k) => k !== 'id');
      e[rng.pick(keys)] = randomJson(rng, 3);
      return e;
    }
    case 9: {
      const o = randomJson(rng, 4);
      return o !== null && typeof o === 'object' && !Array.isArray(o) ? { id: rng.uuid(), ...o } : o;
    }
    default:
      return e;
  }
}

/** The readable answer of a window: some services' arrays (maybe missing, maybe under a malformed key). */
function goodBody(end: number, rng: Rng): string {
  const body: Record<string, unknown> = { queryEndTime: new Date(end).toISOString().replace(/\.\d{3}Z$/, 'Z') };
  for (const s of SERVICES) {
    if (rng.chance(0.15)) continue; // a missing array is an empty one
    const key = s === 'messagesDelivered' && rng.chance(0.2) ? 'messagesDelivered:' : s;
    body[key] = Array.from({ length: rng.int(0, 4) }, () => element(s, rng));
  }
  if (rng.chance(0.1)) body['unknownKey'] = randomJson(rng, 2);
  // Elements may nest thousands of levels, past what the native JSON.stringify can walk.
  return jsonText(body);
}

/** A damaged answer made from the readable one (it may still be readable: the oracle decides). */
function damaged(good: string, end: number, rng: Rng): string {
  const parsed = JSON.parse(good) as Record<string, unknown>;
  const arrayKeys = Object.keys(parsed).filter((k) => k !== 'queryEndTime' && k !== 'unknownKey');
  switch (rng.int(0, 11)) {
    case 0:
      return good.slice(0, rng.int(0, good.length - 1)); // truncated
    case 1:
      return rng.pick(['null', '[]', `[${good}]`, '42', '"text"', 'true', '{}', '', ' \n']);
    case 2: {
      if (arrayKeys.length === 0) return 'null';
      const k = rng.pick(arrayKeys);
      const arr = parsed[k] as unknown[];
      parsed[k] = rng.pick([arr[0] ?? {}, jsonText(arr), arr.length, null, true, { ...arr }]);
      return jsonText(parsed);
    }
    case 3:
      if (rng.chance(0.5)) delete parsed['queryEndTime'];
      else parsed['queryEndTime'] = rng.pick([end, null, 'soon', { at: end }, ['2026-11-23T10:00:00Z']]);
      return jsonText(parsed);
    case 4:
    case 5: {
      const chars = good.split('');
      for (let i = rng.int(1, 3); i > 0; i--) chars[rng.int(0, chars.length - 1)] = rng.pick(['{', '}', '[', ']', '"', ',', ':', '0', 'a', ' ', '\\', 'n']);
      return chars.join('');
    }
    case 6:
      return JSON.stringify(randomJson(rng, 4));
    case 7: {
      let s = '';
      for (let i = rng.int(0, 300); i > 0; i--) s += String.fromCharCode(rng.int(0, 0xffff));
      return s;
    }
    case 8:
      return rng.chance(0.5) ? 'x'.repeat(rng.int(500_000, 1_000_000)) : jsonText({ ...parsed, clicksBlocked: 'y'.repeat(rng.int(500_000, 1_000_000)) });
    case 9: {
      const d = rng.int(10_000, 100_000);
      return rng.chance(0.5) ? '['.repeat(d) + ']'.repeat(d) : '{"queryEndTime":'.repeat(d) + '"2026-11-23T10:00:00Z"' + '}'.repeat(d);
    }
    case 10: {
      const o: Record<string, unknown> = { queryEndTime: parsed['queryEndTime'] };
      for (const s of SERVICES) o[s] = rng.chance(0.7) ? [] : randomJson(rng, 2);
      return jsonText(o);
    }
    default:
      return jsonText(parsed).replace(/\]\}$/, ']');
  }
}

// ---------------------------------------------------------------------------------------------
// The server: per window, a few damaged answers, then readable ones

interface Served {
  interval: string;
  start: number;
  end: number;
  expect?: Expect;
}

class FuzzServer {
  readonly requests: SimRequest[] = [];
  readonly served: Served[] = [];
  /** Windows answered readably at least once. */
  readonly answered = new Set<string>();
  pending = 0;
  readonly #plans = new Map<string, { bodies: string[]; next: number }>();
  readonly #server = createServer((req, res) => this.#handle(req, res));

  constructor(readonly clock: FakeClock, readonly seed: number) {}

  async listen(): Promise<string> {
    return listenLoopback(this.#server);
  }

  async close(): Promise<void> {
    await closeNow(this.#server);
  }

  #plan(interval: string, w: { start: number; end: number }): { bodies: string[]; next: number } {
    let plan = this.#plans.get(interval);
    if (plan) return plan;
    const rng = Rng.of(this.seed, interval);
    const bodies: string[] = [];
    if (w.start >= CUTOFF) {
      bodies.push(JSON.stringify({ queryEndTime: new Date(w.end).toISOString().replace(/\.\d{3}Z$/, 'Z') }));
    } else {
      const good = goodBody(w.end, rng);
      for (let i = rng.pick([0, 1, 1, 2, 3]); i > 0; i--) bodies.push(damaged(good, w.end, rng));
      bodies.push(good);
    }
    this.#plans.set(interval, (plan = { bodies, next: 0 }));
    return plan;
  }

  #handle(req: IncomingMessage, res: ServerResponse): void {
    this.pending++;
    let open = true;
    const done = () => {
      if (open) this.pending--;
      open = false;
    };
    res.once('close', done);
    const url = new URL(req.url ?? '/', 'http://fuzz');
    const query: Record<string, string[]> = {};
    for (const [k, v] of url.searchParams) (query[k] ??= []).push(v);
    const interval = query['interval']?.[0] ?? '';
    const w = parseInterval(interval);
    const rec: SimRequest = { at: this.clock.now(), method: req.method ?? '', path: url.pathname, query, status: 200, events: 0, authorized: true };
    this.requests.push(rec);
    if (!w || url.pathname !== '/v2/siem/all') {
      rec.status = 400;
      res.writeHead(400).end('bad request');
      return;
    }
    rec.window = w;
    const plan = this.#plan(interval, w);
    const body = plan.bodies[Math.min(plan.next++, plan.bodies.length - 1)]!;
    const expect = readable(body);
    this.served.push({ interval, start: w.start, end: w.end, expect });
    if (expect) this.answered.add(interval);
    res.writeHead(200, { 'content-type': 'application/json', 'content-length': Buffer.byteLength(body) }).end(body);
  }
}

test(`fuzz: damaged and random TAP answers never stop the source; every well-formed event is delivered once (FUZZ_SEED=${SEED})`, async () => {
  console.log(`TAP fuzz seed ${SEED}, ${WINDOWS} windows (replay with FUZZ_SEED=${SEED})`);
  const clock = new FakeClock(T0);
  const tracking = new TrackingClock(clock);
  const server = new FuzzServer(clock, SEED);
  const url = await server.listen();
  const cfg = tapInputSchema.parse({
    id: 'tap-fuzz',
    credentials: { username: 'fuzz-principal', password: 'fuzz-secret-5d1e' },
    override_url_base: url,
    max_events_per_batch: 3,
    services: Object.fromEntries(SERVICES.map((s) => [s, { start_time_in_utc: new Date(START).toISOString() }])),
  });
  const state = new DirectState();
  const { logger, lines } = captureLogger('info');
  const ac = new AbortController();
  const problems: string[] = [];
  let failure: unknown;
  const where = `(FUZZ_SEED=${SEED})`;

  const consume = (b: Batch<TapCursor>) => {
    // Never committed past a window whose answer was not readable yet.
    if (b.cursor) {
      const to = Date.parse(b.cursor.collected_to);
      for (const s of server.served) {
        if (s.end <= to && !server.answered.has(s.interval)) problems.push(`${b.service} committed to ${b.cursor.collected_to} past unanswered ${s.interval}`);
      }
    }
    state.consume(b);
  };
  const running = (async () => {
    try {
      for await (const b of createTapSource(cfg, { clock }).run(directContext(state, tracking, logger, ac.signal))) consume(b);
    } catch (err) {
      failure = err;
    }
  })();
  try {
    const minCollected = () => Math.min(...SERVICES.map((s) => Date.parse(state.cursors.get(s)?.collected_to ?? new Date(0).toISOString())));
    await driveUntil(tracking, server, () => `${state.batches}`, () => {
      if (failure !== undefined) throw failure;
      return minCollected() >= CUTOFF;
    }, { realMs: 60_000 });
  } finally {
    ac.abort(new Error('fuzz done'));
    await running;
    await server.close();
  }

  assert.equal(failure, undefined, `the source failed ${where}: ${String(failure)}`);
  assert.deepEqual(problems, [], where);

  // A window looked ahead while the answer before it turned out unreadable is dropped unread (and
  // logged so, naming it): those are the first answers served for that window, never read.
  const dropLines = lines.filter((l) => /looked ahead is dropped unread/.test(l.msg)).map((l) => (l as { window?: string }).window);
  const dropsLeft = new Map<string, number>();
  for (const w of dropLines) dropsLeft.set(w!, (dropsLeft.get(w!) ?? 0) + 1);
  const read = server.served.filter((s) => {
    const n = dropsLeft.get(s.interval) ?? 0;
    if (n === 0) return true;
    dropsLeft.set(s.interval, n - 1);
    return false;
  });
  assert.ok([...dropsLeft.values()].every((n) => n === 0), `every dropped look-ahead was served ${where}`);

  // Every unreadable answer read: its window asked again, reported, counted.
  const fuzzed = read.filter((s) => s.start < CUTOFF);
  const unreadable = fuzzed.filter((s) => s.expect === undefined);
  for (const [i, s] of server.served.entries()) {
    if (s.expect !== undefined) continue;
    assert.ok(server.served.slice(i + 1).some((t) => t.interval === s.interval), `unreadable answer for ${s.interval} was not retried ${where}`);
  }
  const counted = state.metrics.values('tap_malformed_answers_total').reduce((n, v) => n + v.value, 0);
  assert.equal(counted, unreadable.length, `every unreadable answer read counted, once ${where}`);
  const malformedWarnings = lines.filter((l) => l.level === 'warn' && /not the documented answer/.test(l.msg));
  assert.equal(malformedWarnings.length, unreadable.length, `every unreadable answer read logged ${where}`);
  if (unreadable.length > 0) assert.ok(state.healthLog.some((h) => h.status === 'degraded'), `health degraded ${where}`);
  assert.ok(lines.every((l) => JSON.stringify(l).length < 5000), `log lines are bounded ${where}`);
  assert.ok(!JSON.stringify(lines).includes('fuzz-secret-5d1e'), 'the secret is never logged');

  // Every well-formed event of every readable answer delivered once, nothing else; the rest dead-lettered.
  const readableAnswers = fuzzed.filter((s) => s.expect !== undefined);
  for (const svc of SERVICES) {
    const expected = new Set(readableAnswers.flatMap((s) => s.expect!.events.get(svc) ?? []));
    const delivered = state.messages(svc);
    const counts = new Map<string, number>();
    for (const m of delivered) counts.set(m, (counts.get(m) ?? 0) + 1);
    const missing = [...expected].filter((m) => !counts.has(m));
    const twice = [...counts].filter(([, n]) => n > 1);
    const unexpected = [...counts.keys()].filter((m) => !expected.has(m));
    assert.deepEqual(missing.map((m) => m.slice(0, 200)), [], `${svc}: well-formed events lost ${where}`);
    assert.deepEqual(twice.map(([m]) => m.slice(0, 200)), [], `${svc}: delivered twice ${where}`);
    assert.deepEqual(unexpected.map((m) => m.slice(0, 200)), [], `${svc}: delivered from nowhere ${where}`);
  }
  const rejected = readableAnswers.reduce((n, s) => n + s.expect!.rejected, 0);
  assert.equal(state.rejectedInputs.length, rejected, `dead-lettered elements ${where}`);
  for (const r of state.rejectedInputs) {
    assert.match(r.reason, /^\w+: (array element is \w+( \w+)?, not an event object|event nested deeper than 512 levels)$/, where);
    assert.ok(r.raw.length > 0);
  }
  const events = [...state.delivered].length;
  console.log(
    `TAP fuzz seed ${SEED}: ${server.requests.length} requests, ${unreadable.length} unreadable answers retried, ` +
      `${events} events delivered, ${rejected} elements dead-lettered`,
  );
  assert.ok(readableAnswers.length >= WINDOWS, `every fuzzed window answered ${where}`);
  assert.ok(events > 0, `events were delivered ${where}`);
});
