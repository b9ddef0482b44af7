/** Identity, time, cursor and live/archive decisions of the PoD source, without sockets. */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { frameKey, parseFrame } from '../../../plugin/sources/pod/identity.ts';
import { CursorTracker, coveredUntil, readCursor, type PodCursor } from '../../../plugin/sources/pod/cursor.ts';
import { floorHour, formatPodTime, nextStep, offsetOf, replayAfterDrop, replayAtStart, replayDone, windowServed, type ModeLimits } from '../../../plugin/sources/pod/mode.ts';
import { parseTimestamp } from '../../../plugin/util/time.ts';
import { handshakeError, PodCredentialsError, PodSessionConflictError } from '../../../plugin/sources/pod/errors.ts';
import { bypassed } from '../../../plugin/sources/pod/proxy.ts';
import { checkPodConfig } from '../../../plugin/sources/pod/check.ts';
import { createPodSource, podInputSchema } from '../../../plugin/sources/pod/create.ts';
import { ErrorCode } from '../../../plugin/errors.ts';

const HOUR = 3600_000;
const MIN = 60_000;
const limits: ModeLimits = { thresholdMs: 50 * MIN, stalenessMs: 30 * MIN, windowMs: HOUR, maxAgeMs: 30 * 24 * HOUR };

test('identity: the content, never the id alone; ts with microseconds in both offset styles', () => {
  const text = '{"guid":"g1","ts":"2024-05-22T12:10:03.058340-0700","id":"not-this"}';
  const m = parseFrame('message', text);
  assert.ok(m.ok);
  assert.equal(m.frame.event.key, frameKey(text));
  assert.match(m.frame.event.key, /^[A-Za-z0-9_-]{43}$/);
  // The same guid with other content is another event; an exact repeat (a trailing line break
  // aside, as maillog frames may carry) is the same one.
  const other = parseFrame('message', '{"guid":"g1","ts":"2024-05-22T12:10:04.000000-0700","id":"not-this"}');
  assert.ok(other.ok && other.frame.event.key !== m.frame.event.key);
  const repeat = parseFrame('message', `${text}\n`);
  assert.ok(repeat.ok && repeat.frame.event.key === m.frame.event.key);
  assert.deepEqual(m.frame.time, { sec: Date.UTC(2024, 4, 22, 19, 10, 3) / 1000, nsec: 58_340_000 });
  const l = parseFrame('maillog', '{"id":"NABCDefGH0/I1234slqccQ","guid":"x","ts":"2023-08-17T14:54:12.949180-07:00"}');
  assert.ok(l.ok);
  assert.ok(l.frame.event.key.length === 43);
  assert.deepEqual(l.frame.time, { sec: Date.UTC(2023, 7, 17, 21, 54, 12) / 1000, nsec: 949_180_000 });
  const a = parseFrame('audit', '{"guid":"7061cc5e","ts":"2023-10-25T21:49:38.968838+0000"}');
  assert.ok(a.ok && a.frame.ts === '2023-10-25T21:49:38.968838+0000');
});

test('record message: the frame text as it came, re-serialised only when it has a line break', () => {
  const text = '{"guid":"g", "ts":"2024-05-22T12:10:03.058340-0700",  "x":"\\u00e9"}';
  const same = parseFrame('message', text);
  assert.ok(same.ok && same.frame.event.message === text);
  const pretty = parseFrame('message', '{\n  "guid": "g",\n  "ts": "2024-05-22T12:10:03.058340-0700",\n  "s": "a\\nb"\n}');
  assert.ok(pretty.ok);
  assert.equal(pretty.frame.event.message, '{"guid":"g","ts":"2024-05-22T12:10:03.058340-0700","s":"a\\nb"}');
});

test('frames without a usable identity or time are rejected with a reason', () => {
  const reasons = [
    ['not json', /not JSON/],
    ['[1]', /not a JSON object \(array\)/],
    ['null', /not a JSON object \(null\)/],
    ['{"ts":"2024-05-22T12:10:03Z"}', /no usable "guid" \(missing\)/],
    ['{"guid":"","ts":"2024-05-22T12:10:03Z"}', /no usable "guid" \(empty\)/],
    ['{"guid":7,"ts":"2024-05-22T12:10:03Z"}', /no usable "guid" \(number\)/],
    ['{"guid":"g"}', /no usable "ts" \(missing\)/],
    ['{"guid":"g","ts":"2024-02-31T00:00:00Z"}', /unparsable "ts"/],
    ['{"guid":"g","ts":"2024-05-22T12:10:03"}', /unparsable "ts"/],
  ] as const;
  for (const [text, re] of reasons) {
    const r = parseFrame('message', text);
    assert.ok(!r.ok, text);
    assert.match(r.reason, re);
  }
  const r = parseFrame('maillog', '{"guid":"g","ts":"2024-05-22T12:10:03Z"}');
  assert.ok(!r.ok && /"id"/.test(r.reason));
});

