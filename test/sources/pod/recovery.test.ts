/**
 * Gaps longer than the server's one-hour live resume: replayed in archive mode (one session at a
 * time, never beside the live one), then live, with nothing lost and nothing delivered twice.
 * The clock jumps hours ahead for the simulator and the sidecar alike; timers stay real.
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { startPodSimulator } from '../../../plugin/simulator/pod/index.ts';
import { parseTimestamp } from '../../../plugin/util/time.ts';
import { MemorySink } from '../../helpers/memory-sink.ts';
import { tmpDir } from '../../helpers/tmp.ts';
import { HOUR, OffsetClock, delivered, podConfig, repeats, simBase, startSidecar, until } from './harness.ts';

const MIN = 60_000;

function expectedUpTo(sim: Awaited<ReturnType<typeof startPodSimulator>>, next: number): Set<string> {
  const keys = new Set<string>();
  for (let s = 0; s < next; s++) keys.add(sim.events.event('maillog', s).key);
  return keys;
}

/** The last session is live and has sent everything that happened; everything sent was delivered. */
function caughtUp(sim: Awaited<ReturnType<typeof startPodSimulator>>, clock: OffsetClock, sinks: MemorySink[]): () => boolean {
  let checked = 0;
  return () => {
    // Counting what was served walks the event log: not on every poll.
    if (Date.now() - checked < 300) return false;
    checked = Date.now();
    const last = sim.sessions.at(-1);
    if (!last || last.mode !== 'live' || last.status !== 101 || last.nextSeq! < sim.events.count('maillog', clock.now()) - 2) return false;
    return sinks.reduce((n, k) => n + delivered(k, 'maillog').length, 0) >= sim.servedKeys('maillog').size;
  };
}

/** Exactly what the simulator sent, once each, and what it sent leaves no gap before `final`. */
function checkExactly(got: string[], sim: Awaited<ReturnType<typeof startPodSimulator>>, final: number): void {
  const served = sim.servedKeys('maillog');
  const prefix = expectedUpTo(sim, final);
  assert.deepEqual([...prefix].filter((k) => !served.has(k)).length, 0, 'the server was asked for everything (no gap)');
  checkSet(got, served);
}

function checkSet(got: string[], want: Set<string>): void {
  assert.deepEqual(repeats(got), [], 'delivered twice');
  const have = new Set(got);
  const missing = [...want].filter((k) => !have.has(k));
  assert.equal(missing.length, 0, `missing ${missing.length}, e.g. ${missing.slice(0, 3)}`);
  assert.equal(have.size, want.size);
}

test('restart after a 90-minute outage: the gap is replayed in archive mode, then live; no duplicates delivered', async (t) => {
  const clock = new OffsetClock();
  const sim = await startPodSimulator({ ...simBase(clock), rate: { maillog: 2, message: 0, audit: 0 }, historyMs: 10 * MIN, firstSessionFrom: 'origin' });
  t.after(() => sim.close());
  const cfg = podConfig(sim, {}, { maillog: {} });
  const dir = tmpDir();
  const first = new MemorySink();

  let sc = await startSidecar({ cfg, stateDir: dir, clock, sink: first });
  await until(() => delivered(first, 'maillog').length >= 1200, 'the backlog');
  await sc.stop();
  const before = sim.sessions.length;
  const cursorTs = (sc.pipeline.counters()[0]!.cursor as { ts: string }).ts;

  clock.jump(90 * MIN);
  const sink = new MemorySink();
  sc = await startSidecar({ cfg, stateDir: dir, clock, sink });
  await until(caughtUp(sim, clock, [first, sink]), 'live after the replay, caught up', 30_000);
  const live = sim.sessions.at(-1)!;
  await sc.stop();

  const phase2 = sim.sessions.slice(before).filter((s) => s.status === 101);
  const archives = phase2.filter((s) => s.mode === 'archive');
  assert.ok(archives.length >= 1, 'archive windows');
  assert.equal(phase2.at(-1)!.mode, 'live', 'live comes last');
  assert.ok(phase2.every((s) => s.concurrent === 1), 'never two sessions of the type at once');
  assert.ok(sim.sessions.every((s) => s.status !== 409));
  // The first window starts at the hour of the committed cursor, written in the cluster's offset.
  const c = parseTimestamp(cursorTs)!;
  const hour = Math.floor((c.sec * 1000) / HOUR) * HOUR;
  assert.equal(archives[0]!.windowFrom, hour);
  assert.match(archives[0]!.sinceTime!, /^\d{4}-\d\d-\d\dT\d\d:00:00\.000000-0700$/);
  // The replay reached where the live session's last hour begins.
  assert.ok(Math.max(...archives.map((a) => a.windowTo!)) >= live.startedAt - HOUR);

  const final = sim.sessions.filter((s) => s.mode === 'live').at(-1)!.nextSeq!;
  checkExactly([...delivered(first, 'maillog'), ...delivered(sink, 'maillog')], sim, final);
  const counters = sc.pipeline.counters()[0]!;
  assert.ok(counters.duplicates > 0, 'the overlaps (hour rounding, live last hour) were filtered');
  assert.ok(sc.log.lines.some((l) => /replaying the gap in archive mode/.test(String(l.msg))));
});

