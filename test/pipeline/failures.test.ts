/**
 * Failures inside the pipeline: a source whose batch fails is stopped whole (its iterator closed,
 * so nothing it still reads is taken for delivered) and the stop is unclean; one event the sink
 * cannot encode is dead-lettered and its batch goes on.
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { mkdirSync, readFileSync } from 'node:fs';
import path from 'node:path';
import { Pipeline } from '../../plugin/pipeline/pipeline.ts';
import { StateStore, scopeOf } from '../../plugin/state/store.ts';
import type { OutputRecord } from '../../plugin/output/sink.ts';
import type { SourceContext } from '../../plugin/sources/source.ts';
import { MemorySink } from '../helpers/memory-sink.ts';
import { ScriptedSource, ev, spec } from '../helpers/scripted-source.ts';
import { tmpDir } from '../helpers/tmp.ts';

test('a source whose batch fails is stopped whole: iterator closed, signal aborted, health failed, stop unclean', async () => {
  const dir = tmpDir();
  mkdirSync(path.join(dir, 'dead-letter.jsonl')); // the dead-letter write throws EISDIR
  const store = await StateStore.open(dir);
  const sink = new MemorySink();
  let closed = false;
  let abortedAtClose = false;
  let pulledAfterFailure = 0;
  const src = new ScriptedSource('i', [spec('s')], async function* (ctx: SourceContext) {
    try {
      yield { service: 's', pullingId: 1, events: [ev('a')], cursor: 1 };
      yield { service: 's', pullingId: 1, events: [ev('b')], rejected: [{ reason: 'not JSON', raw: '{' }], cursor: 2 };
      for (;;) {
        pulledAfterFailure++;
        yield { service: 's', pullingId: 1, events: [ev(`later-${pulledAfterFailure}`)], cursor: 3 };
      }
    } finally {
      closed = true;
      abortedAtClose = ctx.signal.aborted;
    }
  });
  const p = new Pipeline({ store, sink, sources: [src] });
  await p.start();
  await p.done;
  assert.equal(closed, true, 'the source iterator was closed (its sessions with it)');
  assert.equal(abortedAtClose, true, 'the source signal was aborted before the close');
  assert.equal(pulledAfterFailure, 0, 'nothing pulled after the failure');
  assert.equal(p.health.get('i', 's')?.status, 'failed');
  const r = await p.stop(1_000);
  assert.deepEqual(r, { clean: false, uncommittedBatches: 0, failedSources: ['i'] });
  assert.equal((await store.getCursor('i', 's'))?.cursor, 1, 'the failed batch never committed');
  await store.close({ clean: r.clean });
  const again = await StateStore.open(dir);
  assert.equal(again.uncleanShutdown, true, 'the next start recovers as after a crash');
  await again.close();
});

test('an event the sink cannot encode is dead-lettered with the reason; the rest of its batch is delivered and commits', async () => {
  const dir = tmpDir();
  const store = await StateStore.open(dir);
  class PickySink extends MemorySink {
    override encode(rec: OutputRecord): Buffer {
      if (rec.record.message === '{"id":"poison"}') throw new TypeError('cannot encode this one');
      return super.encode(rec);
    }
  }
  const sink = new PickySink();
  const src = new ScriptedSource('i', [spec('s')], [{ service: 's', pullingId: 1, events: [ev('a'), ev('poison'), ev('b')], cursor: 1 }]);
  const p = new Pipeline({ store, sink, sources: [src] });
  await p.start();
  await p.done;
  const r = await p.stop(1_000);
  assert.equal(r.clean, true);
  assert.deepEqual(sink.records.map((x) => x.record.message), ['{"id":"a"}', '{"id":"b"}']);
  const lines = readFileSync(p.deadLetterPath, 'utf8').trim().split('\n').map((l) => JSON.parse(l));
  assert.equal(lines.length, 1);
  assert.equal(lines[0].raw, '{"id":"poison"}');
  assert.match(lines[0].reason, /cannot be encoded: cannot encode this one/);
  assert.equal((await store.getCursor('i', 's'))?.cursor, 1);
  // Remembered like a delivered event: a re-read is a duplicate, not a second dead letter.
  assert.deepEqual(await store.seen.has(scopeOf('i', 's'), ['poison']), [true]);
  await store.close();
});

test('an event time an EventTime cannot carry is clamped and the record says so', async () => {
  const store = await StateStore.open(tmpDir());
  const sink = new MemorySink();
  const src = new ScriptedSource('i', [spec('s')], [
    {
      service: 's',
      pullingId: 1,
      events: [
        { key: 'old', message: '{"id":"old"}', time: { sec: -86_400, nsec: 0 } },
        { key: 'far', message: '{"id":"far"}', time: { sec: 2 ** 33, nsec: 5 } },
        ev('now'),
      ],
      cursor: 1,
    },
  ]);
  const p = new Pipeline({ store, sink, sources: [src] });
  await p.start();
  await p.done;
  await p.stop(1_000);
  assert.deepEqual(
    sink.records.map((x) => [x.record.message, x.time, x.record.time_clamped]),
    [
      ['{"id":"old"}', { sec: 0, nsec: 0 }, true],
      ['{"id":"far"}', { sec: 0xfffffffd, nsec: 999_999_999 }, true],
      ['{"id":"now"}', ev('now').time, undefined],
    ],
  );
  await store.close();
});
