/**
 * The state a feed's Lease carries: request times round-trip exactly and compactly, and
 * an annotation that cannot be read is reported as a problem, never half-trusted.
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import {
  STATE_ANNOTATION,
  decodeState,
  decodeTimes,
  encodeState,
  encodeTimes,
  type CarriedState,
} from '../../plugin/coordination/carried-state.ts';

const NOW = Date.UTC(2026, 10, 23, 12, 0, 0, 0);
const DAY = 24 * 3_600_000;

/** A deterministic pseudo-random sequence (no flakiness from Math.random). */
function lcg(seed: number): () => number {
  let s = seed >>> 0;
  return () => {
    s = (Math.imul(s, 1_664_525) + 1_013_904_223) >>> 0;
    return s / 2 ** 32;
  };
}

test('encodeTimes/decodeTimes round-trip to the millisecond, sorted, repeats kept', () => {
  const times = [NOW - 1, NOW - DAY + 7, NOW - 3_600_000 + 999, NOW - 1, NOW - 42_123];
  const text = encodeTimes(times);
  assert.deepEqual(decodeTimes(text), [...times].sort((a, b) => a - b));
  // Times one millisecond apart stay apart; the same time twice stays twice (two requests).
  assert.deepEqual(decodeTimes(encodeTimes([NOW + 1, NOW, NOW])), [NOW, NOW, NOW + 1]);
  // The input is not reordered in place.
  assert.deepEqual(times[0], NOW - 1);
  assert.deepEqual(times[1], NOW - DAY + 7);
});

test('an empty list encodes to the empty string and decodes back to an empty list', () => {
  assert.equal(encodeTimes([]), '');
  assert.deepEqual(decodeTimes(''), []);
});

test('1800 requests within 24 h round-trip exactly and encode below 12 KB', () => {
  const rnd = lcg(6);
  const times = Array.from({ length: 1_800 }, () => NOW - Math.floor(rnd() * DAY));
  const text = encodeTimes(times);
  assert.ok(Buffer.byteLength(text) < 12 * 1024, `encoded ${Buffer.byteLength(text)} bytes`);
  assert.deepEqual(decodeTimes(text), [...times].sort((a, b) => a - b));
  // Evenly spread, as a poller spends its budget: well below too.
  const even = Array.from({ length: 1_800 }, (_, i) => NOW - DAY + i * 48_000 + (i % 997));
  const evenText = encodeTimes(even);
  assert.ok(Buffer.byteLength(evenText) < 12 * 1024, `encoded ${Buffer.byteLength(evenText)} bytes`);
  assert.deepEqual(decodeTimes(evenText), even);
});

test('decodeTimes rejects text that is not base-36 deltas', () => {
  for (const garbage of ['abc,-1', '1,,2', ',', '1,', 'ZZ', '1.5', '12 34', '1;2', 'é']) {
    assert.equal(decodeTimes(garbage), undefined, JSON.stringify(garbage));
  }
});

function annotations(text: string): Record<string, string> {
  return { 'other/annotation': 'kept apart', [STATE_ANNOTATION]: text };
}

test('encodeState/decodeState round-trip cursors, start times, request times per pool and the released flag', () => {
  const state: CarriedState = {
    v: 1,
    at: NOW,
    cursors: { clicksBlocked: { interval: '2026-11-23T11:00:00Z/2026-11-23T11:59:00Z', n: 3 }, maillog: 'x' },
    start_times: { clicksBlocked: null, maillog: '2026-11-01T00:00:00Z' },
    requests: { shared: [NOW - 5, NOW - DAY + 1, NOW - 5], clicksPermitted: [], other: [NOW] },
    released: true,
  };
  const text = encodeState(state);
  // Request times travel compactly, not as JSON number arrays.
  const raw = JSON.parse(text) as { requests: Record<string, unknown> };
  assert.equal(typeof raw.requests.shared, 'string');
  const back = decodeState(annotations(text));
  assert.equal(back.problem, undefined);
  assert.deepEqual(back.state, {
    ...state,
    requests: { shared: [NOW - DAY + 1, NOW - 5, NOW - 5], clicksPermitted: [], other: [NOW] },
  });
});

test('a state without requests and not released round-trips without those fields', () => {
  const state: CarriedState = { v: 1, at: NOW, cursors: { maillog: { ts: 1 } }, start_times: { maillog: null } };
  const back = decodeState(annotations(encodeState(state)));
  assert.deepEqual(back, { state });
  assert.equal('requests' in back.state!, false);
  assert.equal('released' in back.state!, false);
});

test('released is kept only when it is exactly true', () => {
  const base = { v: 1, at: NOW, cursors: {}, start_times: {} };
  assert.equal(decodeState(annotations(JSON.stringify({ ...base, released: false }))).state?.released, undefined);
  assert.equal(decodeState(annotations(JSON.stringify({ ...base, released: 'true' }))).state?.released, undefined);
  assert.equal(decodeState(annotations(JSON.stringify({ ...base, released: true }))).state?.released, true);
});

test('a missing annotation is no state and no problem', () => {
  assert.deepEqual(decodeState({}), {});
  assert.deepEqual(decodeState({ 'other/annotation': '{"v":1}' }), {});
});

test('an unreadable annotation is a problem and yields no state', () => {
  const cases: Array<[string, string, RegExp]> = [
    ['not JSON', '{"v":1,', /not JSON/],
    ['JSON null', 'null', /unknown layout/],
    ['a JSON number', '5', /unknown layout/],
    ['wrong v', JSON.stringify({ v: 2, at: NOW, cursors: {}, start_times: {} }), /unknown layout/],
    ['no v', JSON.stringify({ at: NOW, cursors: {}, start_times: {} }), /unknown layout/],
    ['missing cursors', JSON.stringify({ v: 1, at: NOW, start_times: {} }), /lacks cursors/],
    ['null cursors', JSON.stringify({ v: 1, at: NOW, cursors: null, start_times: {} }), /lacks cursors/],
    ['missing at', JSON.stringify({ v: 1, cursors: {}, start_times: {} }), /lacks cursors or at/],
    ['garbled request times', JSON.stringify({ v: 1, at: NOW, cursors: {}, start_times: {}, requests: { shared: '1,-2' } }), /pool shared/],
    ['request times not a string', JSON.stringify({ v: 1, at: NOW, cursors: {}, start_times: {}, requests: { shared: [1, 2] } }), /pool shared/],
  ];
  for (const [what, text, problem] of cases) {
    const r = decodeState(annotations(text));
    assert.equal(r.state, undefined, what);
    assert.match(r.problem ?? '', problem, what);
    assert.match(r.problem ?? '', new RegExp(STATE_ANNOTATION), `${what}: the problem names the annotation`);
  }
});

test(
  'requests that are null (not an object) are a problem, not an exception',
  () => {
    const text = JSON.stringify({ v: 1, at: NOW, cursors: {}, start_times: {}, requests: null });
    let r: ReturnType<typeof decodeState> | undefined;
    assert.doesNotThrow(() => {
      r = decodeState(annotations(text));
    });
    assert.equal(r?.state, undefined);
    assert.match(r?.problem ?? '', /request/);
  },
);
