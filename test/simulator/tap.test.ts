import { test, after, before } from 'node:test';
import assert from 'node:assert/strict';
import { FakeClock } from '../helpers/fake-clock.ts';
import { startTapSimulator, NO_QUIRKS, TAP_SIM_TEXT, parseInterval, type TapSimulator } from '../../plugin/simulator/tap/index.ts';

const T = Date.UTC(2026, 10, 23, 12, 0, 0);
const M = 60_000;
const H = 60 * M;
const iso = (ms: number) => new Date(ms).toISOString().replace('.000Z', 'Z');
const clock = new FakeClock(T);
let sim: TapSimulator;

before(async () => {
  sim = await startTapSimulator({ clock, seed: 7 });
});
after(async () => sim.close());

async function get(s: TapSimulator, path: string, query: Record<string, string | string[]>, auth = s.credentials) {
  const q = new URLSearchParams();
  for (const [k, v] of Object.entries(query)) for (const x of [v].flat()) q.append(k, x);
  const res = await fetch(`${s.url}${path}?${q}`, {
    headers: { authorization: 'Basic ' + Buffer.from(`${auth.username}:${auth.password}`).toString('base64') },
  });
  const text = await res.text();
  return { status: res.status, text, json: () => JSON.parse(text) as Record<string, any> };
}
const win = (start: number, end: number) => ({ format: 'json', interval: `${iso(start)}/${iso(end)}` });

test('window rules and the API\'s 400 texts', async () => {
  const cases: Array<[string, Record<string, string>, number, string]> = [
    ['one hour', win(T - 2 * H, T - H), 200, ''],
    ['30 s', win(T - H, T - H + 30_000), 0, ''],
    ['29 s', win(T - H, T - H + 29_000), 400, TAP_SIM_TEXT.tooShort],
    ['61 min', win(T - 2 * H, T - H + M), 400, TAP_SIM_TEXT.tooLong],
    ['older than 7 days', win(T - 7 * 24 * H - M, T - 7 * 24 * H + 10 * M), 400, TAP_SIM_TEXT.tooFarBack],
    ['end in the future', win(T - 10 * M, T + M), 400, TAP_SIM_TEXT.stillCurrent],
    ['end before start', win(T - H, T - 2 * H), 400, ''],
    ['no time selector', { format: 'json' }, 400, TAP_SIM_TEXT.badRequest],
    ['duration form', { format: 'json', interval: `PT30M/${iso(T - H)}` }, 200, ''],
    ['offset form', { format: 'json', interval: `2026-11-23T04:00:00-0700/PT30M` }, 200, ''],
    ['sinceSeconds', { format: 'json', sinceSeconds: '600' }, 200, ''],
  ];
  for (const [name, q, status, text] of cases) {
    const r = await get(sim, '/v2/siem/clicks/blocked', q);
    if (status === 0) assert.ok(r.status === 200 || r.status === 204, name);
    else assert.equal(r.status, status, `${name}: ${r.text}`);
    if (status === 400) assert.equal(r.text, text, name);
  }
  assert.equal(sim.requests.at(-1)!.selector, 'sinceSeconds');
  assert.deepEqual(parseInterval('2026-11-23T04:00:00-07:00/PT30M'), { start: Date.UTC(2026, 10, 23, 11), end: Date.UTC(2026, 10, 23, 11, 30) });
});

test('auth, endpoints and formats', async () => {
  assert.equal((await get(sim, '/v2/siem/all', win(T - 2 * H, T - H), { username: 'x', password: 'y' })).status, 401);
  assert.equal((await get(sim, '/v2/siem/nothing', win(T - 2 * H, T - H))).status, 404);
  const all = (await get(sim, '/v2/siem/all', win(T - 2 * H, T - H))).json();
  for (const k of ['clicksBlocked', 'clicksPermitted', 'messagesBlocked', 'messagesDelivered']) assert.ok(Array.isArray(all[k]), k);
  assert.equal(all.queryEndTime, iso(T - H));
  const issues = (await get(sim, '/v2/siem/issues', win(T - 2 * H, T - H))).json();
  assert.deepEqual(Object.keys(issues).sort(), ['clicksPermitted', 'messagesDelivered', 'queryEndTime']);
  assert.deepEqual(issues.clicksPermitted.length, all.clicksPermitted.length);
  const syslog = await get(sim, '/v2/siem/all', { interval: win(T - 2 * H, T - H).interval });
  assert.throws(() => JSON.parse(syslog.text), 'syslog is the default format');
});

