/**
 * The PoD simulator behaves as the log stream is documented to, so the
 * source tests that rely on it test the source, not the simulator's shortcuts.
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { WebSocket } from 'ws';
import {
  startPodSimulator,
  CONFLICT_BODY,
  AUTH_FAILED_BODY,
  DEFAULT_SCENARIO,
  POD_PROFILES,
  podProfiles,
  type PodProfileName,
  type PodSimulator,
  type PodStreamType,
} from '../../plugin/simulator/pod/index.ts';
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

// Server profiles: behaviours of the real server that its documentation does not rule out.

/** Polls until `cond` holds (fails after `ms`); for states reached through real sockets. */
async function until(cond: () => boolean, what: string, ms = 10_000): Promise<void> {
  const end = Date.now() + ms;
  while (!cond()) {
    if (Date.now() > end) assert.fail(`timed out waiting for ${what}`);
    await new Promise((r) => setTimeout(r, 5));
  }
}

const ARCHIVE_NOW = Date.UTC(2026, 10, 23, 12, 40, 0);
/** 09:00–10:00 UTC: 900 maillog events (one every 4 s), none unsorted. */
const WINDOW_9 = { cid: CID, type: 'maillog', sinceTime: '2026-11-23T09:00:00.000000+0000', toTime: '2026-11-23T10:00:00.000000+0000' };
const WINDOW_10 = { ...WINDOW_9, sinceTime: '2026-11-23T10:00:00.000000+0000', toTime: '2026-11-23T11:00:00.000000+0000' };

function archiveSim(opts: Parameters<typeof startPodSimulator>[0] = {}): Promise<PodSimulator> {
  return sim({ clock: new FakeClock(ARCHIVE_NOW), rate: { message: 0, maillog: 0.25, audit: 0 }, historyMs: 5 * HOUR, ...opts });
}

const frameKey = (type: PodStreamType, f: string) => (JSON.parse(f) as Record<string, string>)[type === 'maillog' ? 'id' : 'guid'];

test('the new knobs default to the old behaviour', () => {
  assert.equal(DEFAULT_SCENARIO.archiveCloseCode, 1000);
  assert.equal(DEFAULT_SCENARIO.archiveCut, undefined);
  assert.equal(DEFAULT_SCENARIO.liveResumeFrom, 'position');
  assert.equal(DEFAULT_SCENARIO.emptyFrameEvery, 0);
  assert.equal(DEFAULT_SCENARIO.serverPingMs, 0);
  assert.equal(DEFAULT_SCENARIO.rejectFutureToTime, false);
  assert.equal(DEFAULT_SCENARIO.sharedKeyEvery, 0);
});

test('profiles merge in order, under explicit options, without touching the constants', async (t) => {
  assert.deepEqual(podProfiles(), {});
  assert.deepEqual(podProfiles('archive-close-1001', 'archive-drop').archiveCut, { code: 1006, afterFraction: 0.4, attempts: 1 });
  assert.deepEqual(podProfiles('archive-drop', 'archive-close-1001').archiveCut, { code: 1001, afterFraction: 0.5, attempts: 1 });
  assert.deepEqual(podProfiles('empty-frames', 'server-pings', 'shared-guid'), { emptyFrameEvery: 50, serverPingMs: 200, sharedKeyEvery: 4 });
  podProfiles('archive-drop').archiveCut!.code = 4000;
  assert.equal(POD_PROFILES['archive-drop'].archiveCut!.code, 1006);
  assert.throws(() => podProfiles('no-such-profile' as PodProfileName), /Unknown PoD simulator profile/);
  const s = await sim({ profiles: ['empty-frames', 'live-resume-now'], emptyFrameEvery: 7 });
  t.after(() => s.close());
  assert.equal(s.scenario.emptyFrameEvery, 7, 'explicit options win');
  assert.equal(s.scenario.liveResumeFrom, 'now');
  assert.equal(s.scenario.dropHow, 'rst');
  assert.equal(s.scenario.archiveEnd, 'close', 'the rest stays default');
  assert.deepEqual(s.profiles, ['empty-frames', 'live-resume-now']);
  assert.ok(!('profiles' in s.scenario));
});

