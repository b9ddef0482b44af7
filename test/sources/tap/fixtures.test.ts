/**
 * Every event of every file in ../shared/fixtures/tap/ goes through parsing, identity and record
 * building without error, and its `message` is the event's JSON. Skipped when the folder is absent.
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { existsSync, readdirSync, readFileSync } from 'node:fs';
import path from 'node:path';
import { buildEvent } from '../../../plugin/sources/tap/event.ts';
import { MalformedAnswer, parseArrays } from '../../../plugin/sources/tap/client.ts';
import { eventTimeToMs } from '../../../plugin/util/time.ts';
import type { TapServiceName } from '../../../plugin/sources/tap/config.ts';

const DIR = path.resolve(import.meta.dirname, '../../../../shared/fixtures/tap');
const FILES: Record<string, TapServiceName> = {
  'clicks-blocked.ndjson': 'clicksBlocked',
  'clicks-permitted.ndjson': 'clicksPermitted',
  'messages-blocked.ndjson': 'messagesBlocked',
  'messages-delivered.ndjson': 'messagesDelivered',
};
const present = existsSync(DIR);

test('fixture events become records', { skip: !present && `${DIR} is absent` }, () => {
  const files = readdirSync(DIR).filter((f) => f in FILES);
  assert.equal(files.length, 4);
  const receivedAt = Date.UTC(2026, 10, 23);
  let n = 0;
  for (const f of files) {
    const service = FILES[f]!;
    const lines = readFileSync(path.join(DIR, f), 'utf8').split('\n').filter((l) => l.trim());
    const keys = new Set<string>();
    for (const line of lines) {
      const raw = JSON.parse(line);
      // Delivered as the API would: inside a response array.
      const { arrays } = parseArrays(JSON.parse(JSON.stringify({ queryEndTime: '2022-03-30T11:00:00Z', [service]: [raw] })));
      const built = buildEvent(service, arrays[service]![0], receivedAt);
      assert.ok('event' in built, `${f}: ${line.slice(0, 80)}`);
      const { event } = built;
      assert.equal(event.message, JSON.stringify(raw), `${f}: message is the event's JSON`);
      assert.deepEqual(JSON.parse(event.message), raw);
      const stamp = raw.clickTime ?? raw.messageTime;
      assert.equal(eventTimeToMs(event.time), Date.parse(stamp), `${f}: time from ${service === 'clicksBlocked' || service === 'clicksPermitted' ? 'clickTime' : 'messageTime'}`);
      assert.match(event.key!, /^[A-Za-z0-9_-]{43}$/);
      keys.add(event.key!);
      n++;
    }
    assert.equal(keys.size, lines.length, `${f}: distinct events have distinct keys`);
  }
  assert.equal(n, 23);
});

test('fixture empty responses have no events', { skip: !present && `${DIR} is absent` }, () => {
  const lines = readFileSync(path.join(DIR, 'other-responses.ndjson'), 'utf8').split('\n').filter((l) => l.trim());
  for (const line of lines) {
    const { arrays, queryEndTime } = parseArrays(JSON.parse(line));
    assert.equal(queryEndTime, '2024-10-11T14:34:53Z');
    for (const a of Object.values(arrays)) assert.equal(a!.length, 0);
  }
});

test('lenient parsing: odd elements and shapes', () => {
  const at = Date.UTC(2026, 10, 23, 12);
  const noTime = buildEvent('messagesDelivered', { GUID: 'g', messageTime: null, recipient: 'r@x' }, at);
  assert.ok('event' in noTime);
  assert.equal(eventTimeToMs(noTime.event.time), at, 'receipt time when messageTime is null');
  const badTime = buildEvent('clicksBlocked', { id: 'c', clickTime: 'yesterday' }, at);
  assert.ok('event' in badTime && eventTimeToMs(badTime.event.time) === at);
  for (const odd of [null, 'text', 42, [1, 2]]) {
    const r = buildEvent('clicksPermitted', odd, at);
    assert.ok('rejected' in r, `${JSON.stringify(odd)} is rejected`);
    assert.equal(r.rejected.raw, JSON.stringify(odd));
  }
  // Missing and malformed array keys (elastic/integrations #9965); unknown keys are ignored.
  const { arrays } = parseArrays({ queryEndTime: '2026-11-23T12:00:00Z', 'messagesDelivered:': [{ a: 1 }], other: [1], note: 'x' });
  assert.deepEqual(arrays, { messagesDelivered: [{ a: 1 }] });
});

test('an answer that is not the documented object of arrays is refused, never read as empty', () => {
  const end = '2026-11-23T12:00:00Z';
  const cases: Array<[unknown, RegExp]> = [
    [[1, 2], /the body is an array, not an object/],
    [null, /the body is null, not an object/],
    ['ok', /the body is a string, not an object/],
    [{ queryEndTime: end, clicksBlocked: null }, /"clicksBlocked" is null, not an array/],
    [{ queryEndTime: end, clicksBlocked: { id: 'c' } }, /"clicksBlocked" is an object, not an array/],
    [{ queryEndTime: end, 'messagesDelivered:': '[]' }, /"messagesDelivered:" is a string, not an array/],
    [{ clicksBlocked: [] }, /no queryEndTime/],
    [{ queryEndTime: 'x', clicksBlocked: [] }, /queryEndTime is "x", not a timestamp/],
  ];
  for (const [body, re] of cases) assert.throws(() => parseArrays(body), (e: unknown) => e instanceof MalformedAnswer && re.test(e.message), JSON.stringify(body));
});
