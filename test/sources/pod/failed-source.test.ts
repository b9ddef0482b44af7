/**
 * A PoD source whose batch fails inside the pipeline (here: the dead-letter file cannot be
 * written) is stopped whole: its WebSocket sessions close, so the server stops handing it live
 * events nobody will deliver; health says failed; the stop is unclean, so the next start replays
 * from the committed cursor and everything the server served is delivered.
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { mkdirSync, rmSync } from 'node:fs';
import path from 'node:path';
import { startPodSimulator } from '../../../plugin/simulator/pod/index.ts';
import { MemorySink } from '../../helpers/memory-sink.ts';
import { tmpDir } from '../../helpers/tmp.ts';
import { OffsetClock, delivered, podConfig, repeats, simBase, startSidecar, until } from './harness.ts';

const MIN = 60_000;

test('a source whose batch fails is stopped whole: sessions closed, health failed, unclean stop, every served event delivered after the restart', async (t) => {
  const clock = new OffsetClock();
  const sim = await startPodSimulator({ ...simBase(clock), rate: { maillog: 50, message: 0, audit: 0 }, historyMs: 10 * MIN, firstSessionFrom: 'origin', archiveStalenessMs: 1000 });
  t.after(() => sim.close());
  const cfg = podConfig(sim, { retry_max_secs: 1, archive_staleness_secs: 1 }, { maillog: {} });
  const dir = tmpDir();
  // The dead-letter file is a directory: writing the first rejected frame throws.
  mkdirSync(path.join(dir, 'dead-letter.jsonl'));

  const first = new MemorySink();
  let sc = await startSidecar({ cfg, stateDir: dir, clock, sink: first });
  await until(() => delivered(first, 'maillog').length >= 200, 'the first events');
  assert.equal(sim.sendRaw('maillog', '{"not": "a maillog event"'), 1);
  await until(() => sc.pipeline.health.get('pod-test', 'maillog')?.status === 'failed', 'health failed');
  await until(() => sim.openSessions('maillog') === 0, 'the failed source closed its session');
  // No session is asked for after the failure (a reconnecting stream would consume live events).
  const sessionsAtFailure = sim.sessions.length;
  await until(() => sc.log.lines.some((l) => /Source failed and stopped/.test(String(l.msg))), 'the failure logged');
  await new Promise((r) => setTimeout(r, 1500)); // longer than retry_max_secs: a retry would show
  assert.equal(sim.sessions.length, sessionsAtFailure, 'no reconnect after the failure');
  const r = await sc.stop();
  assert.equal(r.clean, false, 'a failed source makes the stop unclean');
  assert.deepEqual((r as { failedSources?: string[] }).failedSources, ['pod-test']);

  // The operator fixes the disk; the restart replays from the committed cursor.
  rmSync(path.join(dir, 'dead-letter.jsonl'), { recursive: true });
  clock.jump(2 * MIN);
  const second = new MemorySink();
  sc = await startSidecar({ cfg, stateDir: dir, clock, sink: second });
  t.after(() => sc.stop());
  const served = sim.servedKeys('maillog');
  const all = () => [...delivered(first, 'maillog'), ...delivered(second, 'maillog')];
  await until(() => {
    const have = new Set(all());
    for (const k of served) if (!have.has(k)) return false;
    return true;
  }, 'every event served before the failure, delivered', 30_000);
  assert.deepEqual(repeats(delivered(second, 'maillog')), [], 'the replay delivers each event once');
  // The memory sink acknowledges at once: everything the first run delivered was committed, so
  // the replay drops it as a duplicate instead of delivering it again.
  const firstKeys = new Set(delivered(first, 'maillog'));
  assert.deepEqual(delivered(second, 'maillog').filter((k) => firstKeys.has(k)), [], 'nothing committed is delivered again');
  assert.ok(sc.pipeline.counters()[0]!.duplicates > 0, 'the replay re-read what the first run had delivered');
});