test('an outage while running (refused for 75 minutes): replay on reconnect, then live', async (t) => {
  const clock = new OffsetClock();
  const sim = await startPodSimulator({ ...simBase(clock), rate: { maillog: 2, message: 0, audit: 0 }, historyMs: 10 * MIN, firstSessionFrom: 'origin' });
  t.after(() => sim.close());
  const sink = new MemorySink();
  const sc = await startSidecar({ cfg: podConfig(sim, { retry_max_secs: 1 }, { maillog: {} }), stateDir: tmpDir(), clock, sink });
  await until(() => delivered(sink, 'maillog').length >= 1200, 'the backlog');
  sim.update({ refuseTypes: { maillog: { status: 503, body: 'Service Unavailable' } } });
  sim.drop('maillog');
  await until(() => sim.sessions.some((s) => s.status === 503), 'a refused attempt');
  // Longer than the live resume (one hour), shorter than the de-dup window minus the hour
  // rounding: keys committed before the outage still filter the replay's overlap. (Keys expire
  // by wall clock from their commit; see the note in the closing report.)
  clock.jump(75 * MIN);
  sim.update({ refuseTypes: {} });
  const mark = sim.sessions.length;
  await until(caughtUp(sim, clock, [sink]), 'live again, caught up', 30_000);
  await sc.stop();
  assert.ok(sim.sessions.slice(mark).some((s) => s.mode === 'archive'), 'archive replay before live');
  const final = sim.sessions.filter((s) => s.mode === 'live').at(-1)!.nextSeq!;
  checkExactly(delivered(sink, 'maillog'), sim, final);
  assert.ok(sc.log.lines.some((l) => l.status === 503 && l.server_text === 'Service Unavailable'));
});

test('after an unclean shutdown the hour of the cursor is replayed; the rest once archive mode has it', async (t) => {
  // The process "dies" with a batch delivered to the sink and never acknowledged: its events
  // are lost to the live stream (the server resumes after them) and must come back from archive.
  // Windows end on whole past hours: a partial window serves the hour of the cursor at once, and
  // the replay is complete once that whole hour has been asked, after its end.
  const clock = new OffsetClock();
  clock.beforeHourEnd(10 * MIN);
  const sim = await startPodSimulator({ ...simBase(clock), rate: { maillog: 20, message: 0, audit: 0 }, historyMs: 2 * MIN, firstSessionFrom: 'origin', archiveStalenessMs: 2_000 });
  t.after(() => sim.close());
  const cfg = podConfig(sim, { archive_staleness_secs: 2 }, { maillog: {} });
  const dir = tmpDir();
  const first = new MemorySink();
  const sc = await startSidecar({ cfg, stateDir: dir, clock, sink: first });
  await until(() => delivered(first, 'maillog').length >= 2400, 'the backlog');
  first.holdAcks = true;
  await until(() => first.held.length >= 2, 'batches in flight');
  // "Crash": the process ends without those batches acknowledged or committed, and the state
  // stays marked unclean. (The kill -9 of a real process is in crash.test.ts.)
  const lostInFlight = first.held.reduce((n, h) => n + h.count, 0);
  const r = await sc.pipeline.stop(300);
  assert.equal(r.clean, false);
  await sc.store.close({ clean: false });
  assert.ok(lostInFlight > 0);

  const sink = new MemorySink();
  const sc2 = await startSidecar({ cfg, stateDir: dir, clock, sink });
  assert.equal(sc2.store.uncleanShutdown, true);
  await until(() => sc2.log.lines.some((l) => l.partial === true && /partial archive window served/.test(String(l.msg))), 'the partial window');
  // What the partial window covers is delivered now; what came after it, once the hour is whole.
  const partial = sim.sessions.filter((s) => s.mode === 'archive' && s.status === 101).at(-1)!;
  const covered = [...sim.servedSeqs('maillog')].map((seq) => sim.events.event('maillog', seq)).filter((e) => e.tsMs < partial.windowTo!);
  await until(() => {
    const have = new Set([...delivered(first, 'maillog'), ...delivered(sink, 'maillog')]);
    return covered.every((e) => have.has(e.key));
  }, 'the partial window delivered');
  clock.jump(clock.toHourEnd() + 3_000);
  await until(
    () => sc2.log.lines.some((l) => l.msg === 'Archive replay complete; streaming live.') && sim.sessions.at(-1)!.mode === 'live' && sim.sessions.at(-1)!.status === 101,
    'live after the replay',
    30_000,
  );
  const live = sim.sessions.at(-1)!;
  await until(() => delivered(first, 'maillog').length + delivered(sink, 'maillog').length >= live.nextSeq!, 'caught up');
  await sc2.stop();
  const modes = sim.sessions.slice(1).filter((s) => s.status === 101).map((s) => s.mode);
  assert.ok(modes.includes('archive') && modes.at(-1) === 'live', modes.join(','));
  const all = [...delivered(first, 'maillog'), ...delivered(sink, 'maillog')];
  const final = sim.sessions.filter((s) => s.mode === 'live').at(-1)!.nextSeq!;
  const want = expectedUpTo(sim, final);
  const have = new Set(all);
  assert.deepEqual([...want].filter((k) => !have.has(k)), [], 'nothing lost');
  // Delivered twice: at most the records that were in flight when the process died.
  assert.ok(all.length - have.size <= lostInFlight, `${all.length - have.size} repeats > ${lostInFlight} in flight`);
});

