import { test } from 'node:test';
import assert from 'node:assert/strict';
import {
  MAX_WINDOW_MS,
  MIN_WINDOW_MS,
  advance,
  formatInterval,
  oldestAllowedStart,
  planNext,
  windowProblem,
  type Positions,
  type WindowOptions,
} from '../../../plugin/sources/tap/window.ts';

const T = Date.UTC(2026, 10, 23, 12, 0, 0);
const S = 1000;
const M = 60 * S;
const H = 60 * M;
const opts: WindowOptions = { lagMs: 2 * M, periodMs: M, settleEnabled: true, settleDelayMs: 40 * M, settleWindowMs: 15 * M };
const at = (p: Partial<Positions> & { c: number; s?: number }): Positions => ({ collectedTo: p.c, settledTo: p.s ?? p.c });

test('planNext: table', () => {
  const cases: Array<{ name: string; pos: Positions; now: number; o?: Partial<WindowOptions>; want: ReturnType<typeof planNext> }> = [
    {
      name: 'backfill walks whole hours',
      pos: at({ c: T - 5 * H }),
      now: T,
      want: { window: { kind: 'fresh', start: T - 5 * H, end: T - 4 * H } },
    },
    {
      name: 'last catch-up window ends lag behind now',
      pos: at({ c: T - 30 * M }),
      now: T,
      o: { settleEnabled: false },
      want: { window: { kind: 'fresh', start: T - 30 * M, end: T - 2 * M } },
    },
    {
      name: 'caught up: waits one period past the lag',
      pos: at({ c: T - 2 * M - 20 * S }),
      now: T,
      o: { settleEnabled: false },
      want: { waitUntil: T - 2 * M - 20 * S + M + 2 * M },
    },
    {
      name: 'a period under 30 s still makes 30 s windows',
      pos: at({ c: T - 2 * M - 20 * S }),
      now: T,
      o: { settleEnabled: false, periodMs: 5 * S },
      want: { waitUntil: T - 2 * M - 20 * S + MIN_WINDOW_MS + 2 * M },
    },
    {
      name: 'settled time piled up: re-query it first',
      pos: { collectedTo: T - 2 * M, settledTo: T - 60 * M },
      now: T,
      want: { window: { kind: 'settle', start: T - 60 * M, end: T - 40 * M } },
    },
    {
      name: 'settle re-query is at most one hour',
      pos: { collectedTo: T - 2 * M, settledTo: T - 5 * H },
      now: T,
      want: { window: { kind: 'settle', start: T - 5 * H, end: T - 4 * H } },
    },
    {
      name: 'not enough settled yet: next fresh poll, or when the settle window fills',
      pos: { collectedTo: T - 2 * M - 30 * S, settledTo: T - 50 * M },
      now: T,
      want: { waitUntil: Math.min(T - 2 * M - 30 * S + 3 * M, T - 50 * M + 15 * M + 40 * M) },
    },
    {
      name: 'settle never outruns the first pass',
      pos: { collectedTo: T - 3 * H, settledTo: T - 3 * H - 10 * M },
      now: T,
      want: { window: { kind: 'fresh', start: T - 3 * H, end: T - 2 * H } },
    },
  ];
  for (const c of cases) {
    assert.deepEqual(planNext(c.pos, c.now, { ...opts, ...c.o }), c.want, c.name);
  }
});

test('advance: table', () => {
  const cases: Array<{ name: string; pos: Positions; w: [number, number]; sentAt: number; settle?: boolean; want: Positions }> = [
    {
      name: 'an old window is settled by its first query',
      pos: at({ c: T - 5 * H }),
      w: [T - 5 * H, T - 4 * H],
      sentAt: T,
      want: at({ c: T - 4 * H }),
    },
    {
      name: 'a recent window is collected, settled only up to now - delay',
      pos: at({ c: T - H }),
      w: [T - H, T - 2 * M],
      sentAt: T,
      want: { collectedTo: T - 2 * M, settledTo: T - 40 * M },
    },
    {
      name: 'a re-query settles its span',
      pos: { collectedTo: T - 2 * M, settledTo: T - 60 * M },
      w: [T - 60 * M, T - 45 * M],
      sentAt: T,
      want: { collectedTo: T - 2 * M, settledTo: T - 45 * M },
    },
    {
      name: 'a window after a gap moves nothing',
      pos: { collectedTo: T - 2 * H, settledTo: T - 3 * H },
      w: [T - H, T - 30 * M],
      sentAt: T,
      want: { collectedTo: T - 2 * H, settledTo: T - 3 * H },
    },
    {
      name: 'without settle, settled follows collected',
      pos: at({ c: T - H }),
      w: [T - H, T - 2 * M],
      sentAt: T,
      settle: false,
      want: at({ c: T - 2 * M }),
    },
  ];
  for (const c of cases) {
    const got = advance(c.pos, { kind: 'fresh', start: c.w[0], end: c.w[1] }, c.sentAt, {
      settleEnabled: c.settle ?? true,
      settleDelayMs: 40 * M,
    });
    assert.deepEqual(got, c.want, c.name);
  }
});

test('walking from 7 days back to now: every window valid, contiguous, and all time settled', () => {
  let pos = at({ c: oldestAllowedStart(T) });
  let now = T;
  let last = pos.collectedTo;
  let requests = 0;
  while (now < T + 6 * H) {
    const p = planNext(pos, now, opts);
    if ('waitUntil' in p) {
      assert.ok(p.waitUntil > now, 'waits move forward');
      now = p.waitUntil;
      continue;
    }
    const w = p.window;
    assert.equal(windowProblem(w, now), undefined, `${formatInterval(w)} at ${new Date(now).toISOString()}`);
    assert.ok(w.end - w.start >= MIN_WINDOW_MS && w.end - w.start <= MAX_WINDOW_MS, formatInterval(w));
    if (w.kind === 'fresh') {
      assert.equal(w.start, last, 'first pass is contiguous');
      last = w.end;
    }
    pos = advance(pos, w, now, opts);
    requests++;
    now += 500; // each request takes a moment
  }
  assert.ok(pos.collectedTo >= now - opts.lagMs - opts.periodMs - MIN_WINDOW_MS, 'caught up');
  assert.ok(pos.settledTo >= now - opts.settleDelayMs - opts.settleWindowMs - MIN_WINDOW_MS, 'settled');
  // 168 one-hour windows, then 6 h at one poll a minute plus a re-query per 15 settled minutes.
  assert.ok(requests < 168 + 6 * 60 + 6 * 4 + 10, `requests: ${requests}`);
});

test('formatInterval and windowProblem', () => {
  assert.equal(formatInterval({ start: T - H, end: T }), '2026-11-23T11:00:00Z/2026-11-23T12:00:00Z');
  assert.match(windowProblem({ start: T - 10 * S, end: T }, T)!, /shorter than 30 s/);
  assert.match(windowProblem({ start: T - 2 * H, end: T }, T)!, /longer than 1 h/);
  assert.match(windowProblem({ start: T - 8 * 24 * H, end: T - 8 * 24 * H + H }, T)!, /7 days/);
  assert.match(windowProblem({ start: T, end: T + M }, T)!, /future/);
  assert.equal(oldestAllowedStart(T), T - 7 * 24 * H + 5 * M);
});
