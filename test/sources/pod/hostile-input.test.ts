/**
 * One bad PoD event never stops its feed: times an EventTime cannot carry, frames nested deeper
 * than any recursion could follow, through the real forward encoder to a forward receiver.
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { readFileSync } from 'node:fs';
import { startPodSimulator } from '../../../plugin/simulator/pod/index.ts';
import { ForwardSink } from '../../../plugin/output/forward/sink.ts';
import { compactJson } from '../../../plugin/sources/pod/identity.ts';
import { ForwardReceiver, forwardConfig } from '../../helpers/forward-receiver.ts';
import { tmpDir } from '../../helpers/tmp.ts';
import { podConfig, simBase, startSidecar, until } from './harness.ts';

const FIXTURES = new URL('../../../../shared/fixtures/pod/', import.meta.url);

async function sidecarWithReceiver(t: { after(fn: () => unknown): void }) {
  const sim = await startPodSimulator({ ...simBase(), rate: { maillog: 0, message: 20, audit: 0 }, historyMs: 1000 });
  const receiver = new ForwardReceiver();
  await receiver.listen(0);
  const sink = new ForwardSink(forwardConfig({ port: receiver.port }));
  const sc = await startSidecar({ cfg: podConfig(sim, {}, { message: {} }), stateDir: tmpDir(), sink });
  // The sidecar first (it drains to the receiver), then what it talks to.
  t.after(async () => {
    await sc.stop();
    await receiver.close();
    await sim.close();
  });
  const guids = () => receiver.records.map((r) => (JSON.parse(r.record.message as string) as { guid: string }).guid);
  await until(() => receiver.records.length >= 5, 'the first events');
  return { sim, receiver, sc, guids };
}

test('events dated before 1970 or after 2106 are delivered with a clamped time that says so; the stream goes on', async (t) => {
  const { sim, receiver, sc, guids } = await sidecarWithReceiver(t);
  const frames = {
    'before-1970': { guid: 'before-1970', ts: '1969-07-20T20:17:40.000000+0000' },
    'after-2106': { guid: 'after-2106', ts: '2200-01-01T00:00:00.123456+0000' },
  };
  for (const f of Object.values(frames)) sim.sendRaw('message', JSON.stringify(f));
  const n = receiver.records.length;
  await until(() => guids().includes('after-2106') && receiver.records.length >= n + 22, 'both delivered, and the stream going on');
  const byGuid = new Map(receiver.records.map((r) => [(JSON.parse(r.record.message as string) as { guid: string }).guid, r]));
  const early = byGuid.get('before-1970')!;
  assert.deepEqual(early.time, { sec: 0, nsec: 0 });
  assert.equal(early.record.time_clamped, true);
  assert.equal(early.record.message, JSON.stringify(frames['before-1970']), 'the vendor time stays in the message');
  const late = byGuid.get('after-2106')!;
  assert.deepEqual(late.time, { sec: 0xfffffffd, nsec: 999_999_999 });
  assert.equal(late.record.time_clamped, true);
  const ordinary = receiver.records.find((r) => r.record.time_clamped === undefined);
  assert.ok(ordinary, 'events with their own time carry no time_clamped');
  assert.equal(sc.pipeline.health.get('pod-test', 'message')?.status, 'ok');
  assert.equal(sc.pipeline.counters()[0]!.deadLettered, 0);
});

test('a frame nested 100,000 levels deep with line breaks is delivered compacted; the stream goes on', async (t) => {
  const { sim, receiver, sc, guids } = await sidecarWithReceiver(t);
  const depth = 100_000;
  const deep = `{\n  "guid": "deep",\n  "ts": "2024-05-22T12:10:03.058340-0700",\n  "x": ${'{ "a": '.repeat(depth)}1${' }'.repeat(depth)}\n}`;
  sim.sendRaw('message', deep);
  const n = receiver.records.length;
  await until(() => guids().includes('deep') && receiver.records.length >= n + 21, 'the deep frame delivered, and the stream going on');
  const got = receiver.records.find((r) => (r.record.message as string).includes('"guid":"deep"'))!;
  const message = got.record.message as string;
  assert.ok(!/\s/.test(message), 'no whitespace left outside strings');
  assert.equal(message, `{"guid":"deep","ts":"2024-05-22T12:10:03.058340-0700","x":${'{"a":'.repeat(depth)}1${'}'.repeat(depth)}}`);
  assert.equal(sc.pipeline.health.get('pod-test', 'message')?.status, 'ok');
});

test('compaction removes only the whitespace between tokens (fixtures, pretty-printed)', () => {
  for (const file of ['message.ndjson', 'maillog.ndjson', 'audit.ndjson']) {
    for (const line of readFileSync(new URL(file, FIXTURES), 'utf8').split('\n').filter((l) => l.trim() !== '')) {
      const pretty = JSON.stringify(JSON.parse(line), null, 2);
      assert.equal(compactJson(pretty), JSON.stringify(JSON.parse(line)), file);
    }
  }
  // Whitespace, quotes and escaped quotes inside strings are kept as written.
  assert.equal(compactJson('{ "a b" : "x \\" y\\\\" ,\n "c":\t[ 1 , 2 ] }'), '{"a b":"x \\" y\\\\","c":[1,2]}');
});
