/**
 * TAP answers are read as a stream (sources/tap/answer-stream.ts, WindowBody in client.ts): a body
 * cut short mid-stream, after some of its events were delivered, leaves the window's cursor where
 * it was; the window is asked again and every event is delivered once.
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { createServer, type IncomingMessage, type ServerResponse } from 'node:http';
import type { AddressInfo } from 'node:net';
import { tapInputSchema } from '../../../plugin/sources/tap/config.ts';
import { createTapSource, type TapCursor } from '../../../plugin/sources/tap/create.ts';
import { TapClient, TAP_PATHS } from '../../../plugin/sources/tap/client.ts';
import { TapMalformedAnswerError } from '../../../plugin/sources/tap/errors.ts';
import { parseInterval } from '../../../plugin/simulator/tap/index.ts';
import { FakeClock } from '../../helpers/fake-clock.ts';
import { DirectState, HOUR, T0, TrackingClock, captureLogger, directContext, driveUntil } from './harness.ts';
import { closeNow, listenLoopback } from '../../helpers/net.ts';

const START = T0 - 3 * HOUR;
const EVENTS_PER_WINDOW = 40;

function clickOf(w: { start: number }, i: number) {
  return {
    campaignId: null,
    classification: 'malware',
    clickIP: '192.0.2.1',
    clickTime: new Date(w.start + i * 1000).toISOString().replace(/\.\d{3}Z$/, 'Z'),
    GUID: `guid-${w.start}-${i}`,
    id: `click-${w.start}-${i}`,
    messageID: `<m-${w.start}-${i}@example.com>`,
    recipient: 'user@example.com',
    sender: 'bad@example.net',
    senderIP: '198.51.100.7',
    threatID: 't'.repeat(64),
    threatTime: new Date(w.start).toISOString().replace(/\.\d{3}Z$/, 'Z'),
    threatURL: 'https://threatinsight.proofpoint.com/x',
    threatStatus: 'active',
    url: `https://bad.example.net/${i}`,
    userAgent: 'Mozilla/5.0',
  };
}

/** Answers each window whole, except that the first answer of each window is cut after half its bytes. */
class CuttingServer {
  readonly asked = new Map<string, number>();
  readonly requests: Array<{ interval: string }> = [];
  pending = 0;
  readonly #server = createServer((req, res) => this.#handle(req, res));