test('cursor: the highest ts to the microsecond, whatever the arrival order', () => {
  const t = new CursorTracker();
  for (const ts of ['2024-05-22T12:10:03.000002-0700', '2024-05-22T12:10:03.000003-0700', '2024-05-22T19:10:03.000001+0000', '2024-05-22T12:10:03.000001-07:00']) {
    t.observe(ts, parseTimestamp(ts)!);
  }
  assert.equal(t.current.ts, '2024-05-22T12:10:03.000003-0700');
  assert.equal(t.current.nsec, 3_000);
  t.markLive(100);
  t.markLive(50);
  assert.equal(t.current.liveAt, 100);
  const snap = t.snapshot();
  t.markLive(200);
  assert.equal(snap.liveAt, 100, 'a snapshot does not move with the tracker');
  assert.equal(coveredUntil({ v: 1, liveAt: 5, archivedUntil: 9 }), 9);
  assert.deepEqual(readCursor({ v: 2 }).cursor, undefined);
  assert.ok(readCursor({ v: 1, sec: 'x' }).problem);
  assert.ok(readCursor({ v: 1, sec: 1, nsec: 0, ts: 'x', liveAt: 1 }).cursor);
});

test('times: floored to the hour in the cluster offset, written as PoD writes ts', () => {
  assert.equal(offsetOf('2024-05-22T12:10:03.058340-0700'), -420);
  assert.equal(offsetOf('2024-05-22T12:10:03.058340-07:00'), -420);
  assert.equal(offsetOf('2024-05-22T12:10:03+0530'), 330);
  const t = Date.UTC(2024, 4, 22, 19, 40);
  assert.equal(floorHour(t), Date.UTC(2024, 4, 22, 19));
  assert.equal(floorHour(t, 330), Date.UTC(2024, 4, 22, 19, 30), 'a +05:30 cluster rounds at :30 UTC');
  assert.equal(formatPodTime(Date.UTC(2024, 4, 22, 19), -420), '2024-05-22T12:00:00.000000-0700');
  assert.equal(formatPodTime(Date.UTC(2024, 4, 22, 19), 330), '2024-05-23T00:30:00.000000+0530');
  const u = new URL('wss://x/v1/stream');
  u.searchParams.set('sinceTime', formatPodTime(0, 60));
  assert.match(u.search, /%2B0100$/, 'the + of an offset is percent-encoded');
});

const cursorAt = (tsMs: number, extra: Partial<PodCursor> = {}): PodCursor => ({ v: 1, ts: 'x', sec: Math.floor(tsMs / 1000), nsec: (tsMs % 1000) * 1e6, ...extra });

test('start: live by default, and after a short clean stop', () => {
  const now = Date.UTC(2026, 10, 23, 12);
  assert.equal(replayAtStart({ now, uncleanShutdown: false }, limits), undefined);
  assert.equal(replayAtStart({ now, uncleanShutdown: false, cursor: cursorAt(now - 20 * MIN, { liveAt: now - 10 * MIN }) }, limits), undefined);
  // A quiet stream: the last event is days old but the live session was in touch recently.
  assert.equal(replayAtStart({ now, uncleanShutdown: false, cursor: cursorAt(now - 72 * HOUR, { liveAt: now - 5 * MIN }) }, limits), undefined);
});

