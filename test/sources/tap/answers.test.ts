/**
 * A bad answer is never an empty one, and one bad event never stops a feed. Through the source, on
 * the simulator: a 200 body that is not the documented object of arrays is an error for its window
 * (retried with backoff, logged with a bounded excerpt, health degraded, counted), never an empty
 * window and never committed; a bad element of a good answer is dead-lettered with its reason and
 * the rest delivered; events nested deeper than the limit, or timed outside 1970..2106, do not
 * stop the feed.
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { readFileSync } from 'node:fs';
import path from 'node:path';
import { NO_QUIRKS } from '../../../plugin/simulator/tap/index.ts';
import { buildEvent } from '../../../plugin/sources/tap/event.ts';
import { canonicalJson } from '../../../plugin/sources/tap/identity.ts';
import type { TapServiceName } from '../../../plugin/sources/tap/config.ts';
import { eventTimeToMs } from '../../../plugin/util/time.ts';
import { HOUR, MIN, T0, TapHarness, compareWithTruth } from './harness.ts';

const iso = (ms: number) => new Date(ms).toISOString();
const apiTime = (ms: number) => iso(ms).replace(/\.\d{3}Z$/, 'Z');
const ALL: TapServiceName[] = ['clicksBlocked', 'clicksPermitted', 'messagesBlocked', 'messagesDelivered'];
const RATES = { clicksBlocked: 4, clicksPermitted: 4, messagesBlocked: 4, messagesDelivered: 4 };
const FROM = T0 - 3 * HOUR;
const SETTLED = T0 - 45 * MIN;
/** The first window the source asks for: the first hour from its start time. */
const FIRST_END = apiTime(FROM + HOUR);
/** Containers an event may nest (the event object itself is the first). */
const MAX_EVENT_DEPTH = 512;

async function harness(): Promise<TapHarness> {
  return TapHarness.create({
    mode: 'direct',
    scenario: { ratesPerHour: RATES, quirks: NO_QUIRKS },
    config: { services: Object.fromEntries(ALL.map((s) => [s, { start_time_in_utc: iso(FROM) }])) },
  });
}

/** `depth` nested containers around `leaf`, built without recursion (text and value). */
function nested(depth: number, leaf = '"bottom"'): string {
  return '{"n":'.repeat(depth - 1) + `[${leaf}]` + '}'.repeat(depth - 1);
}

const click = (id: string, clickTime: string) => ({
  url: 'https://www.example.com/x',
  classification: 'phish',
  clickTime,
  threatTime: '2026-11-23T08:00:00.000Z',
  id,
  GUID: `guid-${id}`,
  recipient: 'someone@example.com',
  threatStatus: 'active',
});

/** Every service delivered the simulator's truth once, nothing missing. */
function assertAllDelivered(h: TapHarness, from = FROM): void {
  for (const s of ALL) {
    const r = compareWithTruth(h, s, from, SETTLED);
    assert.ok(r.expected > 0, `${s}: the scenario serves events`);
    assert.deepEqual(r.missing, [], `${s}: nothing lost`);
    assert.deepEqual(r.duplicated, [], `${s}: nothing twice`);
  }
}

const WRONG_SHAPES: Array<[string, string]> = [
  ['clicksBlocked holding an object', JSON.stringify({ queryEndTime: FIRST_END, clicksBlocked: click('c1', iso(FROM)), messagesDelivered: [] })],
  ['clicksBlocked holding a string', JSON.stringify({ queryEndTime: FIRST_END, clicksBlocked: '[]', messagesDelivered: [] })],
  ['messagesDelivered holding null', JSON.stringify({ queryEndTime: FIRST_END, clicksBlocked: [], messagesDelivered: null })],
  ['a malformed key holding a number', JSON.stringify({ queryEndTime: FIRST_END, 'messagesDelivered:': 3 })],
  ['a top-level null', 'null'],
  ['a top-level array', JSON.stringify([{ queryEndTime: FIRST_END, clicksBlocked: [] }])],
  ['a top-level number', '42'],
  ['a top-level string', '"ok"'],
  ['an object without queryEndTime', JSON.stringify({ clicksBlocked: [], messagesDelivered: [] })],
  ['queryEndTime that is not a time', JSON.stringify({ queryEndTime: 1764000000, clicksBlocked: [] })],
  ['an empty 200 body', ''],
  ['a truncated body', JSON.stringify({ queryEndTime: FIRST_END, clicksBlocked: [click('c2', iso(FROM))] }).slice(0, 60)],
];