test('archiveCloseCode: the code sent after a whole archive window, changeable at runtime', async (t) => {
  const s = await archiveSim({ archiveCloseCode: 4000 });
  t.after(() => s.close());
  const a = await connect(s, WINDOW_9);
  assert.equal(a.closeCode, 4000);
  assert.equal(a.frames.length, 900);
  assert.deepEqual([s.sessions[0]!.end, s.sessions[0]!.closeCode], ['server_close', 4000]);
  s.update({ archiveCloseCode: 1011 });
  const b = await connect(s, WINDOW_10);
  assert.equal(b.closeCode, 1011);
  assert.equal(b.frames.length, 900);
});

test("profile 'archive-close-1000': the whole window, then close 1000", async (t) => {
  const s = await archiveSim({ profiles: ['archive-close-1000'] });
  t.after(() => s.close());
  for (let i = 0; i < 2; i++) {
    const r = await connect(s, WINDOW_9);
    assert.equal(r.closeCode, 1000);
    assert.equal(r.frames.length, 900);
    assert.equal(s.sessions[i]!.closeCode, 1000);
    assert.equal(s.sessions[i]!.cut, undefined);
  }
});

const CUT_PROFILES: [PodProfileName, number, number][] = [
  ['archive-close-1001', 1001, 450],
  ['archive-close-early', 1011, 270],
];
for (const [profile, code, after] of CUT_PROFILES) {
  test(`profile '${profile}': the first attempt of a window ends with ${code} after ${after} of 900 events; the retry is whole`, async (t) => {
    const s = await archiveSim({ profiles: [profile] });
    t.after(() => s.close());
    const first = await connect(s, WINDOW_9);
    assert.equal(first.closeCode, code);
    assert.equal(first.frames.length, after);
    assert.deepEqual(
      first.frames.map((f) => frameKey('maillog', f)),
      Array.from({ length: after }, (_, i) => s.events.event('maillog', s.sessions[0]!.firstSeq! + i).key),
      'the first events of the window, none skipped',
    );
    assert.deepEqual([s.sessions[0]!.end, s.sessions[0]!.closeCode, s.sessions[0]!.cut], ['server_close', code, true]);
    assert.equal(s.servedSeqs('maillog').size, after);
    const retry = await connect(s, WINDOW_9);
    assert.equal(retry.closeCode, 1000);
    assert.equal(retry.frames.length, 900);
    assert.equal(s.sessions[1]!.cut, undefined);
    // Another window is a first attempt again.
    assert.equal((await connect(s, WINDOW_10)).closeCode, code);
  });
}

test("profile 'archive-drop': the first attempt is cut without a close frame (RST) after 40%; the retry is whole", async (t) => {
  const s = await archiveSim({ profiles: ['archive-drop'] });
  t.after(() => s.close());
  const first = await connect(s, WINDOW_9);
  assert.equal(first.closeCode, 1006);
  // What was still in flight when the connection was reset may be lost.
  assert.ok(first.frames.length <= 360, `${first.frames.length} frames`);
  const rec = s.sessions[0]!;
  assert.deepEqual([rec.end, rec.closeCode, rec.cut, rec.eventsSent], ['drop', 1006, true, 360]);
  assert.equal(s.stats.drops, 1);
  const retry = await connect(s, WINDOW_9);
  assert.equal(retry.closeCode, 1000);
  assert.equal(retry.frames.length, 900);
});