test('deterministic: the same window twice gives the same events; another seed gives others', async () => {
  const w = win(T - 30 * H, T - 29 * H);
  const a = (await get(sim, '/v2/siem/messages/delivered', w)).json().messagesDelivered.map((e: any) => JSON.stringify(e)).sort();
  const b = (await get(sim, '/v2/siem/messages/delivered', w)).json().messagesDelivered.map((e: any) => JSON.stringify(e)).sort();
  assert.deepEqual(a, b);
  const other = await startTapSimulator({ clock, seed: 8 });
  try {
    const c = (await get(other, '/v2/siem/messages/delivered', w)).json().messagesDelivered.map((e: any) => JSON.stringify(e)).sort();
    assert.notDeepEqual(a, c);
  } finally {
    await other.close();
  }
});

test('event shapes follow the fixtures, quirks included', async () => {
  const evs = sim.events('messagesDelivered', T - 48 * H, T - 24 * H).map((e) => e.body);
  const byGuid = new Map<string, any[]>();
  for (const e of evs) byGuid.set(e['GUID'] as string, [...(byGuid.get(e['GUID'] as string) ?? []), e]);
  const multi = [...byGuid.values()].filter((g) => new Set(g.map((e) => e.recipient[0])).size > 1);
  assert.ok(multi.length > 0, 'multi-recipient messages share a GUID');
  assert.ok(multi.some((g) => g.every((e) => e.id === undefined)), 'some of them carry no id');
  assert.ok(multi.some((g) => g.every((e) => typeof e.id === 'string') && new Set(g.map((e) => e.id)).size === g.length), 'others an id per recipient');
  assert.ok(evs.some((e) => e['subject'] === null && e['messageParts'] === null && e['QID'] === null), 'null-heavy events');
  assert.ok(evs.some((e) => typeof e['fromAddress'] === 'string'), 'fromAddress as a string');
  assert.ok(evs.some((e) => e['completelyRewritten'] === 'true' || e['completelyRewritten'] === 'na'), 'completelyRewritten as a string');
  for (const e of evs.slice(0, 20)) {
    for (const k of ['GUID', 'messageTime', 'threatsInfoMap', 'recipient', 'spamScore', 'cluster']) assert.ok(k in e, k);
  }
  const clicks = sim.events('clicksPermitted', T - 48 * H, T - 24 * H).filter((e) => !e.repeat).map((e) => e.body);
  const guids = new Map<string, number>();
  for (const c of clicks) guids.set(c['GUID'] as string, (guids.get(c['GUID'] as string) ?? 0) + 1);
  assert.ok([...guids.values()].some((n) => n > 1), 'clicks share a GUID');
  assert.equal(new Set(clicks.map((c) => c['id'])).size, clicks.length, 'every click has its own id');
  assert.ok(clicks.some((c) => Array.isArray(c['recipient'])), 'a click recipient as an array');
});

test('late-indexed events show only in a later query of the same window', async () => {
  const c2 = new FakeClock(T);
  const s = await startTapSimulator({ clock: c2, seed: 3, ratesPerHour: { messagesBlocked: 600 }, quirks: { ...NO_QUIRKS, lateIndexed: 0.3 } });
  try {
    const w = win(T - 10 * M, T - 5 * M);
    const late = s.events('messagesBlocked', T - 10 * M, T - 5 * M).filter((e) => e.visibleAt > T);
    assert.ok(late.length > 0, 'some events of the window are indexed late');
    const first = (await get(s, '/v2/siem/messages/blocked', w)).json().messagesBlocked ?? [];
    await c2.advance(40 * M);
    const second = (await get(s, '/v2/siem/messages/blocked', w)).json().messagesBlocked ?? [];
    const keys1 = new Set(first.map((e: any) => s.logicalKey('messagesBlocked', e)));
    const keys2 = new Set(second.map((e: any) => s.logicalKey('messagesBlocked', e)));
    for (const e of late) {
      assert.ok(!keys1.has(e.key), 'not in the first query');
      assert.ok(keys2.has(e.key), 'in the later one');
    }
    assert.equal(keys2.size, keys1.size + late.length);
  } finally {
    await s.close();
  }
});