test('an answer of the wrong shape is an error for its window: retried, reported, never an empty window', async (t) => {
  for (const [name, body] of WRONG_SHAPES) {
    await t.test(name, async () => {
      const h = await harness();
      try {
        h.sim.inject({ kind: 'status', status: 200, body, path: '/v2/siem/all' });
        await h.start();
        await h.runUntilSettled(SETTLED);

        // The window looked ahead (asked for once the bad answer's headers were in) may come
        // between: it is dropped unread, and the bad window is asked again next.
        const [bad, ...later] = h.sim.requests;
        assert.equal(bad!.status, 200);
        const at = later.findIndex((r) => JSON.stringify(r.query['interval']) === JSON.stringify(bad!.query['interval']));
        assert.ok(at === 0 || at === 1, `the same window is asked again, at most the look-ahead between (at ${at})`);
        const retry = later[at];
        assert.ok(retry!.status === 200 && retry!.events > 0, 'and its events served');
        assertAllDelivered(h);

        const warn = h.warnings().find((l) => /not the documented answer/.test(l.msg));
        assert.ok(warn, `a warning names the bad answer: ${JSON.stringify(h.warnings().map((l) => l.msg))}`);
        assert.match(warn.msg, /retrying in \d+ s/);
        assert.ok(warn.msg.length < 1000, 'with a bounded excerpt');
        assert.ok(!warn.msg.includes(h.sim.credentials.password));
        for (const s of ALL) {
          assert.ok(
            h.state.healthLog.some((e) => e.service === s && e.status === 'degraded' && /error 300/.test(e.reason ?? '')),
            `${s} degraded while the window is retried`,
          );
          assert.equal(h.state.health.get(s)?.status, 'ok', `${s} ok again`);
        }
        assert.deepEqual(
          h.state.metrics.values('tap_malformed_answers_total').map((v) => [v.labels['pool'], v.value]),
          [['shared', 1]],
        );
      } finally {
        await h.close();
      }
    });
  }
});

test('a huge wrong body is reported with a bounded excerpt', async () => {
  const h = await harness();
  try {
    h.sim.inject({ kind: 'status', status: 200, body: JSON.stringify({ queryEndTime: FIRST_END, clicksBlocked: 'x'.repeat(2_000_000) }), path: '/v2/siem/all' });
    await h.start();
    await h.runUntilSettled(SETTLED);
    assertAllDelivered(h);
    const warn = h.warnings().find((l) => /not the documented answer/.test(l.msg));
    assert.ok(warn && warn.msg.length < 1000, 'bounded');
    assert.ok(JSON.stringify(h.logs).length < 200_000, 'no log line carries the body');
  } finally {
    await h.close();
  }
});

test('one bad element is dead-lettered with its reason; the rest of its window is delivered and the feed goes on', async () => {
  const h = await harness();
  try {
    const good = [click('good-1', iso(FROM + MIN)), click('good-2', iso(FROM + 2 * MIN))];
    const deepText = nested(4000);
    const body =
      `{"queryEndTime":"${FIRST_END}","clicksBlocked":[${JSON.stringify(good[0])},42,null,"text",[1,2],${deepText},${JSON.stringify(good[1])}],` +
      `"messagesDelivered":[]}`;
    h.sim.inject({ kind: 'status', status: 200, body, path: '/v2/siem/all' });
    await h.start();
    await h.runUntilSettled(SETTLED);

    assert.equal(h.runner.failure(), undefined, 'the source did not fail');
    const delivered = h.messages('clicksBlocked');
    for (const g of good) assert.equal(delivered.filter((m) => m === JSON.stringify(g)).length, 1, `${g.id} delivered once`);
    const rejected = h.state.rejectedInputs;
    assert.deepEqual(rejected.map((r) => r.service), Array(5).fill('clicksBlocked'));
    assert.deepEqual(rejected.map((r) => r.raw), ['42', 'null', '"text"', '[1,2]', deepText], 'each kept whole, as it came');
    assert.match(rejected[0]!.reason, /clicksBlocked: array element is number, not an event object/);
    assert.match(rejected[4]!.reason, new RegExp(`clicksBlocked: event nested deeper than ${MAX_EVENT_DEPTH} levels`));
    // The window was answered (its good events came), so the simulator's events after it all arrive.
    assertAllDelivered(h, FROM + HOUR);
  } finally {
    await h.close();
  }
});