  async listen(): Promise<string> {
    return listenLoopback(this.#server);
  }
  async close(): Promise<void> {
    await closeNow(this.#server);
  }
  #handle(req: IncomingMessage, res: ServerResponse): void {
    this.pending++;
    res.once('close', () => this.pending--);
    const url = new URL(req.url ?? '/', 'http://x');
    const interval = url.searchParams.get('interval') ?? '';
    const w = parseInterval(interval)!;
    this.requests.push({ interval });
    const n = (this.asked.get(interval) ?? 0) + 1;
    this.asked.set(interval, n);
    const clicks = w.start < T0 - HOUR ? Array.from({ length: EVENTS_PER_WINDOW }, (_, i) => clickOf(w, i)) : [];
    const body = Buffer.from(JSON.stringify({ queryEndTime: new Date(w.end).toISOString().replace(/\.\d{3}Z$/, 'Z'), clicksPermitted: clicks, clicksBlocked: [] }));
    // Declares the whole length, sends half, then drops the connection: a body cut short.
    res.writeHead(200, { 'content-type': 'application/json', 'content-length': body.length });
    if (n === 1 && clicks.length > 0) {
      res.write(body.subarray(0, Math.floor(body.length / 2)), () => setTimeout(() => res.socket?.destroy(), 5));
      return;
    }
    res.end(body);
  }
}

test('a TAP window whose body is cut short mid-stream is asked again and delivers every event once', async () => {
  const clock = new FakeClock(T0);
  const tracking = new TrackingClock(clock);
  const server = new CuttingServer();
  const url = await server.listen();
  const cfg = tapInputSchema.parse({
    id: 'tap-cut',
    credentials: { username: 'cut-principal', password: 'cut-secret-77aa' },
    override_url_base: url,
    max_events_per_batch: 5,
    retry_initial_secs: 1,
    services: { clicksPermitted: { start_time_in_utc: new Date(START).toISOString() }, clicksBlocked: { start_time_in_utc: new Date(START).toISOString() } },
  });
  const state = new DirectState();
  const { logger, lines } = captureLogger('info');
  const ac = new AbortController();
  const cursorsSeen: Array<{ batchEvents: number; cursor?: TapCursor; deliveredBefore: number }> = [];
  let failure: unknown;
  const running = (async () => {
    try {
      for await (const b of createTapSource(cfg, { clock }).run(directContext(state, tracking, logger, ac.signal))) {
        cursorsSeen.push({ batchEvents: b.events.length, cursor: b.cursor, deliveredBefore: state.delivered.length });
        state.consume(b);
      }
    } catch (err) {
      failure = err;
    }
  })();
  const target = T0 - HOUR;
  try {
    // driveUntil reads only `requests.length` and `pending` of the server.
    await driveUntil(tracking, server as never, () => `${state.batches}`, () => {
      if (failure !== undefined) throw failure;
      return ['clicksPermitted', 'clicksBlocked'].every((s) => Date.parse(state.cursors.get(s)?.collected_to ?? '1970-01-01T00:00:00Z') >= target);
    }, { realMs: 20_000 });
  } finally {
    ac.abort(new Error('test done'));
    await running;
    await server.close();
  }
  assert.equal(failure, undefined);
  const fullWindows = [...server.asked].filter(([i]) => parseInterval(i)!.start < T0 - HOUR);
  assert.ok(fullWindows.length >= 2, `windows with events: ${fullWindows.length}`);
  // Each window with events was cut once and asked again.
  for (const [interval, n] of fullWindows) assert.ok(n >= 2, `${interval} asked ${n} time(s)`);
  // Some events of a cut body were delivered before the cut (the body is read as it comes)...
  // Every cut body that was read is reported, once. A window's first answer may instead have been
  // a look-ahead dropped unread (the window before it was cut): not read, not reported.
  const cutWarnings = lines.filter((l) => l.level === 'warn' && /cut short/.test(l.msg));
  const cutWindows = cutWarnings.map((l) => /interval (\S+?): /.exec(l.msg)?.[1]);
  assert.ok(cutWarnings.length >= 1 && cutWarnings.length <= fullWindows.length, `cut bodies reported: ${cutWarnings.length}`);
  assert.equal(new Set(cutWindows).size, cutWindows.length, 'each cut body reported once');
  for (const i of cutWindows) assert.ok(i !== undefined && server.asked.has(i), `a cut window named: ${i}`);
  // ...and none of them twice, none lost.
  const messages = state.messages('clicksPermitted');
  assert.equal(messages.length, fullWindows.length * EVENTS_PER_WINDOW);
  assert.equal(new Set(messages).size, messages.length, 'no event delivered twice');
  // A cursor only ever came with the last batch of a window read whole.
  for (const c of cursorsSeen.filter((x) => x.cursor)) assert.ok(Date.parse(c.cursor!.collected_to) <= target + HOUR);
  assert.ok(!JSON.stringify(lines).includes('cut-secret-77aa'));
});

test('a streamed answer keeps the documented-shape checks: a wrong shape after good elements is an error, never a shorter window', async () => {
  const bodies: Record<string, string> = {
    '/late-null': '{"queryEndTime":"2026-11-23T11:00:00Z","clicksPermitted":[{"a":1},{"a":2}],"messagesDelivered":null}',
    '/no-end-time': '{"clicksPermitted":[{"a":1}],"clicksBlocked":[]}',
    '/truncated': '{"queryEndTime":"2026-11-23T11:00:00Z","clicksPermitted":[{"a":1},{"a":',
    '/trailing': '{"queryEndTime":"2026-11-23T11:00:00Z","clicksPermitted":[]} x',
    '/deep': `{"queryEndTime":"2026-11-23T11:00:00Z","clicksPermitted":[${'['.repeat(100_000)}${']'.repeat(100_000)}]}`,
    '/split-utf8': `{"queryEndTime":"2026-11-23T11:00:00Z","clicksPermitted":[{"s":"${'é€𝄞'.repeat(50_000)}"}]}`,
  };
  const server = createServer((req, res) => {
    const pathname = new URL(req.url ?? '/', 'http://x').pathname;
    const body = Buffer.from(bodies[pathname.slice('/base'.length, pathname.indexOf('/v2/'))]!);
    res.writeHead(200, { 'content-type': 'application/json' });
    // Three-byte writes: every value and multi-byte character is split across chunks.
    let i = 0;
    const next = () => (i >= body.length ? res.end() : res.write(body.subarray(i, (i += i < 2000 ? 3 : 65536)), next));
    next();
  });
  await new Promise<void>((r) => server.listen(0, '127.0.0.1', r));
  const port = (server.address() as AddressInfo).port;
  try {
    const w = { start: T0 - 2 * HOUR, end: T0 - HOUR };
    const signal = new AbortController().signal;
    const client = (name: string) => new TapClient({ baseUrl: `http://127.0.0.1:${port}/base${name}`, username: 'u', password: 'p-secret', threatStatus: [], threatType: [], timeoutMs: 5000, input: 'shape', dispatcher: undefined });
    for (const [name, problem] of [['/late-null', /"messagesDelivered" is null, not an array/], ['/no-end-time', /no queryEndTime/], ['/truncated', /not JSON/], ['/trailing', /not JSON/]] as const) {
      const c = client(name);
      await assert.rejects(c.fetchWindow(TAP_PATHS.clicksPermitted, w, signal), (e: unknown) => e instanceof TapMalformedAnswerError && problem.test(e.message), name);
      await c.close();
    }
    const deep = client('/deep');
    const a = await deep.fetchWindow(TAP_PATHS.clicksPermitted, w, signal);
    assert.equal(a.arrays.clicksPermitted?.length, 1, 'a deeply nested element is one element (the event builder refuses it)');
    await deep.close();
    const utf = client('/split-utf8');
    const b = await utf.fetchWindow(TAP_PATHS.clicksPermitted, w, signal);
    assert.equal((b.arrays.clicksPermitted?.[0] as { s: string }).s, 'é€𝄞'.repeat(50_000));
    await utf.close();
  } finally {
    server.closeAllConnections();
    await new Promise<void>((r) => server.close(() => r()));
  }
});

test('look-ahead while streaming: the next window is asked for while the current body is still being read, not after it', async () => {
  // The first window's body stops half way until the next window's request has come in (or
  // 3 s have passed): a source asking for the next window only after the whole body would wait.
  const requests: Array<{ interval: string; at: number }> = [];
  let firstBodyEndedAt: number | undefined;
  let releaseFirst: (() => void) | undefined;
  const server = createServer((req, res) => {
    const interval = new URL(req.url ?? '/', 'http://x').searchParams.get('interval') ?? '';
    const w = parseInterval(interval)!;
    requests.push({ interval, at: performance.now() });
    releaseFirst?.();
    const clicks = Array.from({ length: EVENTS_PER_WINDOW }, (_, i) => clickOf(w, i));
    const body = Buffer.from(JSON.stringify({ queryEndTime: new Date(w.end).toISOString().replace(/\.\d{3}Z$/, 'Z'), clicksPermitted: clicks, clicksBlocked: [] }));
    res.writeHead(200, { 'content-type': 'application/json', 'content-length': body.length });
    if (requests.length > 1) return void res.end(body);
    res.write(body.subarray(0, Math.floor(body.length / 2)));
    const finish = () => {
      releaseFirst = undefined;
      clearTimeout(timer);
      res.end(body.subarray(Math.floor(body.length / 2)), () => (firstBodyEndedAt = performance.now()));
    };
    const timer = setTimeout(finish, 3000);
    releaseFirst = finish;
  });
  await new Promise<void>((r) => server.listen(0, '127.0.0.1', r));
  const cfg = tapInputSchema.parse({
    id: 'tap-ahead',
    credentials: { username: 'ahead-principal', password: 'ahead-secret' },
    override_url_base: `http://127.0.0.1:${(server.address() as AddressInfo).port}`,
    max_events_per_batch: 5,
    prefetch_next_window: true,
    services: { clicksPermitted: { start_time_in_utc: new Date(START).toISOString() }, clicksBlocked: { start_time_in_utc: new Date(START).toISOString() } },
  });
  const clock = new FakeClock(T0);
  const ac = new AbortController();
  const state = new DirectState();
  const it = createTapSource(cfg, { clock }).run(directContext(state, new TrackingClock(clock), captureLogger().logger, ac.signal))[Symbol.asyncIterator]();
  try {
    let events = 0;
    // The first window, whole: every batch but the last is yielded while its body is read.
    while (events < EVENTS_PER_WINDOW) {
      const r = await it.next();
      assert.equal(r.done, false);
      events += r.value.events.length;
      state.consume(r.value);
    }
    assert.ok(requests.length >= 2, 'the next window was asked for');
    assert.ok(firstBodyEndedAt !== undefined && requests[1]!.at < firstBodyEndedAt, 'asked for before the first body was read whole');
    assert.notEqual(requests[1]!.interval, requests[0]!.interval, 'the look-ahead is the next window');
    assert.equal(state.cursors.get('clicksPermitted')?.collected_to, new Date(START + HOUR).toISOString(), 'the cursor came with the window read whole');
  } finally {
    ac.abort(new Error('test done'));
    await it.return?.(undefined);
    server.closeAllConnections();
    await new Promise<void>((r) => server.close(() => r()));
  }
});