test('archiveCut: the first n attempts per window are cut; setting it again restarts the count', async (t) => {
  const s = await archiveSim({ archiveCut: { code: 4001, afterFraction: 0.25, attempts: 2 } });
  t.after(() => s.close());
  const codes = async (q: Record<string, string>) => {
    const r = await connect(s, q);
    return [r.closeCode, r.frames.length];
  };
  assert.deepEqual(await codes(WINDOW_9), [4001, 225]);
  // toTime written differently but rounding up to the same hour: the same window.
  assert.deepEqual(await codes({ ...WINDOW_9, toTime: '2026-11-23T02:59:59.5-07:00' }), [4001, 225]);
  assert.deepEqual(await codes(WINDOW_9), [1000, 900]);
  assert.deepEqual(await codes(WINDOW_10), [4001, 225]);
  s.update({ archiveCut: { code: 1001, afterFraction: 0, attempts: 1 } });
  assert.deepEqual(await codes(WINDOW_9), [1001, 0]);
  assert.deepEqual(await codes(WINDOW_9), [1000, 900]);
  s.update({ archiveCut: undefined });
  assert.deepEqual(await codes(WINDOW_10), [1000, 900]);
});

test("profile 'archive-never-close': after the whole window the session stays open and silent", async (t) => {
  const s = await archiveSim({ profiles: ['archive-never-close'] });
  t.after(() => s.close());
  let closed = false;
  const r = await connect(s, WINDOW_9, { stopAfter: 900, keepOpen: true });
  r.ws!.on('close', () => (closed = true));
  const rec = s.sessions[0]!;
  // Scanned to the end of the window (one event past it): nothing more will come.
  await until(() => rec.nextSeq === s.events.firstAtOrAfter('maillog', Date.UTC(2026, 10, 23, 10) + 1), 'the scan to finish');
  await new Promise((res) => setTimeout(res, 50));
  assert.equal(closed, false);
  assert.equal(s.openSessions('maillog'), 1);
  assert.equal(rec.eventsSent, 900);
  assert.equal(rec.end, undefined);
  r.ws!.close(1000);
  await until(() => rec.end !== undefined, 'the close');
  assert.deepEqual([rec.end, rec.closeCode], ['client_close', 1000]);
});

/** Live message session at 10/s on a fake clock: one second of events, then a drop. */
async function liveThenDrop(s: PodSimulator, clock: FakeClock) {
  const a = connect(s, { cid: CID, type: 'message' });
  await until(() => s.openSessions('message') === 1, 'the session');
  clock.advance(1000).catch(() => {});
  const first = s.sessions[0]!;
  await until(() => first.nextSeq! - first.firstSeq! === 10, 'ten events');
  assert.equal(s.drop('message'), 1);
  const out = await a;
  assert.equal(out.closeCode, 1006);
  assert.deepEqual([first.end, first.closeCode], ['drop', 1006]);
  return { first, received: out.frames };
}

const liveClock = () => new FakeClock(Date.UTC(2026, 10, 23, 12, 0, 0));
const liveRate = { message: 10, maillog: 0, audit: 0 };

test("profile 'live-resume-exact': a drop flushes what was written and the next session resumes at the send position", async (t) => {
  const clock = liveClock();
  const s = await sim({ clock, rate: liveRate, profiles: ['live-resume-exact'] });
  t.after(() => s.close());
  const { first, received } = await liveThenDrop(s, clock);
  assert.equal(received.length, 10, 'nothing lost in the drop');
  await clock.advance(20 * 60_000);
  const b = await connect(s, { cid: CID, type: 'message' }, { stopAfter: 5, keepOpen: true });
  b.ws!.close();
  assert.equal(s.sessions[1]!.firstSeq, first.nextSeq);
  const got = [...received, ...b.frames.slice(0, 5)].map((f) => frameKey('message', f));
  assert.deepEqual(got, Array.from({ length: 15 }, (_, i) => s.events.event('message', first.firstSeq! + i).key), 'every event once, in order');
});

