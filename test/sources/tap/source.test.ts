/**
 * The TAP source end to end: simulator -> TapSource -> Pipeline -> StateStore (LevelDB) ->
 * MemorySink, on one fake clock. One table row per behaviour of the source: stored
 * cursor in, simulator scenario, expected records out (the simulator's truth, each event version
 * exactly once), expected committed cursor out, and every request a valid window.
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { NO_QUIRKS, type TapScenarioOptions } from '../../../plugin/simulator/tap/index.ts';
import type { TapInputConfigInput } from '../../../plugin/sources/tap/config.ts';
import type { TapCursor, TapServiceName } from '../../../plugin/sources/tap/create.ts';
import { DAY, HOUR, MIN, T0, TapHarness, compareWithTruth, invalidRequests } from './harness.ts';

const iso = (ms: number) => new Date(ms).toISOString();
const cursorAt = (collected: number, settled = collected): TapCursor => ({ v: 1, collected_to: iso(collected), settled_to: iso(settled) });
const ALL: TapServiceName[] = ['clicksBlocked', 'clicksPermitted', 'messagesBlocked', 'messagesDelivered'];
const startAll = (at: number, extra: Record<string, unknown> = {}) =>
  Object.fromEntries(ALL.map((s) => [s, { start_time_in_utc: iso(at), ...extra }]));
const LOW_RATES = { clicksBlocked: 4, clicksPermitted: 4, messagesBlocked: 4, messagesDelivered: 8 };

interface Case {
  name: string;
  scenario?: TapScenarioOptions;
  config?: Partial<TapInputConfigInput>;
  /** Stored cursors before the first start. */
  cursorsIn?: Partial<Record<TapServiceName, TapCursor>>;
  /** Drives the run; default: start, then run until every service settled up to `settleTo`. */
  run?: (h: TapHarness, c: Case) => Promise<void>;
  settleTo: number;
  /** Every event version whose index time is in this span is delivered exactly once. */
  span: [number, number];
  /** The committed cursor out, per service (default: settled to at least settleTo). */
  cursorOut?: (c: TapCursor, service: TapServiceName, h: TapHarness) => void;
  check?: (h: TapHarness) => void | Promise<void>;
  threatStatus?: string[];
  realMs?: number;
  /** Services delivered again on purpose (their state was reset). */
  redelivered?: TapServiceName[];
}

