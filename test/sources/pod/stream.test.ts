/**
 * The PoD source against the simulator, through the real state store and pipeline into a memory
 * sink: what arrives, what is committed, what is logged. Each test compares what the simulator
 * sent (ground truth) with what was acknowledged, so "nothing lost, nothing twice" is checked
 * event by event.
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { readFileSync } from 'node:fs';
import { startPodSimulator, type PodStreamType } from '../../../plugin/simulator/pod/index.ts';
import { parseTimestamp } from '../../../plugin/util/time.ts';
import { ErrorCode } from '../../../plugin/errors.ts';
import { MemorySink } from '../../helpers/memory-sink.ts';
import { tmpDir } from '../../helpers/tmp.ts';
import { API_KEY, delivered, podConfig, repeats, simBase, startSidecar, until } from './harness.ts';
import type { PodCursor } from '../../../plugin/sources/pod/cursor.ts';

const TYPES: PodStreamType[] = ['message', 'maillog', 'audit'];

function assertSame(actual: string[], expected: Set<string>, what: string): void {
  assert.deepEqual(repeats(actual), [], `${what}: delivered twice`);
  const got = new Set(actual);
  const missing = [...expected].filter((k) => !got.has(k));
  const extra = [...got].filter((k) => !expected.has(k));
  assert.deepEqual({ missing: missing.length, extra: extra.length }, { missing: 0, extra: 0 }, `${what}: missing ${missing.slice(0, 3)} extra ${extra.slice(0, 3)}`);
}

function maxTs(messages: string[]): string {
  let best: { ts: string; v: number } | undefined;
  for (const m of messages) {
    const ts = (JSON.parse(m) as { ts: string }).ts;
    const t = parseTimestamp(ts)!;
    const v = t.sec * 1e9 + t.nsec;
    if (!best || v > best.v) best = { ts, v };
  }
  return best!.ts;
}

test('steady streaming of message, maillog and audit; SIGTERM drains, commits and closes with a close frame', async (t) => {
  const sim = await startPodSimulator({ ...simBase(), rate: 300 });
  t.after(() => sim.close());
  const sink = new MemorySink();
  const sc = await startSidecar({ cfg: podConfig(sim, { stats_interval_secs: 1 }), stateDir: tmpDir(), sink });
  await until(() => TYPES.every((s) => delivered(sink, s).length >= 400), 'events of every type');
  const r = await sc.stop();
  assert.equal(r.clean, true);
  for (const type of TYPES) {
    assertSame(delivered(sink, type), sim.servedKeys(type), type);
    const live = sim.sessions.filter((s) => s.type === type);
    assert.equal(live.length, 1, `${type}: one session`);
    assert.equal(live[0]!.mode, 'live');
    assert.equal(live[0]!.end, 'client_close', `${type}: closed by us with a close frame`);
  }
  const rec = sink.records.find((x) => x.record.service === 'maillog')!;
  assert.equal(rec.tag, 'mail.proofpoint.pod.maillog');
  assert.equal(rec.record.devo_tag, 'mail.proofpoint.pod.maillog');
  assert.equal(rec.record.source, 'proofpoint_on_demand');
  assert.equal(rec.record.input_id, 'pod-test');
  assert.equal(typeof rec.record.pulling_id, 'number');
  const ts = parseTimestamp((JSON.parse(rec.record.message as string) as { ts: string }).ts)!;
  assert.deepEqual(rec.time, ts, 'EventTime from ts, to the microsecond');

  // The committed cursor is the highest ts delivered, with the time of the last live contact.
  const { StateStore } = await import('../../../plugin/state/store.ts');
  const store = await StateStore.open(sc.store.dir);
  try {
    for (const type of TYPES) {
      const c = (await store.getCursor<PodCursor>('pod-test', type))!.cursor;
      const msgs = sink.records.filter((x) => x.record.service === type).map((x) => x.record.message as string);
      assert.equal(c.ts, maxTs(msgs), `${type} cursor`);
      assert.ok(typeof c.liveAt === 'number');
    }
  } finally {
    await store.close();
  }
  const stats = sc.log.lines.filter((l) => l.msg === 'PoD session ended; statistics.').map((l) => l.stats as Record<string, unknown>);
  assert.equal(stats.length, 3);
  for (const s of stats) {
    for (const k of ['pulling_id', 'mode', 'frames', 'duplicates', 'dead_lettered', 'sent', 'events_per_sec', 'highest_ts', 'lag_secs']) assert.ok(k in s, `stats has ${k}`);
    assert.equal(s.sent, delivered(sink, s.service as PodStreamType).length);
  }
  assert.ok(sc.log.lines.some((l) => l.msg === 'PoD session statistics.'), 'periodic statistics while open');
  assert.ok(!sc.log.text().includes(API_KEY), 'the api_key never reaches the log');
});

test('a drop without a close frame: reconnect, the server resumes, nothing lost, nothing twice', async (t) => {
  // Each session is cut after 150 frames; the server repeats the 5 events before the cut.
  const sim = await startPodSimulator({ ...simBase(), rate: { maillog: 400, message: 0, audit: 0 }, dropAfterFrames: 150, resumeOverlapEvents: 5 });
  t.after(() => sim.close());
  const sink = new MemorySink();
  const sc = await startSidecar({ cfg: podConfig(sim, {}, { maillog: {} }), stateDir: tmpDir(), sink });
  await until(() => sim.sessions.filter((s) => s.end === 'drop').length >= 2 && sim.sessions.length >= 3, 'two drops and a third session');
  await until(() => delivered(sink, 'maillog').length >= 400, 'events after the drops');
  await sc.stop();
  const sessions = sim.sessions.filter((s) => s.status === 101);
  for (let i = 1; i < sessions.length; i++) assert.equal(sessions[i]!.firstSeq, sessions[i - 1]!.nextSeq! - 5, 'resumed just before the drop');
  assertSame(delivered(sink, 'maillog'), sim.servedKeys('maillog'), 'maillog');
  assert.ok(sc.log.lines.some((l) => l.msg?.toString().includes('dropped without a close frame') && l.code === 1006));
  const dupes = sc.pipeline.counters().find((c) => c.service === 'maillog')!.duplicates;
  assert.ok(dupes >= 10, `the repeats were filtered (${dupes})`);
  const reconnects = sc.pipeline.sourceMetrics.values('pod_reconnects_total').find((v) => v.labels.service === 'maillog')?.value;
  assert.ok((reconnects ?? 0) >= sessions.length - 1, `reconnects counted (${reconnects} for ${sessions.length} sessions)`);
});

test('409 on the first attempts: logged with the server text, degraded, then streaming', async (t) => {
  const sim = await startPodSimulator({ ...simBase(), rate: { audit: 200, message: 0, maillog: 0 }, conflictFirstAttempts: 2 });
  t.after(() => sim.close());
  const sink = new MemorySink();
  const sc = await startSidecar({ cfg: podConfig(sim, {}, { audit: {} }), stateDir: tmpDir(), sink });
  await until(() => sc.pipeline.health.get('pod-test', 'audit')?.status === 'degraded', 'degraded');
  assert.match(sc.pipeline.health.get('pod-test', 'audit')!.reason!, /409: "Exceeded maximum number of sessions per token"/);
  await until(() => delivered(sink, 'audit').length >= 100, 'audit events');
  assert.equal(sc.pipeline.health.get('pod-test', 'audit')?.status, 'ok');
  await sc.stop();
  const attempts = sim.sessions.map((s) => s.status);
  assert.deepEqual(attempts, [409, 409, 101]);
  const metric = (name: 'pod_conflicts_total' | 'pod_sessions_total') =>
    sc.pipeline.sourceMetrics.values(name).map((v) => ({ ...v.labels, value: v.value }));
  assert.deepEqual(metric('pod_conflicts_total'), [{ input_id: 'pod-test', service: 'audit', value: 2 }]);
  assert.deepEqual(metric('pod_sessions_total'), [{ input_id: 'pod-test', service: 'audit', mode: 'live', value: 1 }]);
  // Attempts were spaced (request period, then backoff), never hammered.
  const times = sim.sessions.map((s) => s.startedAt);
  assert.ok(times[1]! - times[0]! >= 900 && times[2]! - times[1]! >= 900, `spacing ${times}`);
  const warns = sc.log.lines.filter((l) => l.status === 409);
  assert.equal(warns.length, 2);
  assert.equal(warns[0]!.server_text, 'Exceeded maximum number of sessions per token');
  assertSame(delivered(sink, 'audit'), sim.servedKeys('audit'), 'audit');
});

test('401 for one service: error 100 with the server text, that service stops, the others stream', async (t) => {
  const sim = await startPodSimulator({ ...simBase(), rate: 200, refuseTypes: { audit: { status: 401, body: 'Error: Authentication failed.' } } });
  t.after(() => sim.close());
  const sink = new MemorySink();
  const sc = await startSidecar({ cfg: podConfig(sim), stateDir: tmpDir(), sink });
  await until(() => delivered(sink, 'message').length >= 200 && delivered(sink, 'maillog').length >= 200, 'message and maillog events');
  await new Promise((r) => setTimeout(r, 1200)); // a request period: audit must not try again
  const h = sc.pipeline.health.get('pod-test', 'audit')!;
  assert.equal(h.status, 'failed');
  assert.match(h.reason!, /HTTP 401: "Error: Authentication failed\."/);
  assert.equal(sim.sessions.filter((s) => s.type === 'audit').length, 1, 'no retry after 401');
  const err = sc.log.lines.find((l) => l.level === 50 && l.service === 'audit')!;
  assert.equal(err.code, ErrorCode.BAD_CREDENTIALS);
  assert.equal(err.status, 401);
  assert.equal(sc.pipeline.health.get('pod-test', 'message')!.status, 'ok');
  await sc.stop();
  assertSame(delivered(sink, 'message'), sim.servedKeys('message'), 'message');
});

test('a bad api key everywhere: every service fails with 100, the key is never printed', async (t) => {
  const sim = await startPodSimulator({ ...simBase(), apiKey: 'the-right-key-5b1f', rate: 10 });
  t.after(() => sim.close());
  const sc = await startSidecar({ cfg: { ...podConfig(sim), credentials: { cluster_id: sim.credentials.cluster_id, api_key: API_KEY } }, stateDir: tmpDir() });
  await until(() => ['message', 'maillog', 'audit'].every((s) => sc.pipeline.health.get('pod-test', s)?.status === 'failed'), 'all failed');
  await sc.pipeline.done;
  assert.ok(sc.log.lines.some((l) => /^Source failed and stopped; other inputs go on\./.test(String(l.msg))));
  await sc.stop();
  assert.ok(!sc.log.text().includes(API_KEY));
  assert.equal(sim.sessions.length, 3);
});

test('unsorted and repeated frames: each event once, the cursor is the highest ts not the last', async (t) => {
  const sim = await startPodSimulator({ ...simBase(), rate: { message: 300, maillog: 0, audit: 0 }, duplicateEvery: 4, unsortedFraction: 0.5, unsortedMs: 20_000 });
  t.after(() => sim.close());
  const sink = new MemorySink();
  const sc = await startSidecar({ cfg: podConfig(sim, {}, { message: {} }), stateDir: tmpDir(), sink });
  await until(() => delivered(sink, 'message').length >= 500, 'events');
  await sc.stop();
  assertSame(delivered(sink, 'message'), sim.servedKeys('message'), 'message');
  assert.ok(sim.stats.duplicatesSent > 50);
  assert.equal(sc.pipeline.counters()[0]!.duplicates, sim.stats.duplicatesSent);
  const msgs = sink.records.map((r) => r.record.message as string);
  const last = (JSON.parse(msgs.at(-1)!) as { ts: string }).ts;
  const c = sc.pipeline.counters()[0]!.cursor as PodCursor;
  assert.equal(c.ts, maxTs(msgs));
  assert.ok(msgs.some((m) => (JSON.parse(m) as { ts: string }).ts !== last));
});

test('a 2 MiB frame is delivered whole; over the output limit it is dead-lettered whole; the stream goes on', async (t) => {
  const sim = await startPodSimulator({ ...simBase(), rate: { message: 100, maillog: 0, audit: 0 }, largeEvery: 15, largeFrameBytes: 2 * 1_048_576 });
  t.after(() => sim.close());
  const big = (m: string) => m.length >= 2 * 1_048_576 - 100;
  {
    const sink = new MemorySink();
    const sc = await startSidecar({ cfg: podConfig(sim, {}, { message: {} }), stateDir: tmpDir(), sink });
    await until(() => sink.records.filter((r) => big(r.record.message as string)).length >= 2, 'two large events');
    await sc.stop();
    for (const r of sink.records.filter((x) => big(x.record.message as string))) {
      const m = r.record.message as string;
      const guid = (JSON.parse(m) as { guid: string }).guid;
      const sent = findEvent(sim, 'message', guid);
      assert.equal(m, sent, 'byte for byte');
    }
    assertSame(delivered(sink, 'message'), sim.servedKeys('message'), 'message');
  }
  {
    const dir = tmpDir();
    const sink = new MemorySink({ maxRecordBytes: 1_048_576 });
    const sc = await startSidecar({ cfg: podConfig(sim, {}, { message: {} }), stateDir: dir, sink });
    await until(() => (sc.pipeline.counters()[0]?.deadLettered ?? 0) >= 1 && sink.records.length > 100, 'a dead letter and more events');
    await sc.stop();
    const dead = readFileSync(sc.pipeline.deadLetterPath, 'utf8').trim().split('\n').map((l) => JSON.parse(l) as { raw: string; reason: string });
    assert.ok(dead.length >= 1);
    for (const d of dead) {
      assert.ok(big(d.raw), 'kept whole');
      assert.match(d.reason, /larger than the largest frame/);
      JSON.parse(d.raw);
    }
    assert.ok(!sink.records.some((r) => big(r.record.message as string)));
  }
});

test('a frame over max_frame_bytes ends the session with an error naming the limit, never silently', async (t) => {
  const sim = await startPodSimulator({ ...simBase(), rate: { message: 50, maillog: 0, audit: 0 }, largeEvery: 10, largeFrameBytes: 2 * 1_048_576 });
  t.after(() => sim.close());
  const sc = await startSidecar({ cfg: podConfig(sim, { max_frame_bytes: 1_048_576 }, { message: {} }), stateDir: tmpDir() });
  await until(() => sc.log.lines.some((l) => String(l.err ?? '').includes('larger than max_frame_bytes')), 'the error');
  const line = sc.log.lines.find((l) => String(l.err ?? '').includes('larger than max_frame_bytes'))!;
  assert.match(String(line.err), /1048576 bytes/);
  assert.equal(sc.pipeline.health.get('pod-test', 'message')?.status, 'degraded');
  await sc.stop();
});

test('malformed frames are dead-lettered and counted; the session goes on', async (t) => {
  const sim = await startPodSimulator({ ...simBase(), rate: { maillog: 300, message: 0, audit: 0 }, malformedEvery: 40 });
  t.after(() => sim.close());
  const sink = new MemorySink();
  const sc = await startSidecar({ cfg: podConfig(sim, {}, { maillog: {} }), stateDir: tmpDir(), sink });
  await until(() => sim.stats.malformedSent >= 12, 'malformed frames of every kind');
  await sc.stop();
  const c = sc.pipeline.counters()[0]!;
  assert.equal(c.deadLettered, sim.stats.malformedSent);
  const dead = readFileSync(sc.pipeline.deadLetterPath, 'utf8').trim().split('\n').map((l) => JSON.parse(l) as { reason: string; raw: string });
  assert.equal(dead.length, sim.stats.malformedSent);
  for (const re of [/not JSON/, /array/, /no usable "id"/, /unparsable "ts"/, /no usable "ts"/]) assert.ok(dead.some((d) => re.test(d.reason)), String(re));
  assertSame(delivered(sink, 'maillog'), sim.servedKeys('maillog'), 'maillog');
  assert.equal(sim.sessions.length, 1, 'one session throughout');
  const stats = sc.log.lines.find((l) => l.msg === 'PoD session ended; statistics.')!.stats as Record<string, number>;
  assert.equal(stats.dead_lettered, sim.stats.malformedSent);
});

test('no pong: the session is ended and reopened', async (t) => {
  const sim = await startPodSimulator({ ...simBase(), rate: 0, ignorePings: true });
  t.after(() => sim.close());
  const sc = await startSidecar({ cfg: podConfig(sim, { ping_interval_secs: 1, pong_timeout_secs: 1 }, { audit: {} }), stateDir: tmpDir() });
  await until(() => sim.sessions.length >= 2, 'a second session');
  assert.ok(sc.log.lines.some((l) => /did not answer a ping within 1 s/.test(String(l.err))));
  await sc.stop();
});

function findEvent(sim: Awaited<ReturnType<typeof startPodSimulator>>, type: PodStreamType, key: string): string | undefined {
  for (const r of sim.sessions) {
    if (r.type !== type || r.firstSeq === undefined) continue;
    for (let s = r.firstSeq; s < r.nextSeq!; s++) {
      const e = sim.events.event(type, s);
      if (e.key === key) return e.text;
    }
  }
  return undefined;
}
