/**
 * The PoD simulator behaves as the log stream is documented to (proofpoint-pod.md §0–1), so the
 * source tests that rely on it test the source, not the simulator's shortcuts.
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { WebSocket } from 'ws';
import { startPodSimulator, CONFLICT_BODY, AUTH_FAILED_BODY, type PodSimulator, type PodStreamType } from '../../plugin/simulator/pod/index.ts';
import { parseTimestamp } from '../../plugin/util/time.ts';
import { parseFrame } from '../../plugin/sources/pod/identity.ts';
import { FakeClock } from '../helpers/fake-clock.ts';
import { TEST_SECRETS } from '../helpers/secrets.ts';

const KEY = TEST_SECRETS.podApiKey;
const CID = 'pphosted_test_hosted';
const HOUR = 3600_000;

interface Outcome {
  status: number;
  body?: string;
  frames: string[];
  closeCode?: number;
  ws?: WebSocket;
}

/** Connects, collects frames until `stopAfter` frames or the close, and reports the outcome. */
function connect(sim: PodSimulator, query: Record<string, string>, o: { token?: string; stopAfter?: number; keepOpen?: boolean; path?: string } = {}): Promise<Outcome> {
  const url = new URL(`${sim.url}${o.path ?? '/v1/stream'}`);
  for (const [k, v] of Object.entries(query)) url.searchParams.set(k, v);
  return new Promise((resolve) => {
    const ws = new WebSocket(url, { headers: { Authorization: `Bearer ${o.token ?? KEY}` } });
    const frames: string[] = [];
    ws.on('unexpected-response', (req, res) => {
      let body = '';
      res.setEncoding('latin1');
      res.on('data', (c: string) => (body += c));
      res.on('end', () => {
        req.destroy();
        resolve({ status: res.statusCode!, body, frames });
      });
    });
    ws.on('error', () => {});
    ws.on('message', (d) => {
      frames.push(d.toString());
      if (o.stopAfter !== undefined && frames.length === o.stopAfter) {
        if (o.keepOpen) resolve({ status: 101, frames, ws });
        else ws.close();
      }
    });
    ws.on('close', (code) => resolve({ status: 101, frames, closeCode: code }));
  });
}

async function sim(opts: Parameters<typeof startPodSimulator>[0] = {}): Promise<PodSimulator> {
  return startPodSimulator({ apiKey: KEY, clusterId: CID, ...opts });
}

test('refuses like the real service: 401 token or cluster, 400 query, 404 path, with the server text', async (t) => {
  const s = await sim();
  t.after(() => s.close());
  const bad = await connect(s, { cid: CID, type: 'message' }, { token: 'wrong-token' });
  assert.equal(bad.status, 401);
  assert.equal(bad.body, AUTH_FAILED_BODY);
  assert.equal((await connect(s, { cid: 'other', type: 'message' })).status, 401);
  const badType = await connect(s, { cid: CID, type: 'clicks' });
  assert.equal(badType.status, 400);
  assert.match(badType.body!, /Invalid type/);
  assert.equal((await connect(s, { cid: CID })).status, 400);
  assert.equal((await connect(s, { cid: CID, type: 'maillog', sinceTime: 'yesterday' })).status, 400);
  assert.equal((await connect(s, { cid: CID, type: 'maillog' }, { path: '/v2/stream' })).status, 404);
  assert.deepEqual(
    s.sessions.map((r) => r.status),
    [401, 401, 400, 400, 400, 404],
  );
});

test('a second live session of the same token and type gets 409 with the vendor text; other types are free', async (t) => {
  const s = await sim({ rate: 100 });
  t.after(() => s.close());
  const first = await connect(s, { cid: CID, type: 'message' }, { stopAfter: 1, keepOpen: true });
  assert.equal(first.status, 101);
  const second = await connect(s, { cid: CID, type: 'message' });
  assert.equal(second.status, 409);
  assert.equal(second.body, CONFLICT_BODY);
  const other = await connect(s, { cid: CID, type: 'audit' }, { stopAfter: 1 });
  assert.equal(other.status, 101);
  const refused = s.sessions.find((r) => r.status === 409)!;
  assert.equal(refused.concurrent, 2);
  first.ws!.close();
});

