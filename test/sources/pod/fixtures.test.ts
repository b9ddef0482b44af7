/**
 * Every real sample event in ../shared/fixtures/pod/ (verbatim from elastic/integrations) goes
 * through parsing, identity, time and record building without error: frame by frame through the
 * real source, pipeline and an in-memory sink. Skipped when the fixtures folder is absent.
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { existsSync, readFileSync } from 'node:fs';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { frameKey, parseFrame, POD_KEY_FIELD } from '../../../plugin/sources/pod/identity.ts';
import { parseTimestamp } from '../../../plugin/util/time.ts';
import { startPodSimulator } from '../../../plugin/simulator/pod/index.ts';
import { MemorySink } from '../../helpers/memory-sink.ts';
import { tmpDir } from '../../helpers/tmp.ts';
import { podConfig, simBase, startSidecar, until } from './harness.ts';
import type { PodServiceName } from '../../../plugin/sources/pod/config.ts';

const root = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '../../..');
const dir = path.resolve(root, '../shared/fixtures/pod');
const present = existsSync(dir);
const SERVICES: PodServiceName[] = ['message', 'maillog', 'audit'];

function lines(service: PodServiceName): string[] {
  return readFileSync(path.join(dir, `${service}.ndjson`), 'utf8').split('\n').filter((l) => l.trim() !== '');
}

test('fixtures: every event parses, with its identity and its ts to the microsecond', { skip: !present && 'no ../shared/fixtures/pod' }, () => {
  for (const service of SERVICES) {
    const all = lines(service);
    assert.ok(all.length > 10, `${service}: ${all.length} events`);
    for (const [i, text] of all.entries()) {
      const r = parseFrame(service, text);
      assert.ok(r.ok, `${service} line ${i + 1}: ${r.ok ? '' : r.reason}`);
      const obj = JSON.parse(text) as Record<string, string>;
      assert.equal(typeof obj[POD_KEY_FIELD[service]], 'string', 'the id field is there');
      assert.equal(r.frame.event.key, frameKey(text), 'the de-dup key is the content, not the id');
      assert.deepEqual(r.frame.time, parseTimestamp(obj.ts!));
      assert.equal(r.frame.event.message, text, 'the frame text, unchanged');
      // Microseconds survive: the fraction of ts is the nanoseconds / 1000.
      const frac = /\.(\d+)/.exec(obj.ts!)![1]!;
      assert.equal(r.frame.time.nsec, Number(frac.padEnd(9, '0')));
    }
  }
});

test('fixtures: every event becomes a record through source, pipeline and sink', { skip: !present && 'no ../shared/fixtures/pod' }, async (t) => {
  const sim = await startPodSimulator({ ...simBase(), rate: 0 });
  t.after(() => sim.close());
  const sink = new MemorySink();
  const sc = await startSidecar({ cfg: podConfig(sim), stateDir: tmpDir(), sink });
  await until(() => SERVICES.every((s) => sim.openSessions(s) === 1), 'sessions open');
  const expected = new Map<string, { text: string; service: PodServiceName }>();
  let total = 0;
  for (const service of SERVICES) {
    for (const text of lines(service)) {
      sim.sendRaw(service, text);
      total++;
      // The anonymised samples reuse ids with different content: each different event is
      // delivered, only exact repeats are dropped.
      const key = `${service}:${text}`;
      if (!expected.has(key)) expected.set(key, { text, service });
    }
  }
  const received = () => sc.pipeline.counters().reduce((n, c) => n + c.received, 0);
  await until(() => received() === total && sc.pipeline.pendingBatches() === 0, 'every frame through the pipeline');
  await sc.stop();
  const counters = sc.pipeline.counters();
  assert.equal(counters.reduce((n, c) => n + c.deadLettered, 0), 0, 'none dead-lettered');
  assert.equal(sink.records.length, expected.size);
  assert.equal(counters.reduce((n, c) => n + c.duplicates, 0), total - expected.size);
  for (const r of sink.records) {
    const service = r.record.service as PodServiceName;
    const obj = JSON.parse(r.record.message as string) as Record<string, string>;
    const want = expected.get(`${service}:${r.record.message as string}`)!;
    assert.equal(r.record.message, want.text);
    assert.equal(r.tag, `mail.proofpoint.pod.${service}`);
    assert.equal(r.record.devo_tag, r.tag);
    assert.deepEqual(r.time, parseTimestamp(obj.ts!));
  }
});