test('first start with start_time: archive windows from its hour, then live, nothing missing in between', async (t) => {
  const clock = new OffsetClock();
  clock.beforeHourEnd(5 * MIN);
  const sim = await startPodSimulator({ ...simBase(clock), rate: { maillog: 1, message: 0, audit: 0 }, historyMs: 4 * HOUR, archiveStalenessMs: 2_000 });
  t.after(() => sim.close());
  const start = new Date(clock.now() - 2 * HOUR - 20 * MIN).toISOString();
  const sink = new MemorySink();
  const sc = await startSidecar({ cfg: podConfig(sim, { archive_staleness_secs: 2 }, { maillog: { start_time: start } }), stateDir: tmpDir(), clock, sink });
  await until(caughtUp(sim, clock, [sink]), 'live after the replay, caught up', 30_000);
  // The hour the live session started in (served partially so far) is asked whole once it has
  // ended: the moments before the live start are then proven served.
  clock.jump(clock.toHourEnd() + 3_000);
  await until(() => sc.log.lines.some((l) => l.msg === 'Archive replay complete; streaming live.'), 'the moments before the live start');
  await until(caughtUp(sim, clock, [sink]), 'live again, caught up', 30_000);
  await sc.stop();
  const ok = sim.sessions.filter((s) => s.status === 101);
  assert.ok(ok.filter((s) => s.mode === 'archive').length >= 3, 'hour windows');
  assert.equal(ok[0]!.windowFrom, Math.floor(Date.parse(start) / HOUR) * HOUR);
  assert.equal(ok.at(-1)!.mode, 'live');
  // Everything from the hour of start_time up to the live position arrived, once.
  const from = sim.events.firstAtOrAfter('maillog', ok[0]!.windowFrom!);
  const want = new Set<string>();
  for (let s = from; s < ok.at(-1)!.nextSeq!; s++) want.add(sim.events.event('maillog', s).key);
  const got = delivered(sink, 'maillog');
  assert.deepEqual(repeats(got), []);
  const have = new Set(got);
  assert.equal([...want].filter((k) => !have.has(k)).length, 0);
});

test('a quiet live stream still records its contact, so a clean restart knows the gap was short', async (t) => {
  const sim = await startPodSimulator({ ...simBase(), rate: 0 });
  t.after(() => sim.close());
  // Contact is a frame or a pong: with no events, the pings keep proving the session alive.
  const sc = await startSidecar({ cfg: podConfig(sim, { checkpoint_interval_secs: 1, ping_interval_secs: 1 }, { audit: {} }), stateDir: tmpDir() });
  const t0 = Date.now();
  await until(() => ((sc.pipeline.counters()[0]?.cursor as { liveAt?: number } | undefined)?.liveAt ?? 0) > t0 + 500, 'a checkpoint without events', 5_000);
  await sc.stop();
});

test(
  'restart after a 3-hour outage: the replay of the cursor hour is not delivered twice',
  async (t) => {
    const clock = new OffsetClock();
    const sim = await startPodSimulator({ ...simBase(clock), rate: { maillog: 1, message: 0, audit: 0 }, historyMs: 10 * MIN, firstSessionFrom: 'origin' });
    t.after(() => sim.close());
    const cfg = podConfig(sim, {}, { maillog: {} });
    const dir = tmpDir();
    const first = new MemorySink();
    let sc = await startSidecar({ cfg, stateDir: dir, clock, sink: first });
    await until(() => delivered(first, 'maillog').length >= 600, 'the backlog');
    await sc.stop();
    clock.jump(3 * HOUR);
    const sink = new MemorySink();
    sc = await startSidecar({ cfg, stateDir: dir, clock, sink });
    await until(caughtUp(sim, clock, [first, sink]), 'live after the replay, caught up', 30_000);
    await sc.stop();
    assert.deepEqual(repeats([...delivered(first, 'maillog'), ...delivered(sink, 'maillog')]), []);
  },
);