test('an event nested 10,000 levels deep goes to the dead-letter file whole and the feed goes on (real pipeline)', async () => {
  const h = await TapHarness.create({
    scenario: { ratesPerHour: RATES, quirks: NO_QUIRKS },
    config: { services: Object.fromEntries(ALL.map((s) => [s, { start_time_in_utc: iso(FROM) }])) },
  });
  try {
    const deepText = `{"id":"deep","clickTime":"${iso(FROM)}","n":${nested(10_000)}}`;
    const good = click('beside-it', iso(FROM + MIN));
    h.sim.inject({ kind: 'status', status: 200, body: `{"queryEndTime":"${FIRST_END}","clicksPermitted":[${deepText},${JSON.stringify(good)}]}`, path: '/v2/siem/all' });
    await h.start();
    await h.runUntilSettled(SETTLED);
    assert.deepEqual(h.messages('clicksPermitted').filter((m) => m === JSON.stringify(good)).length, 1, 'its neighbour delivered');
    const dir = (h.runner as unknown as { dir: string }).dir;
    const letters = readFileSync(path.join(dir, 'dead-letter.jsonl'), 'utf8').split('\n').filter(Boolean).map((l) => JSON.parse(l) as Record<string, unknown>);
    assert.equal(letters.length, 1);
    assert.equal(letters[0]!['service'], 'clicksPermitted');
    assert.equal(letters[0]!['reason'], 'clicksPermitted: event nested deeper than 512 levels');
    assert.equal(letters[0]!['raw'], deepText, 'whole, as it came');
    assertAllDelivered(h, FROM + HOUR);
  } finally {
    await h.close();
  }
});

test('event nesting: up to the limit is an event, one level more is rejected, 100,000 levels do not overflow', () => {
  const at = T0;
  const within = JSON.parse(`{"id":"x","clickTime":"${iso(at)}","deep":${nested(MAX_EVENT_DEPTH - 1)}}`);
  const ok = buildEvent('clicksBlocked', within, at);
  assert.ok('event' in ok, 'exactly the limit is accepted');
  assert.equal(ok.event.message, JSON.stringify(within));

  const beyondText = `{"id":"x","deep":${nested(MAX_EVENT_DEPTH)}}`;
  const beyond = buildEvent('clicksBlocked', JSON.parse(beyondText), at);
  assert.ok('rejected' in beyond, 'one level more is rejected');
  assert.equal(beyond.rejected.raw, beyondText);

  const hugeText = `{"id":"x","deep":${nested(100_000)}}`;
  const huge = buildEvent('messagesBlocked', JSON.parse(hugeText), at);
  assert.ok('rejected' in huge);
  assert.equal(huge.rejected.raw, hugeText, 'the dead letter holds the event whole');
  assert.match(huge.rejected.reason, /messagesBlocked: event nested deeper than 512 levels/);

  assert.throws(() => canonicalJson(JSON.parse(hugeText)), /nested deeper than 512 levels/);
});

test('an event timed before 1970 or after 2106-02-07 is yielded with its time and the feed goes on', async () => {
  const h = await harness();
  try {
    const times = ['1969-07-20T20:17:40.000Z', '1900-01-01T00:00:00Z', '2106-02-07T06:28:16.000Z', '9999-12-31T23:59:59.999Z'];
    const odd = times.map((t, i) => click(`odd-${i}`, t));
    const messages = [{ GUID: 'g-odd', id: 'm-odd', messageTime: '1601-01-01T00:00:00.000Z', recipient: ['a@example.com'] }];
    h.sim.inject({ kind: 'status', status: 200, body: JSON.stringify({ queryEndTime: FIRST_END, clicksBlocked: odd, messagesDelivered: messages }), path: '/v2/siem/all' });
    await h.start();
    await h.runUntilSettled(SETTLED);

    assert.equal(h.runner.failure(), undefined, 'the source did not fail');
    for (const [i, e] of odd.entries()) {
      const d = h.state.delivered.filter((x) => x.message === JSON.stringify(e));
      assert.equal(d.length, 1, `${times[i]} delivered once`);
      assert.equal(eventTimeToMs(d[0]!.time), Date.parse(times[i]!), `${times[i]}: its own time, for the encoder to clamp`);
    }
    const m = h.state.delivered.find((x) => x.message === JSON.stringify(messages[0]));
    assert.ok(m && eventTimeToMs(m.time) === Date.parse('1601-01-01T00:00:00.000Z'));
    assertAllDelivered(h, FROM + HOUR);
    assert.ok(
      ALL.every((s) => Date.parse(h.cursor(s)!.settled_to) >= SETTLED),
      'the cursor moved on by the windows, whatever the events said',
    );
  } finally {
    await h.close();
  }
});