test('the first attempts can be refused with 409 on demand', async (t) => {
  const s = await sim({ rate: 100, conflictFirstAttempts: 2 });
  t.after(() => s.close());
  assert.equal((await connect(s, { cid: CID, type: 'maillog' })).status, 409);
  assert.equal((await connect(s, { cid: CID, type: 'maillog' })).status, 409);
  assert.equal((await connect(s, { cid: CID, type: 'maillog' }, { stopAfter: 2 })).status, 101);
});

test('live sessions resume where the last one ended within the hour, and serve only the last hour after', async (t) => {
  const clock = new FakeClock(Date.UTC(2026, 10, 23, 12, 0, 0));
  const s = await sim({ clock, rate: { message: 10, maillog: 0, audit: 0 } });
  t.after(() => s.close());
  // First session: only what happens from now on.
  const a = connect(s, { cid: CID, type: 'message' });
  await new Promise((r) => setTimeout(r, 30));
  clock.advance(1000).catch(() => {});
  await new Promise((r) => setTimeout(r, 50));
  const first = s.sessions[0]!;
  assert.equal(first.nextSeq! - first.firstSeq!, 10);
  s.drop('message');
  const aa = await a;
  assert.equal(aa.closeCode, 1006, 'dropped without a close frame');
  assert.equal(aa.frames.length, 10);
  // Back 20 minutes later: resumes at the next unsent event, the 12,000 that happened meanwhile follow.
  await clock.advance(20 * 60_000);
  const b = await connect(s, { cid: CID, type: 'message' }, { stopAfter: 5 });
  assert.equal(s.sessions[1]!.firstSeq, first.nextSeq);
  assert.equal(JSON.parse(b.frames[0]!).guid, s.events.event('message', first.nextSeq!).key);
  // Gone for two hours: only the last hour.
  await clock.advance(2 * HOUR);
  await connect(s, { cid: CID, type: 'message' }, { stopAfter: 1 });
  const third = s.sessions[2]!;
  assert.equal(s.events.baseTime('message', third.firstSeq!), clock.now() - HOUR);
});

test('archive mode: hour rounding in the given offset, staleness, then a close frame', async (t) => {
  const now = Date.UTC(2026, 10, 23, 12, 40, 0);
  const clock = new FakeClock(now);
  const s = await sim({ clock, rate: { message: 0, maillog: 1, audit: 0 }, historyMs: 5 * HOUR });
  t.after(() => s.close());
  // 09:10 UTC written as 02:10-07:00 floors to 09:00; toTime 12:20 ceils to 13:00 but data stops 30 min ago.
  const r = await connect(s, { cid: CID, type: 'maillog', sinceTime: '2026-11-23T02:10:00.000000-07:00', toTime: '2026-11-23T12:20:00+0000' });
  assert.equal(r.closeCode, 1000);
  const rec = s.sessions[0]!;
  assert.equal(rec.mode, 'archive');
  assert.equal(rec.windowFrom, Date.UTC(2026, 10, 23, 9));
  assert.equal(rec.windowTo, now - 30 * 60_000);
  const times = r.frames.map((f) => {
    const t = parseTimestamp((JSON.parse(f) as { ts: string }).ts)!;
    return t.sec * 1000 + t.nsec / 1e6;
  });
  assert.ok(times.length > 3 * 3600, `${times.length} events`);
  assert.ok(Math.min(...times) >= rec.windowFrom!);
  assert.ok(Math.max(...times) < rec.windowTo!);
  // The live resume point is untouched by archive sessions.
  assert.equal(s.sessions.filter((x) => x.mode === 'live').length, 0);
});

test('archive windows are clamped to 30 days back', async (t) => {
  const now = Date.UTC(2026, 10, 23, 12, 0, 0);
  const s = await sim({ clock: new FakeClock(now), rate: 0 });
  t.after(() => s.close());
  await connect(s, { cid: CID, type: 'audit', sinceTime: '2026-09-01T00:00:00Z', toTime: '2026-09-01T05:00:00Z' });
  const rec = s.sessions[0]!;
  assert.equal(rec.windowFrom, Date.UTC(2026, 9, 24, 13));
});