test("profile 'live-resume-send-position': a drop is an RST and the next session resumes at the send position", async (t) => {
  const clock = liveClock();
  const s = await sim({ clock, rate: liveRate, profiles: ['live-resume-send-position'] });
  t.after(() => s.close());
  assert.equal(s.scenario.dropHow, 'rst');
  const { first, received } = await liveThenDrop(s, clock);
  // Whatever the RST discarded is never sent again: the next session starts after it.
  assert.ok(received.length <= 10);
  await clock.advance(20 * 60_000);
  const b = await connect(s, { cid: CID, type: 'message' }, { stopAfter: 1 });
  assert.equal(s.sessions[1]!.firstSeq, first.nextSeq);
  assert.equal(frameKey('message', b.frames[0]!), s.events.event('message', first.nextSeq!).key);
});

test("profile 'live-resume-now': after a drop the next session starts at the newest event; the gap is never sent", async (t) => {
  const clock = liveClock();
  const s = await sim({ clock, rate: liveRate, profiles: ['live-resume-now'] });
  t.after(() => s.close());
  const { first } = await liveThenDrop(s, clock);
  await clock.advance(20 * 60_000);
  const newest = s.events.count('message', clock.now());
  const b = connect(s, { cid: CID, type: 'message' }, { stopAfter: 3 });
  await until(() => s.openSessions('message') === 1, 'the second session');
  assert.equal(s.sessions[1]!.firstSeq, newest);
  clock.advance(1000).catch(() => {});
  const frames = (await b).frames;
  assert.equal(frameKey('message', frames[0]!), s.events.event('message', newest).key);
  const served = s.servedSeqs('message');
  for (let seq = first.nextSeq!; seq < newest; seq++) assert.ok(!served.has(seq), `seq ${seq} from the gap was sent`);
  // Gone longer than the resume window: the last hour, as before.
  await clock.advance(2 * HOUR);
  await connect(s, { cid: CID, type: 'message' }, { stopAfter: 1 });
  assert.equal(s.events.baseTime('message', s.sessions[2]!.firstSeq!), clock.now() - HOUR);
});

test('liveResumeFrom can change at runtime', async (t) => {
  const clock = liveClock();
  const s = await sim({ clock, rate: liveRate });
  t.after(() => s.close());
  await liveThenDrop(s, clock);
  s.update({ liveResumeFrom: 'now' });
  await clock.advance(60_000);
  const b = connect(s, { cid: CID, type: 'message' });
  await until(() => s.openSessions('message') === 1, 'the second session');
  assert.equal(s.sessions[1]!.firstSeq, s.events.count('message', clock.now()));
  s.drop('message');
  await b;
});

/** A live session from event 0 of a bounded log, read to the end (the log's last event + extra frames). */
async function readAll(s: PodSimulator, type: PodStreamType, frames: number) {
  const r = await connect(s, { cid: CID, type }, { stopAfter: frames, keepOpen: true });
  r.ws!.close();
  return r.frames;
}

const bounded = { rate: 2000, firstSessionFrom: 'origin' as const, historyMs: 1000, maxEvents: 200 };

test("profile 'empty-frames': an empty text frame after every 50th event frame", async (t) => {
  const s = await sim({ ...bounded, profiles: ['empty-frames'] });
  t.after(() => s.close());
  const frames = await readAll(s, 'maillog', 204);
  const empties = frames.flatMap((f, i) => (f === '' ? [i] : []));
  assert.deepEqual(empties, [50, 101, 152, 203]);
  assert.equal(frames.filter((f) => f !== '').length, 200);
  assert.equal(s.sessions[0]!.emptyFramesSent, 4);
  assert.equal(s.stats.emptyFramesSent, 4);
});

