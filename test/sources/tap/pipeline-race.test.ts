/**
 * For the pipeline's owner (found by the TAP tests, kept here until fixed): Pipeline.#accept checks
 * `inFlight` when it picks the keys to look up in the store, then awaits `seen.has(...)`, then
 * checks `inFlight` again. A batch that commits during that await removes its keys from
 * `inFlight`; those keys were never looked up, so the next batch sends them again. The TAP settle
 * re-query (and the optional look-ahead) yields exactly that pattern: keys of the batch just
 * delivered come back at once. Fix: remember which keys were in flight before the await.
 * Marked `todo` so it reports without failing the suite; drop the option once it passes.
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { Pipeline } from '../../../plugin/pipeline/pipeline.ts';
import { StateStore } from '../../../plugin/state/store.ts';
import { MemorySink } from '../../helpers/memory-sink.ts';
import { ScriptedSource, ev, spec } from '../../helpers/scripted-source.ts';
import { tmpDir } from '../../helpers/tmp.ts';

test('a key committed while the next batch is being checked is not sent twice', { todo: 'Pipeline.#accept in-flight race' }, async () => {
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
