/**
 * Regression (found by the TAP tests): a batch that commits while the next batch's keys are being
 * looked up in the store must not let those keys through. In-flight keys are decided before the
 * look-up. The TAP settle re-query yields exactly this pattern: keys of the batch just delivered
 * come back at once.
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { Pipeline } from '../../plugin/pipeline/pipeline.ts';
import { StateStore } from '../../plugin/state/store.ts';
import { MemorySink } from '../helpers/memory-sink.ts';
import { ScriptedSource, ev, spec } from '../helpers/scripted-source.ts';
import { tmpDir } from '../helpers/tmp.ts';

test('a key committed while the next batch is being checked is not sent twice', async () => {
  let twice = 0;
  for (let run = 0; run < 10; run++) {
    const store = await StateStore.open(tmpDir());
    const sink = new MemorySink({ holdAcks: true });
    const src = new ScriptedSource('i', [spec('s')], async function* () {
      yield { service: 's', pullingId: 1, events: [ev('K'), ev('A')], cursor: 1 };
      while (sink.held.length < 1) await new Promise((r) => setTimeout(r, 1));
      sink.holdAcks = false;
      sink.release(); // batch 1 acknowledged: its commit starts now
      yield { service: 's', pullingId: 2, events: [ev('K'), ev('B')], cursor: 2 };
    });
    const p = new Pipeline({ store, sink, sources: [src] });
    await p.start();
    await p.done;
    await p.stop(1000);
    await store.close();
    if (sink.records.filter((r) => r.record['message'] === '{"id":"K"}').length > 1) twice++;
  }
  assert.equal(twice, 0, `K delivered twice in ${twice} of 10 runs`);
});