test('emptyFrameEvery: counted per session, after repeats and malformed frames of the same event, changeable at runtime', async (t) => {
  const s = await sim({ ...bounded, emptyFrameEvery: 3, malformedEvery: 3 });
  t.after(() => s.close());
  const frames = await readAll(s, 'audit', 9);
  // event, event, event, malformed, empty, ...
  assert.deepEqual(
    frames.map((f) => (f === '' ? 'empty' : parseFrame('audit', f).ok ? 'event' : 'bad')),
    ['event', 'event', 'event', 'bad', 'empty', 'event', 'event', 'event', 'bad'],
  );
  s.update({ emptyFrameEvery: 0, malformedEvery: 0 });
  const again = await readAll(s, 'message', 200);
  assert.ok(again.every((f) => f !== ''));
});

test("profile 'server-pings': the server pings every open session and counts the pongs", async (t) => {
  const s = await sim({ rate: 0, profiles: ['server-pings'] });
  t.after(() => s.close());
  const ws = new WebSocket(`${s.url}/v1/stream?cid=${CID}&type=audit`, { headers: { Authorization: `Bearer ${KEY}` } });
  let pings = 0;
  ws.on('ping', () => pings++);
  await new Promise((r) => ws.once('open', r));
  const rec = s.sessions[0]!;
  await until(() => rec.pongsReceived >= 2, 'two pongs');
  assert.ok(pings >= 2);
  assert.ok(rec.pingsSent >= rec.pongsReceived);
  ws.close();
  await until(() => rec.end !== undefined, 'the close');
});

test('serverPingMs: changeable at runtime for open sessions, stopped when 0 and when the session ends', async (t) => {
  const s = await sim({ rate: 0 });
  t.after(() => s.close());
  const open = async (type: PodStreamType) => {
    const ws = new WebSocket(`${s.url}/v1/stream?cid=${CID}&type=${type}`, { headers: { Authorization: `Bearer ${KEY}` } });
    await new Promise((r) => ws.once('open', r));
    return ws;
  };
  const a = await open('audit');
  const recA = s.sessions[0]!;
  await new Promise((r) => setTimeout(r, 60));
  assert.equal(recA.pingsSent, 0, 'no pings by default');
  s.update({ serverPingMs: 10 });
  const b = await open('maillog');
  const recB = s.sessions[1]!;
  await until(() => recA.pongsReceived >= 3 && recB.pongsReceived >= 3, 'pongs on both sessions');
  b.close();
  await until(() => recB.end !== undefined, 'the close');
  const afterClose = recB.pingsSent;
  s.update({ serverPingMs: 0 });
  const stopped = recA.pingsSent;
  await new Promise((r) => setTimeout(r, 80));
  assert.equal(recA.pingsSent, stopped, 'stopped when set to 0');
  assert.equal(recB.pingsSent, afterClose, 'stopped when the session ended');
  a.close();
});

test("profile 'reject-future-totime': a toTime that rounds up (in its own offset) past now gets 400", async (t) => {
  const s = await archiveSim({ profiles: ['reject-future-totime'] });
  t.after(() => s.close());
  // Now is 12:40 UTC. 12:20Z rounds up to 13:00Z: in the future.
  const late = { ...WINDOW_9, sinceTime: '2026-11-23T11:00:00Z' };
  const future = await connect(s, { ...late, toTime: '2026-11-23T12:20:00.000000+0000' });
  assert.equal(future.status, 400);
  assert.equal(future.body, 'Invalid toTime: 2026-11-23T12:20:00.000000+0000: rounded up to the hour it is in the future');
  // 05:10-07:00 (12:10Z) rounds up to 06:00-07:00, 13:00Z: refused.
  assert.equal((await connect(s, { ...late, toTime: '2026-11-23T05:10:00-07:00' })).status, 400);
  // 17:50+05:30 (12:20Z) rounds up to 18:00+05:30, 12:30Z: in the past, served.
  const half = await connect(s, { ...late, toTime: '2026-11-23T17:50:00+05:30' });
  assert.equal(half.status, 101);
  // A whole past hour is served as always.
  assert.equal((await connect(s, WINDOW_9)).closeCode, 1000);
  assert.deepEqual(
    s.sessions.map((r) => [r.status, r.mode]),
    [
      [400, 'refused'],
      [400, 'refused'],
      [101, 'archive'],
      [101, 'archive'],
    ],
  );
  assert.equal(s.stats.refused[400], 2);
  // Without the knob the future part is cut by staleness, as before.
  s.update({ rejectFutureToTime: false });
  const served = await connect(s, { ...late, toTime: '2026-11-23T12:20:00.000000+0000' });
  assert.equal(served.closeCode, 1000);
  assert.equal(s.sessions.at(-1)!.windowTo, ARCHIVE_NOW - 30 * 60_000);
});