test('quirks on demand: repeats, unsorted ts, malformed frames, frames over 1 MiB', async (t) => {
  const s = await sim({
    rate: { message: 2000, maillog: 0, audit: 0 },
    firstSessionFrom: 'origin',
    historyMs: 1000,
    maxEvents: 400,
    duplicateEvery: 10,
    unsortedFraction: 0.3,
    unsortedMs: 5000,
    malformedEvery: 50,
    largeEvery: 100,
    largeFrameBytes: 2 * 1_048_576,
  });
  t.after(() => s.close());
  const r = await connect(s, { cid: CID, type: 'message' }, { stopAfter: 400 + 400 / 50 + 20 });
  const parsed = r.frames.map((f) => parseFrame('message', f));
  const good = parsed.flatMap((p) => (p.ok ? [p.frame] : []));
  const keys = good.map((g) => g.event.key);
  assert.ok(new Set(keys).size < keys.length, 'some events repeated');
  assert.equal(parsed.filter((p) => !p.ok).length, s.stats.malformedSent);
  assert.ok(s.stats.malformedSent >= 6);
  let backwards = 0;
  for (let i = 1; i < good.length; i++) if (good[i]!.time.sec < good[i - 1]!.time.sec) backwards++;
  assert.ok(backwards > 10, `${backwards} out-of-order ts`);
  assert.ok(r.frames.some((f) => f.length >= 2 * 1_048_576 - 10 && f.length <= 2 * 1_048_576), 'a 2 MiB frame');
});

test('the event log is deterministic for a seed, with both maillog generations and offset styles', async () => {
  const a = await sim({ seed: 42, origin: 0, rate: 10 });
  const b = await sim({ seed: 42, origin: 0, rate: 10 });
  const c = await sim({ seed: 43, origin: 0, rate: 10 });
  try {
    for (const type of ['message', 'maillog', 'audit'] as PodStreamType[]) {
      assert.deepEqual(a.events.event(type, 123), b.events.event(type, 123));
      assert.notEqual(a.events.event(type, 123).key, c.events.event(type, 123).key);
    }
    const maillog = Array.from({ length: 40 }, (_, i) => a.events.event('maillog', i));
    assert.ok(maillog.some((e) => /-07:00$/.test(e.ts) && !e.text.includes('"metadata"') && /"pri":\d/.test(e.text)), 'legacy generation');
    assert.ok(maillog.some((e) => /-0700$/.test(e.ts) && e.text.includes('"metadata"') && /"pri":"\d/.test(e.text)), 'current generation');
    const messages = Array.from({ length: 40 }, (_, i) => a.events.event('message', i));
    assert.ok(messages.some((e) => e.text.includes('"pps"') && !e.text.includes('"metadata"')), 'legacy pps message');
    assert.ok(a.events.event('audit', 1).ts.endsWith('+0000'));
    const keys = new Set(Array.from({ length: 5000 }, (_, i) => a.events.event('maillog', i).key));
    assert.equal(keys.size, 5000, 'keys unique');
  } finally {
    await Promise.all([a.close(), b.close(), c.close()]);
  }
});

test('pings are answered unless the scenario says not to', async (t) => {
  const s = await sim({ rate: 0 });
  t.after(() => s.close());
  const pong = async () => {
    const ws = new WebSocket(`${s.url}/v1/stream?cid=${CID}&type=audit`, { headers: { Authorization: `Bearer ${KEY}` } });
    await new Promise((r) => ws.once('open', r));
    const got = await new Promise<boolean>((resolve) => {
      ws.once('pong', () => resolve(true));
      setTimeout(() => resolve(false), 200);
      ws.ping();
    });
    ws.terminate();
    await new Promise((r) => setTimeout(r, 20));
    return got;
  };
  assert.equal(await pong(), true);
  s.update({ ignorePings: true });
  assert.equal(await pong(), false);
});