const cases: Case[] = [
  {
    name: 'a 7-day backfill: 168 one-hour windows, settled at once, then caught up',
    scenario: { ratesPerHour: LOW_RATES, quirks: { repeatMaxAgeMs: 6 * HOUR } },
    config: { services: startAll(T0 - 7 * DAY + 10 * MIN) },
    settleTo: T0 - 45 * MIN,
    span: [T0 - 7 * DAY + 10 * MIN, T0 - 45 * MIN],
    check: (h) => {
      const fresh = h.sim.requests.filter((r) => r.window && r.window.end - r.window.start === HOUR);
      assert.ok(fresh.length >= 167, `whole-hour windows: ${fresh.length}`);
      assert.ok(h.sim.requests.length < 168 + 60, `requests: ${h.sim.requests.length}`);
      assert.ok(h.sim.requests.every((r) => r.path === '/v2/siem/all'), 'one /all request per window serves four services');
    },
    realMs: 40_000,
  },
  {
    name: 'catch-up, then steady polling every request_period_in_seconds',
    scenario: { ratesPerHour: LOW_RATES },
    config: { services: startAll(T0 - 3 * HOUR) },
    run: async (h) => {
      await h.start();
      await h.runUntil(() => h.clock.now() >= T0 + 3 * HOUR);
    },
    settleTo: T0 + 2 * HOUR,
    span: [T0 - 3 * HOUR, T0 + 2 * HOUR],
    cursorOut: (c, s, h) => {
      assert.ok(Date.parse(c.collected_to) >= h.clock.now() - 2 * MIN - 2 * MIN, `${s} collected_to ${c.collected_to} is within lag + period of now`);
    },
    check: (h) => {
      const steady = h.sim.requests.filter((r) => r.at >= T0 + HOUR && r.window!.end - r.window!.start === MIN);
      assert.ok(steady.length >= 100, `one-minute polls: ${steady.length}`);
      const settle = h.sim.requests.filter((r) => r.at >= T0 + HOUR && r.window!.end - r.window!.start === 15 * MIN);
      assert.ok(settle.length >= 6, `15-minute settle re-queries: ${settle.length}`);
      const gaps = steady.slice(1).map((r, i) => r.at - steady[i]!.at);
      assert.ok(gaps.every((g) => g >= MIN), 'never faster than the period');
    },
  },
  {
    name: 'a stored cursor in: collection continues where it was committed',
    scenario: { ratesPerHour: LOW_RATES },
    cursorsIn: Object.fromEntries(ALL.map((s) => [s, cursorAt(T0 - 5 * HOUR, T0 - 6 * HOUR)])),
    settleTo: T0 - 45 * MIN,
    span: [T0 - 6 * HOUR, T0 - 45 * MIN],
    check: (h) => {
      const first = h.sim.requests[0]!;
      assert.equal(first.window!.start, T0 - 6 * HOUR, 'the unsettled hour is re-queried first');
      assert.ok(h.sim.requests.every((r) => r.window!.start >= T0 - 6 * HOUR), 'nothing before the cursor');
    },
  },
  {
    name: 'restart mid-backfill: no gap, nothing delivered twice',
    scenario: { ratesPerHour: LOW_RATES },
    config: { services: startAll(T0 - 2 * DAY) },
    run: async (h) => {
      await h.start();
      await h.runUntil(() => ALL.every((s) => (h.cursor(s) ? Date.parse(h.cursor(s)!.collected_to) >= T0 - 2 * DAY + 12 * HOUR : false)));
      await h.stop();
      const committed = h.cursor('clicksBlocked')!;
      const before = h.sim.requests.length;
      await h.start();
      await h.runUntilSettled(T0 - 45 * MIN);
      const resumed = h.sim.requests[before]!;
      assert.equal(resumed.window!.start, Date.parse(committed.collected_to), 'the first window after the restart starts at the committed cursor');
    },
    settleTo: T0 - 45 * MIN,
    span: [T0 - 2 * DAY, T0 - 45 * MIN],
  },
  {
    name: 'late-indexed events: delivered once by the settle re-query, not lost',
    scenario: { ratesPerHour: { clicksBlocked: 30, clicksPermitted: 30, messagesBlocked: 30, messagesDelivered: 30 }, quirks: { ...NO_QUIRKS, lateIndexed: 0.4 } },
    config: { services: startAll(T0 - HOUR) },
    run: async (h) => {
      await h.start();
      await h.runUntilSettled(T0 + HOUR);
    },
    settleTo: T0 + HOUR,
    span: [T0 - HOUR, T0 + HOUR],
    check: (h) => {
      const late = ALL.flatMap((s) => h.sim.events(s, T0 - HOUR, T0 + HOUR).filter((e) => e.visibleAt - e.indexTime > 3 * MIN));
      assert.ok(late.length > 20, `late events in the span: ${late.length}`);
      const settleSent = h.logs.filter((l) => l['kind'] === 'settle' && Number(l['sent']) > 0);
      assert.ok(settleSent.length > 0, 'settle re-queries delivered events the first pass could not see');
      const dupFiltered = h.logs.filter((l) => l['kind'] === 'settle').reduce((n, l) => n + Number(l['duplicates'] ?? 0), 0);
      assert.ok(dupFiltered > 0, 'and de-duplication dropped what the first pass had delivered');
    },
  },
  {
    name: 'multi-recipient messages sharing a GUID, without ids: every recipient\'s event delivered',
    scenario: {
      ratesPerHour: { clicksBlocked: 0, clicksPermitted: 0, messagesBlocked: 20, messagesDelivered: 20 },
      quirks: { ...NO_QUIRKS, multiRecipient: 1, multiRecipientWithoutId: 1 },
    },
    config: { services: { messagesBlocked: { start_time_in_utc: iso(T0 - 3 * HOUR) }, messagesDelivered: { start_time_in_utc: iso(T0 - 3 * HOUR) } } },
    settleTo: T0 - 45 * MIN,
    span: [T0 - 3 * HOUR, T0 - 45 * MIN],
    check: (h) => {
      const msgs = h.messages('messagesDelivered').map((m) => JSON.parse(m));
      const byGuid = new Map<string, number>();
      for (const m of msgs) byGuid.set(m.GUID, (byGuid.get(m.GUID) ?? 0) + 1);
      assert.ok([...byGuid.values()].every((n) => n >= 2), 'each message delivered once per recipient');
      assert.ok(msgs.every((m) => m.id === undefined), 'and they carry no id');
    },
  },
  {
    name: 'exact repeats in later windows (reordered keys and arrays): dropped',
    scenario: { ratesPerHour: LOW_RATES, quirks: { ...NO_QUIRKS, exactRepeats: 0.6, reorderRepeats: true, repeatMaxAgeMs: 2 * HOUR } },
    config: { services: startAll(T0 - 6 * HOUR) },
    settleTo: T0 - 45 * MIN,
    span: [T0 - 6 * HOUR, T0 - 45 * MIN],
    check: (h) => {
      const served = ALL.flatMap((s) => h.sim.events(s, T0 - 4 * HOUR, T0 - 45 * MIN).filter((e) => e.repeat === 'exact'));
      assert.ok(served.length > 10, `repeats served: ${served.length}`);
      const filtered = h.logs.filter((l) => l['pulling_id'] !== undefined).reduce((n, l) => n + Number(l['duplicates'] ?? 0), 0);
      assert.ok(filtered >= served.length, `duplicates filtered ${filtered} >= repeats served ${served.length}`);
    },
  },
  {
    name: 'a status change is a new event: delivered',
    scenario: { ratesPerHour: LOW_RATES, quirks: { ...NO_QUIRKS, statusChanges: 0.6, repeatMaxAgeMs: 2 * HOUR } },
    config: { services: startAll(T0 - 6 * HOUR), include_false_positives: true },
    threatStatus: ['active', 'cleared', 'falsePositive'],
    settleTo: T0 - 45 * MIN,
    span: [T0 - 6 * HOUR, T0 - 45 * MIN],
    check: (h) => {
      const changed = h.messages('clicksBlocked').map((m) => JSON.parse(m)).filter((m) => m.threatStatus !== 'active');
      assert.ok(changed.some((m) => m.threatStatus === 'falsePositive'), 'false positives, opted in');
      const ids = h.messages('clicksBlocked').map((m) => JSON.parse(m).id as string);
      assert.ok(ids.length > new Set(ids).size, 'the same click delivered again with its new status');
      assert.ok(h.sim.requests.every((r) => r.query['threatStatus']?.includes('falsePositive')), 'asked for false positives');
    },
  },
  {
    name: '204 and empty windows: the cursor advances',
    scenario: { ratesPerHour: { clicksBlocked: 0, clicksPermitted: 0, messagesBlocked: 0, messagesDelivered: 0 }, quirks: { ...NO_QUIRKS, emptyResponse: 'mixed' } },
    config: { services: startAll(T0 - 10 * HOUR) },
    settleTo: T0 - 45 * MIN,
    span: [T0 - 10 * HOUR, T0 - 45 * MIN],
    cursorOut: (c) => assert.ok(Date.parse(c.collected_to) >= T0 - 3 * MIN, `collected_to ${c.collected_to}`),
    check: (h) => {
      const statuses = new Set(h.sim.requests.map((r) => r.status));
      assert.ok(statuses.has(204) && statuses.has(200), `answers: ${[...statuses]}`);
      assert.ok(h.sim.requests.length < 10 + 20, 'each window asked once: no re-walk of empty windows');
    },
  },
  {
    name: 'rate budget spent: no request before it allows (across a restart), nothing lost',
    scenario: { ratesPerHour: LOW_RATES, budgetPerPool: 12 },
    config: { services: startAll(T0 - 20 * HOUR), max_requests_per_day: 12 },
    run: async (h) => {
      await h.start();
      await h.runUntil(() => h.sim.requests.length >= 8);
      // The persisted request log tells the new source that 8 of 12 are spent.
      await h.restart();
      await h.runUntilSettled(T0 - 45 * MIN);
    },
    settleTo: T0 - 45 * MIN,
    span: [T0 - 20 * HOUR, T0 - 45 * MIN],
    check: (h) => {
      for (const r of h.sim.requests) {
        const inDay = h.sim.requests.filter((x) => x.at > r.at - DAY && x.at <= r.at).length;
        assert.ok(inDay <= 12, `at most 12 requests in any 24 h (${inDay} before ${iso(r.at)})`);
      }
      assert.ok(h.sim.requests.every((r) => r.status !== 429), 'the API never had to say 429');
      assert.ok(h.logs.some((l) => /pool shared is spent .* next request allowed at/.test(l.msg)), 'the wait is logged with the next allowed time');
    },
  },
  {
    name: '429 from the API (budget used elsewhere): long backoff, nothing lost',
    scenario: { ratesPerHour: LOW_RATES, budgetPerPool: 6 },
    config: { services: startAll(T0 - 10 * HOUR) },
    settleTo: T0 - 45 * MIN,
    span: [T0 - 10 * HOUR, T0 - 45 * MIN],
    check: (h) => {
      const reqs = h.sim.requests;
      const throttled = reqs.filter((r) => r.status === 429);
      assert.ok(throttled.length > 0, 'the API throttled');
      for (const r of throttled) {
        const next = reqs[reqs.indexOf(r) + 1];
        if (next) assert.ok(next.at - r.at >= 15 * MIN, `after a 429 the next request waits at least 15 min (${(next.at - r.at) / MIN} min)`);
      }
      assert.ok(h.logs.some((l) => /answered 429 for pool shared/.test(l.msg)), 'the 429 is logged');
    },
  },
  {
    name: 'start time older than 7 days: clamped to the API\'s limit, with a warning',
    scenario: { ratesPerHour: LOW_RATES },
    config: { services: startAll(T0 - 10 * DAY) },
    settleTo: T0 - 45 * MIN,
    span: [T0 - 7 * DAY + 5 * MIN, T0 - 45 * MIN],
    check: (h) => {
      assert.equal(h.sim.requests[0]!.window!.start, T0 - 7 * DAY + 5 * MIN);
      const warn = h.warnings().filter((l) => /data older than 7 days cannot be fetched/.test(l.msg));
      assert.equal(warn.length, 4, 'one warning per service');
      assert.match(warn[0]!.msg, /events from 2026-11-13T12:00:00.000Z to 2026-11-16T12:05:00.000Z are skipped/);
    },
    realMs: 40_000,
  },
  {
    name: 'a stored cursor older than 7 days (sidecar was down): clamped, warned',
    scenario: { ratesPerHour: LOW_RATES },
    cursorsIn: Object.fromEntries(ALL.map((s) => [s, cursorAt(T0 - 9 * DAY)])),
    config: { services: startAll(T0 - 9 * DAY - HOUR) },
    settleTo: T0 - 45 * MIN,
    span: [T0 - 7 * DAY + 5 * MIN, T0 - 45 * MIN],
    check: (h) => {
      assert.ok(h.warnings().some((l) => /data older than 7 days cannot be fetched/.test(l.msg)), 'warned');
      assert.equal(h.sim.requests[0]!.window!.start, T0 - 7 * DAY + 5 * MIN);
    },
    realMs: 40_000,
  },
  {
    name: 'changed start_time_in_utc: that service is reset (warned), the others go on',
    scenario: { ratesPerHour: LOW_RATES },
    config: { services: startAll(T0 - 3 * HOUR) },
    run: async (h) => {
      await h.start();
      await h.runUntilSettled(T0 - 45 * MIN);
      await h.stop();
      const before = h.sim.requests.length;
      const delivered = h.messages('clicksBlocked').length;
      h.reconfigure({ services: { ...startAll(T0 - 3 * HOUR), clicksBlocked: { start_time_in_utc: iso(T0 - 8 * HOUR) } } });
      await h.start();
      await h.runUntil(() => Date.parse(h.cursor('clicksBlocked')?.settled_to ?? iso(0)) >= T0 - 45 * MIN && h.clock.now() > T0 + HOUR);
      assert.ok(h.warnings().some((l) => /TAP clicksBlocked: start_time_in_utc changed/.test(l.msg)), 'the source warns');
      assert.equal(h.sim.requests[before]!.window!.start, T0 - 8 * HOUR, 'clicksBlocked starts over from its new start time');
      assert.ok(h.messages('clicksBlocked').length > delivered, 'and delivers again');
    },
    settleTo: T0 - 45 * MIN,
    span: [T0 - 3 * HOUR, T0 - 45 * MIN],
    redelivered: ['clicksBlocked'],
    check: (h) => {
      const again = compareWithTruth(h, 'clicksBlocked', T0 - 8 * HOUR, T0 - 3 * HOUR);
      assert.deepEqual(again.missing, [], 'the new span of clicksBlocked is delivered');
    },
  },
  {
    name: 'one service alone uses its own endpoint and pool',
    scenario: { ratesPerHour: LOW_RATES },
    config: { services: { clicksPermitted: { start_time_in_utc: iso(T0 - 3 * HOUR) } } },
    settleTo: T0 - 45 * MIN,
    span: [T0 - 3 * HOUR, T0 - 45 * MIN],
    check: (h) => {
      assert.ok(h.sim.requests.every((r) => r.path === '/v2/siem/clicks/permitted' && r.pool === 'clicksPermitted'), 'clicks/permitted only');
      assert.equal(h.messages('clicksBlocked').length, 0);
    },
  },
  {
    name: '5xx and dropped connections: retried with backoff, nothing lost',
    scenario: {
      ratesPerHour: LOW_RATES,
      failures: [
        { kind: 'status', status: 502, times: 3 },
        { kind: 'reset', times: 2 },
        { kind: 'status', status: 400, body: 'The requested interval is still current.', times: 1 },
      ],
    },
    config: { services: startAll(T0 - 4 * HOUR) },
    settleTo: T0 - 45 * MIN,
    span: [T0 - 4 * HOUR, T0 - 45 * MIN],
    check: (h) => {
      assert.ok(h.warnings().some((l) => /HTTP 502 .*retrying in/.test(l.msg)), '502 retried');
      assert.ok(h.warnings().some((l) => /request failed .*retrying in/i.test(l.msg)), 'reset retried');
      assert.ok(h.warnings().some((l) => /still current/.test(l.msg)), '"still current" waited for');
    },
  },
];

