/**
 * A stalled forward receiver: Fluent Bit stops acknowledging while the log stream keeps
 * offering events as fast as it can. The forward queue fills, the pipeline stops pulling, the
 * PoD stream fills its bounded buffer and pauses its socket, and TCP holds the server back:
 * memory stays flat. When acks come back, everything the server sent arrives, once.
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import v8 from 'node:v8';
import vm from 'node:vm';
import { startPodSimulator } from '../../../plugin/simulator/pod/index.ts';
import { ForwardSink } from '../../../plugin/output/forward/sink.ts';
import { ForwardReceiver, forwardConfig } from '../../helpers/forward-receiver.ts';
import { tmpDir } from '../../helpers/tmp.ts';
import { podConfig, repeats, simBase, startSidecar, until } from './harness.ts';
import type { ServiceStream } from '../../../plugin/sources/pod/stream.ts';
import type { PodSource } from '../../../plugin/sources/pod/source.ts';

v8.setFlagsFromString('--expose-gc');
const gc = vm.runInNewContext('gc') as () => void;

function heapAfterGc(): number {
  gc();
  gc();
  return process.memoryUsage().heapUsed;
}

test('stalled forward receiver: the socket is paused, memory stays flat, all events arrive on resume', async (t) => {
  // About 2 KB per message event, offered at 20,000/s: ~40 MB/s if nothing held the server back.
  const sim = await startPodSimulator({ ...simBase(), rate: { message: 20_000, maillog: 0, audit: 0 }, perMessageDeflate: false });
  t.after(() => sim.close());
  const receiver = new ForwardReceiver();
  await receiver.listen(0);
  t.after(() => receiver.close());
  const sink = new ForwardSink(forwardConfig({ port: receiver.port, queue_max_bytes: 2 * 1_048_576, chunk_bytes: 256 * 1024, max_chunks_in_flight: 4 }));
  const cfg = podConfig(sim, { max_buffered_frames: 500, max_buffered_bytes: 2 * 1_048_576, batch_max_events: 200 }, { message: {} });
  const sc = await startSidecar({ cfg, stateDir: tmpDir(), sink });
  const stream = () => (sc.source as PodSource).streams[0] as ServiceStream;

  await until(() => receiver.records.length >= 2_000, 'events flowing');
  receiver.holdAcks();
  await until(() => stream()?.paused === true, 'the socket paused');
  await new Promise((r) => setTimeout(r, 300));
  const sentAtStall = sim.sessions[0]!.framesSent;
  const heap1 = heapAfterGc();
  await new Promise((r) => setTimeout(r, 2_500));
  const heap2 = heapAfterGc();
  const sentLater = sim.sessions[0]!.framesSent;
  const available = sim.events.count('message', Date.now()) - sim.sessions[0]!.nextSeq!;

  // The server had tens of thousands of events ready and could not push them.
  assert.ok(available > 30_000, `${available} events waiting on the server`);
  assert.ok(sentLater - sentAtStall < 2_000, `the server was held back (${sentLater - sentAtStall} frames during the stall)`);
  assert.ok(stream().buffered.frames <= cfg.max_buffered_frames + 200, `buffer bounded (${stream().buffered.frames} frames)`);
  assert.ok(heap2 - heap1 < 8 * 1_048_576, `heap grew ${((heap2 - heap1) / 1_048_576).toFixed(1)} MB during the stall`);

  receiver.autoAck();
  receiver.releaseAcks();
  await until(() => stream().paused === false && receiver.records.length > sentLater, 'flowing again');
  await sc.stop();
  const keys = receiver.records.map((r) => (JSON.parse(r.record.message as string) as { guid: string }).guid);
  assert.deepEqual(repeats(keys), []);
  const served = sim.servedKeys('message');
  const got = new Set(keys);
  assert.equal([...served].filter((k) => !got.has(k)).length, 0, 'every event the server sent arrived');
  assert.equal(got.size, served.size);
});