test('start after an unclean shutdown: replay from the hour of the committed cursor up to now', () => {
  const now = Date.UTC(2026, 10, 23, 12, 10);
  const r = replayAtStart({ now, uncleanShutdown: true, cursor: cursorAt(now - 25 * MIN, { liveAt: now - 5 * MIN }) }, limits)!;
  assert.equal(r.reason, 'unclean_shutdown');
  assert.equal(r.from, Date.UTC(2026, 10, 23, 11));
  assert.equal(r.until, now);
  // Archive data is 30 minutes stale and the hour 11:00-12:00 is not wholly available: a partial
  // window serves what is…
  const s1 = nextStep(r, now, limits, now - 5 * MIN);
  assert.deepEqual(s1, { mode: 'archive', since: r.from, to: now - 30 * MIN, offsetMin: 0, partial: true });
  windowServed(r, s1 as Extract<typeof s1, { mode: 'archive' }>);
  assert.equal(r.from, Date.UTC(2026, 10, 23, 11), 'a partial window does not move the replay on');
  // …the rest waits while live runs, until the whole hour 11:00-12:00 is available…
  const s2 = nextStep(r, now + 1000, limits, now);
  assert.deepEqual(s2, { mode: 'live', until: Date.UTC(2026, 10, 23, 12, 30) });
  const s3 = nextStep(r, Date.UTC(2026, 10, 23, 12, 30), limits, now + 20 * MIN);
  assert.deepEqual(s3, { mode: 'archive', since: Date.UTC(2026, 10, 23, 11), to: Date.UTC(2026, 10, 23, 12), offsetMin: 0, partial: false });
  windowServed(r, s3 as Extract<typeof s3, { mode: 'archive' }>);
  // …then 12:00-13:00 (which holds the end, 12:10), whole, once it is available.
  const s4 = nextStep(r, Date.UTC(2026, 10, 23, 12, 31), limits, now + 21 * MIN);
  assert.deepEqual(s4, { mode: 'live', until: Date.UTC(2026, 10, 23, 12, 40) }, 'the part up to 12:10, partial, 30 min after 12:10');
  const s5 = nextStep(r, Date.UTC(2026, 10, 23, 13, 30), limits, Date.UTC(2026, 10, 23, 13, 29));
  assert.deepEqual(s5, { mode: 'archive', since: Date.UTC(2026, 10, 23, 12), to: Date.UTC(2026, 10, 23, 13), offsetMin: 0, partial: false });
  windowServed(r, s5 as Extract<typeof s5, { mode: 'archive' }>);
  assert.ok(replayDone(r, Date.UTC(2026, 10, 23, 13, 30), limits, Date.UTC(2026, 10, 23, 13, 29)));
});

test('a window refused for a while: live runs until it may be asked again', () => {
  const now = Date.UTC(2026, 10, 23, 14);
  const r = { reason: 'unclean_shutdown' as const, from: Date.UTC(2026, 10, 23, 11), until: Date.UTC(2026, 10, 23, 12), offsetMin: 0, notBefore: now + 5 * MIN };
  assert.deepEqual(nextStep(r, now, limits, now), { mode: 'live', until: now + 5 * MIN });
  assert.equal(nextStep(r, now + 5 * MIN, limits, now).mode, 'archive');
});

test('partial windows are never asked when refused once: whole past hours only', () => {
  const now = Date.UTC(2026, 10, 23, 12, 10);
  const r = { reason: 'unclean_shutdown' as const, from: Date.UTC(2026, 10, 23, 11), until: now, offsetMin: 0 };
  assert.deepEqual(nextStep(r, now, limits, now, false), { mode: 'live', until: Date.UTC(2026, 10, 23, 12, 30) });
});

test('start after an outage longer than the threshold: replay until live takes over', () => {
  const now = Date.UTC(2026, 10, 23, 12, 10);
  const c = cursorAt(now - 3 * HOUR - 7 * MIN, { liveAt: now - 3 * HOUR });
  const r = replayAtStart({ now, uncleanShutdown: false, cursor: c }, limits)!;
  assert.equal(r.reason, 'outage');
  assert.equal(r.from, Date.UTC(2026, 10, 23, 9));
  assert.equal(r.until, undefined);
  const windows = [];
  let t = now;
  for (;;) {
    const s = nextStep(r, t, limits, c.liveAt);
    if (s.mode === 'live') break;
    windows.push([s.since, s.to, s.partial]);
    windowServed(r, s);
    t += 5 * MIN;
  }
  assert.deepEqual(windows[0], [Date.UTC(2026, 10, 23, 9), Date.UTC(2026, 10, 23, 10), false]);
  // Whole hours, then a partial window reaches within the threshold of now, where the server's
  // last hour begins; that last hour is asked whole later.
  assert.ok(windows.slice(0, -1).every((w) => w[2] === false));
  assert.equal(windows.at(-1)![2], true);
  assert.ok(r.partialTo! >= t - limits.thresholdMs);
  assert.ok(windows.length >= 3);
});