for (const c of cases) {
  test(c.name, async () => {
    const h = await TapHarness.create({ scenario: c.scenario, config: c.config, cursors: c.cursorsIn });
    try {
      if (c.run) await c.run(h, c);
      else {
        await h.start();
        await h.runUntilSettled(c.settleTo, { realMs: c.realMs });
      }
      await h.stop();
      // Records out: every event version of the span exactly once, nothing delivered twice.
      for (const s of h.services) {
        const r = compareWithTruth(h, s, c.span[0], c.span[1], c.threatStatus);
        assert.deepEqual(r.missing, [], `${s}: ${r.missing.length} of ${r.expected} events lost`);
        if (!c.redelivered?.includes(s)) assert.deepEqual(r.duplicated, [], `${s}: delivered twice`);
        if (!c.threatStatus) {
          const fp = h.messages(s).filter((m) => /"threatStatus":"falsePositive"/i.test(m));
          assert.equal(fp.length, 0, `${s}: false positives only when opted in`);
        }
      }
      // Committed cursor out, as LevelDB has it after the stop.
      for (const s of h.services) {
        const stored = await (h.runner as unknown as { storedCursor(i: string, s: string): Promise<TapCursor | undefined> }).storedCursor(h.config.id, s);
        assert.ok(stored, `${s}: a committed cursor`);
        assert.ok(Date.parse(stored.settled_to) >= c.settleTo, `${s}: settled_to ${stored.settled_to} >= ${iso(c.settleTo)}`);
        assert.ok(Date.parse(stored.settled_to) <= Date.parse(stored.collected_to), `${s}: settled_to <= collected_to`);
        c.cursorOut?.(stored, s, h);
      }
      assert.deepEqual(invalidRequests(h.sim), [], 'every request is a valid window');
      await c.check?.(h);
    } finally {
      await h.close();
    }
  });
}