test('repeats: unchanged ones keep their identity, status changes get a new one', async () => {
  const evs = sim.events('clicksBlocked', T - 72 * H, T - 24 * H);
  const originals = new Set(evs.filter((e) => !e.repeat).map((e) => e.key));
  const exact = evs.filter((e) => e.repeat === 'exact');
  const changed = evs.filter((e) => e.repeat === 'status');
  assert.ok(exact.length > 0 && changed.length > 0, 'both kinds of repeat occur');
  assert.ok(exact.some((e) => originals.has(e.key)), 'an exact repeat of an event in the span');
  assert.ok(changed.every((e) => !originals.has(e.key)), 'a status change is a new version');
  assert.ok(changed.some((e) => e.statuses[0] === 'falsepositive'), 'some become false positives');
  const fp = sim.truth('clicksBlocked', T - 72 * H, T - 24 * H, { threatStatus: ['active', 'cleared', 'falsePositive'] });
  const def = sim.truth('clicksBlocked', T - 72 * H, T - 24 * H);
  assert.ok(fp.size > def.size, 'false positives only when asked for');
});

test('empty answers come in three shapes; malformed keys when asked', async () => {
  const c2 = new FakeClock(T);
  const s = await startTapSimulator({ clock: c2, ratesPerHour: { clicksBlocked: 0, clicksPermitted: 0, messagesBlocked: 0, messagesDelivered: 0 }, quirks: { exactRepeats: 0, statusChanges: 0 } });
  try {
    const kinds = new Set<string>();
    for (let i = 0; i < 30; i++) {
      const r = await get(s, '/v2/siem/all', win(T - 2 * H + i * M, T - 2 * H + (i + 1) * M));
      kinds.add(r.status === 204 ? '204' : Object.keys(r.json()).length === 1 ? 'missing' : '200');
    }
    assert.deepEqual([...kinds].sort(), ['200', '204', 'missing']);
    s.setRate('messagesDelivered', 60);
    s.setQuirks({ malformedKeys: 1 });
    const r = (await get(s, '/v2/siem/all', win(T - 2 * H, T - H))).json();
    assert.ok(Array.isArray(r['messagesDelivered:']) && r['messagesDelivered:'].length > 0);
  } finally {
    await s.close();
  }
});

test('the 24 h budget per pool and credential: 429 without Retry-After, then recovery', async () => {
  const c2 = new FakeClock(T);
  const s = await startTapSimulator({ clock: c2, budgetPerPool: 3 });
  try {
    const w = win(T - 2 * H, T - H);
    for (let i = 0; i < 3; i++) assert.notEqual((await get(s, '/v2/siem/all', w)).status, 429);
    const res = await fetch(`${s.url}/v2/siem/messages/blocked?format=json&interval=${encodeURIComponent(w.interval)}`, {
      headers: { authorization: 'Basic ' + Buffer.from(`${s.credentials.username}:${s.credentials.password}`).toString('base64') },
    });
    assert.equal(res.status, 429, 'all shared-pool endpoints count together');
    assert.equal(res.headers.get('retry-after'), null);
    assert.equal(await res.text(), TAP_SIM_TEXT.throttled);
    assert.notEqual((await get(s, '/v2/siem/clicks/permitted', w)).status, 429, 'clicks/permitted has its own pool');
    assert.equal(s.budgetUsed('shared'), 3);
    await c2.advance(24 * H + 1000);
    assert.notEqual((await get(s, '/v2/siem/all', win(T + 20 * H, T + 21 * H))).status, 429, 'free again 24 h after the oldest');
  } finally {
    await s.close();
  }
});

test('injected failures apply to the next matching requests', async () => {
  sim.inject({ kind: 'status', status: 500, times: 2, path: '/v2/siem/all' });
  assert.equal((await get(sim, '/v2/siem/clicks/blocked', win(T - 2 * H, T - H))).status === 500, false);
  assert.equal((await get(sim, '/v2/siem/all', win(T - 2 * H, T - H))).status, 500);
  assert.equal((await get(sim, '/v2/siem/all', win(T - 2 * H, T - H))).status, 500);
  assert.equal((await get(sim, '/v2/siem/all', win(T - 2 * H, T - H))).status, 200);
  sim.inject({ kind: 'reset' });
  await assert.rejects(get(sim, '/v2/siem/all', win(T - 2 * H, T - H)));
});