test('start_time replays from its hour; the 30-day limit clamps and says so', () => {
  const now = Date.UTC(2026, 10, 23, 12);
  const r = replayAtStart({ now, uncleanShutdown: false, startTimeMs: Date.UTC(2026, 10, 22, 8, 45) }, limits)!;
  assert.equal(r.reason, 'start_time');
  assert.equal(r.from, Date.UTC(2026, 10, 22, 8));
  const old = replayAtStart({ now, uncleanShutdown: false, startTimeMs: Date.UTC(2026, 8, 1) }, limits)!;
  assert.equal(old.clampedFrom, Date.UTC(2026, 8, 1));
  assert.equal(old.from, Date.UTC(2026, 9, 24, 13));
});

test('a replay still owed by a previous run is taken up after a clean restart', () => {
  const now = Date.UTC(2026, 10, 23, 12);
  const owed = { reason: 'unclean_shutdown', from: now - 40 * MIN, until: now - 10 * MIN, offsetMin: 0 };
  const r = replayAtStart({ now, uncleanShutdown: false, cursor: cursorAt(now - MIN, { liveAt: now - MIN, owed }) }, limits)!;
  assert.equal(r.from, owed.from);
  assert.equal(r.until, owed.until);
});

test('a drop shorter than the threshold reconnects live; a longer one replays', () => {
  const now = Date.UTC(2026, 10, 23, 12);
  const c = cursorAt(now - 2 * HOUR);
  assert.equal(replayAfterDrop(now, now - 49 * MIN, c, limits), undefined);
  const r = replayAfterDrop(now, now - 51 * MIN, cursorAt(now - 52 * MIN), limits)!;
  assert.equal(r.reason, 'outage');
  assert.equal(r.from, floorHour(now - 52 * MIN));
});

test('handshake refusals map to codes: 401 → 100 fatal, 409 retried, 400/404/405 fatal, 5xx retried', () => {
  const e401 = handshakeError('maillog', 401, 'Error: Authentication failed.');
  assert.ok(e401 instanceof PodCredentialsError);
  assert.equal(e401.code, ErrorCode.BAD_CREDENTIALS);
  assert.equal(e401.fatal, true);
  assert.match(e401.message, /HTTP 401: "Error: Authentication failed\."/);
  const e409 = handshakeError('maillog', 409, 'Exceeded maximum number of sessions per token\r\n');
  assert.ok(e409 instanceof PodSessionConflictError);
  assert.equal(e409.fatal, false);
  assert.match(e409.message, /"Exceeded maximum number of sessions per token"/);
  for (const s of [400, 404, 405]) assert.equal(handshakeError('audit', s, 'x').fatal, true);
  assert.equal(handshakeError('audit', 503, 'x').fatal, false);
  assert.equal(handshakeError('audit', 503, 'x').code, ErrorCode.VENDOR_HTTP);
});

test('NO_PROXY: names, suffixes, ports, wildcard', () => {
  assert.equal(bypassed('logstream.proofpoint.com', 443, 'proofpoint.com'), true);
  assert.equal(bypassed('logstream.proofpoint.com', 443, '.proofpoint.com'), true);
  assert.equal(bypassed('logstream.proofpoint.com', 443, '*.proofpoint.com'), true);
  assert.equal(bypassed('logstream.proofpoint.com', 443, 'proofpoint.com:8443'), false);
  assert.equal(bypassed('logstream.proofpoint.com', 443, 'example.com,other'), false);
  assert.equal(bypassed('127.0.0.1', 80, 'localhost, 127.0.0.1'), true);
  assert.equal(bypassed('anything', 1, '*'), true);
});