test("profile 'shared-guid': every 4th event repeats the key of the one before it, with its own ts and text", async (t) => {
  const s = await sim({ ...bounded, maxEvents: 400, profiles: ['shared-guid'] });
  t.after(() => s.close());
  for (const type of ['message', 'maillog', 'audit'] as PodStreamType[]) {
    const frames = await readAll(s, type, 400);
    const keys = frames.map((f) => frameKey(type, f));
    assert.equal(new Set(frames).size, 400, `${type}: texts unique`);
    assert.ok(new Set(keys).size < 380 && new Set(keys).size > 250, `${type}: ${new Set(keys).size} distinct keys`);
    let shared = 0;
    for (let seq = 0; seq < 400; seq++) {
      const e = s.events.event(type, seq);
      assert.equal(keys[seq], e.key);
      if (seq > 0 && e.key === s.events.event(type, seq - 1).key) {
        shared++;
        assert.ok(s.events.sharesKey(type, seq));
        assert.notEqual(e.ts, s.events.event(type, seq - 1).ts);
      }
    }
    assert.ok(shared > 50, `${type}: ${shared} shared`);
    assert.ok(!s.events.sharesKey(type, 0));
    assert.equal(s.servedSeqs(type).size, 400, 'servedSeqs counts every event');
    assert.equal(s.servedKeys(type).size, new Set(keys).size);
  }
});

test('sharedKeyEvery shapes the event log: set at start, not through update()', async (t) => {
  const s = await sim({ ...bounded, sharedKeyEvery: 2 });
  t.after(() => s.close());
  // @ts-expect-error not a runtime knob
  const runtime: Parameters<PodSimulator['update']>[0] = { sharedKeyEvery: 3 };
  void runtime;
  const keys = new Set(Array.from({ length: 200 }, (_, i) => s.events.event('maillog', i).key));
  assert.ok(keys.size < 130, `${keys.size} distinct keys`);
});

test('profiles combine: a cut archive window with empty frames, server pings and shared guids', async (t) => {
  const s = await archiveSim({ profiles: ['archive-drop', 'empty-frames', 'server-pings', 'shared-guid'] });
  t.after(() => s.close());
  const first = await connect(s, WINDOW_9);
  assert.equal(first.closeCode, 1006);
  assert.equal(s.sessions[0]!.eventsSent, 360);
  const retry = await connect(s, WINDOW_9);
  assert.equal(retry.closeCode, 1000);
  const events = retry.frames.filter((f) => f !== '');
  assert.equal(events.length, 900);
  assert.equal(retry.frames.length - events.length, 18, 'an empty frame after every 50th');
  assert.ok(new Set(events.map((f) => frameKey('maillog', f))).size < 900, 'shared ids');
  assert.equal(new Set(events).size, 900);
});

test('every profile serves a live session', async () => {
  for (const name of Object.keys(POD_PROFILES) as PodProfileName[]) {
    const s = await sim({ ...bounded, profiles: [name] });
    try {
      const frames = await readAll(s, 'message', 100);
      assert.equal(frames.filter((f) => f !== '').length, name === 'empty-frames' ? 99 : 100, name);
      assert.ok(frames.every((f) => f === '' || parseFrame('message', f).ok), name);
    } finally {
      await s.close();
    }
  }
});
