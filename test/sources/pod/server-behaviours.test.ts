/**
 * Two behaviours of the PoD server that once cost events, each through the real source, pipeline
 * and state store:
 *
 *  - an archive hour of 72,000 events read while the output withholds its acks for longer than
 *    the idle timeout: the socket is paused, the server goes quiet, and that silence is not the end
 *    of the window (a window ends on the server's close 1000, or a silence while reading);
 *  - several different events under one guid (message) or id (maillog), as the public sample
 *    events have them: each is delivered; frames repeated byte for byte are dropped.
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { startPodSimulator, type PodProfileName } from '../../../plugin/simulator/pod/index.ts';
import { MemorySink } from '../../helpers/memory-sink.ts';
import { tmpDir } from '../../helpers/tmp.ts';
import { OffsetClock, podConfig, simBase, startSidecar, until } from './harness.ts';

const MIN = 60_000;
const HOUR = 60 * MIN;

for (const profile of ['archive-close-1000', 'archive-never-close'] as PodProfileName[]) {
  test(`an archive hour of 72,000 events with the output blocked past the idle timeout: every event delivered (${profile})`, async (t) => {
    // Five minutes into an hour: the hour before is whole in archive mode.
    const clock = new OffsetClock();
    clock.beforeHourEnd(55 * MIN);
    const hour = Math.floor(clock.now() / HOUR) * HOUR - HOUR;
    const sim = await startPodSimulator({ ...simBase(clock), profiles: [profile], rate: { maillog: 20, message: 0, audit: 0 }, historyMs: 70 * MIN, archiveStalenessMs: 1_000 });
    t.after(() => sim.close());
    const cfg = podConfig(sim, { archive_staleness_secs: 2, archive_idle_timeout_secs: 2, per_message_deflate: false, batch_max_events: 1_000, max_buffered_frames: 2_000 }, { maillog: { start_time: new Date(hour).toISOString() } });
    const sink = new MemorySink({ queueMaxBytes: 1_048_576 });
    const sc = await startSidecar({ cfg, stateDir: tmpDir(), sink, clock });
    const first = sim.events.firstAtOrAfter('maillog', hour);
    const end = sim.events.firstAtOrAfter('maillog', hour + HOUR);
    assert.ok(end - first >= 71_000, `${end - first} events in the hour`);
    const texts = () => sink.records.map((r) => r.record.message as string);

    await until(() => sink.records.length >= 10_000, 'the window under way', 30_000);
    const window = sim.sessions.at(-1)!;
    assert.equal(window.mode, 'archive');
    // Six seconds without an ack, three idle timeouts: the server has long stopped sending.
    sink.holdAcks = true;
    await new Promise((r) => setTimeout(r, 4_500));
    const sent = window.eventsSent;
    await new Promise((r) => setTimeout(r, 1_500));
    assert.equal(window.eventsSent, sent, 'the server sent nothing while the socket was paused');
    assert.equal(window.endedAt, undefined, 'the window stayed open');
    sink.holdAcks = false;
    sink.release();

    await until(() => sim.sessions.some((s) => s.mode === 'live' && s.status === 101), 'live after the replay', 60_000);
    await sc.stop();
    const have = new Set(texts());
    let missing = 0;
    for (let seq = first; seq < end; seq++) if (!have.has(sim.events.event('maillog', seq).text)) missing++;
    assert.equal(missing, 0, `${missing} of ${end - first} events of the hour never delivered`);
    assert.equal(texts().length, have.size, 'none delivered twice');
    // The hour was asked once: its first session was not taken for complete at the stall, and
    // needed no second one.
    const asked = sim.sessions.filter((s) => s.mode === 'archive' && s.windowFrom === hour);
    assert.equal(asked.length, 1, `the hour was asked ${asked.length} times`);
  });
}

test('different events sharing a guid or an id are all delivered; frames repeated byte for byte are dropped', async (t) => {
  const sim = await startPodSimulator({ ...simBase(), profiles: ['shared-guid'], duplicateEvery: 5, rate: { message: 200, maillog: 200, audit: 0 }, maxEvents: 1_500, historyMs: 0 });
  t.after(() => sim.close());
  const sink = new MemorySink();
  const sc = await startSidecar({ cfg: podConfig(sim, {}, { message: {}, maillog: {} }), stateDir: tmpDir(), sink });
  const served = (type: 'message' | 'maillog') => [...sim.servedSeqs(type)].map((seq) => sim.events.event(type, seq));
  // Live sessions that have sent their last event, and the sink has as many as were served.
  const done = () => (['message', 'maillog'] as const).every((type) => sim.sessions.some((s) => s.type === type && s.mode === 'live' && (s.nextSeq ?? 0) >= 1_500));
  await until(() => done() && sink.records.length >= served('message').length + served('maillog').length, 'every event', 30_000);
  await sc.stop();
  for (const [type, key] of [['message', 'guid'], ['maillog', 'id']] as const) {
    const events = served(type);
    const got = sink.records.filter((r) => r.record.service === type).map((r) => r.record.message as string);
    const keyOf = (text: string) => (JSON.parse(text) as Record<string, string>)[key]!;
    // The run really has events that differ under one key.
    const byKey = new Map<string, Set<string>>();
    for (const e of events) byKey.set(keyOf(e.text), (byKey.get(keyOf(e.text)) ?? new Set()).add(e.text));
    const shared = [...byKey.values()].filter((texts) => texts.size > 1).reduce((n, texts) => n + texts.size, 0);
    assert.ok(shared >= 200, `${type}: ${shared} events share their ${key} with another`);
    assert.deepEqual(new Set(got), new Set(events.map((e) => e.text)), `${type}: every distinct event delivered`);
    assert.equal(got.length, new Set(got).size, `${type}: none twice`);
  }
  assert.ok(sim.stats.duplicatesSent > 100, `${sim.stats.duplicatesSent} frames repeated`);
  const dropped = sc.pipeline.counters().reduce((n, c) => n + c.duplicates, 0);
  assert.equal(dropped, sim.stats.duplicatesSent, 'every repeated frame dropped as a duplicate');
});