test('config: defaults, Devo keys kept, check warnings, future start_time is error 101', () => {
  const now = Date.UTC(2026, 10, 23, 12);
  const cfg = podInputSchema.parse({
    id: '100002',
    credentials: { cluster_id: 'c', api_key: 'k-0123456789' },
    services: { message: { request_period_in_seconds: 60 }, maillog: {}, audit: { start_time: '2026-09-01T00:00:00Z' } },
  });
  assert.equal(cfg.ping_interval_secs, 30);
  assert.ok(cfg.max_frame_bytes > 1_048_576);
  assert.equal(cfg.services.maillog!.request_period_in_seconds, 60);
  assert.equal(cfg.services.audit!.dedup_window_secs, 7200);
  const src = createPodSource(cfg, { clock: { now: () => now, sleep: async () => {}, setTimer: () => () => {} }, env: {} });
  assert.deepEqual(
    src.services.map((s) => [s.name, s.tag]),
    [
      ['message', 'mail.proofpoint.pod.message'],
      ['maillog', 'mail.proofpoint.pod.maillog'],
      ['audit', 'mail.proofpoint.pod.audit'],
    ],
  );
  const warnings = checkPodConfig(cfg, now, { HTTPS_PROXY: 'http://user:pw@proxy:3128' });
  assert.ok(warnings.some((w) => /audit\.start_time .* more than 30 days/.test(w)));
  assert.ok(warnings.some((w) => /proxy http:\/\/proxy:3128/.test(w)));
  assert.ok(!warnings.some((w) => w.includes('pw')), 'proxy credentials are not repeated');
  const future = podInputSchema.parse({ ...cfg, services: { maillog: { start_time: '2027-01-01T00:00:00Z' } } });
  assert.throws(() => checkPodConfig(future, now, {}), (e: { code?: unknown }) => e.code === ErrorCode.BAD_START_TIME);
  assert.throws(() => podInputSchema.parse({ ...cfg, max_frame_bytes: 1000 }), /1 MiB/);
});

test('batches are flushed by count or by the injected clock, whichever comes first', async (t) => {
  const { FakeClock } = await import('../../helpers/fake-clock.ts');
  const { startPodSimulator } = await import('../../../plugin/simulator/pod/index.ts');
  const { directContext, podConfig, simBase, until } = await import('./harness.ts');
  const clock = new FakeClock(Date.now());
  const sim = await startPodSimulator({ ...simBase(clock), rate: { audit: 100, message: 0, maillog: 0 }, historyMs: 1_000, firstSessionFrom: 'origin' });
  t.after(() => sim.close());
  const ac = new AbortController();
  const cfg = podConfig(sim, { batch_max_events: 40, batch_flush_secs: 1 }, { audit: {} });
  const source = createPodSource(cfg, { clock, env: {} });
  const it = source.run(directContext({ clock, signal: ac.signal }))[Symbol.asyncIterator]();
  // 101 events exist: two full batches of 40 at once…
  const sizes: number[] = [];
  for (let i = 0; i < 2; i++) sizes.push((await it.next()).value!.events.length);
  assert.deepEqual(sizes, [40, 40]);
  await until(() => sim.sessions[0]?.eventsSent === 101, 'all sent');
  // …the remaining 21 only when the clock says the batch is 1 s old.
  let third: IteratorResult<unknown> | undefined;
  const pending = it.next().then((r) => (third = r));
  await new Promise((r) => setTimeout(r, 100));
  assert.equal(third, undefined, 'no flush before the clock moves');
  await clock.advance(1_000);
  await pending;
  assert.equal((third!.value as { events: unknown[] }).events.length, 21);
  ac.abort();
  while (!(await it.next()).done);
});

test('one partial window per hour, unless a further one would add more than the staleness: the whole hour brings the rest', () => {
  // Staleness of a few seconds (as in the simulator tests): the first partial window serves what
  // is there; what arrived while it was read is left to the whole hour, not re-read from 11:00.
  const quick: ModeLimits = { ...limits, stalenessMs: 2_000 };
  const now = Date.UTC(2026, 10, 23, 11, 30);
  const r = { reason: 'unclean_shutdown' as const, from: Date.UTC(2026, 10, 23, 11), until: now, offsetMin: 0 };
  const s1 = nextStep(r, now, quick, now - 5 * MIN);
  assert.deepEqual(s1, { mode: 'archive', since: r.from, to: now - 2_000, offsetMin: 0, partial: true });
  windowServed(r, s1 as Extract<typeof s1, { mode: 'archive' }>);
  const s2 = nextStep(r, now + 4_000, quick, now - 5 * MIN);
  assert.deepEqual(s2, { mode: 'live', until: Date.UTC(2026, 10, 23, 12) + 2_000 }, 'live until the whole hour is available');
  // Later in the hour, a replay that reaches further (say after a live drop): a further partial
  // window adds 15 minutes, worth its session.
  const s3 = nextStep({ ...r, until: now + 15 * MIN }, now + 15 * MIN, quick, now - 5 * MIN);
  assert.equal(s3.mode, 'archive');
  assert.equal((s3 as { partial: boolean }).partial, true);
});
