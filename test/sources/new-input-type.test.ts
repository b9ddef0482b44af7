/**
 * What adding a vendor takes: its folder (a descriptor and a source, here test/sources/scripted/)
 * and one registry entry. Config loading, `check`, `state show`, coordination's feeds and /metrics
 * then know the input with no other change.
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { readdirSync, writeFileSync } from 'node:fs';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { loadConfigText } from '../../plugin/config/load.ts';
import { handler as checkHandler } from '../../plugin/cli/check.ts';
import { handler as stateHandler } from '../../plugin/cli/state.ts';
import { feedsOf } from '../../plugin/coordination/feeds.ts';
import { Pipeline } from '../../plugin/pipeline/pipeline.ts';
import { createSources, registerSource } from '../../plugin/sources/registry.ts';
import { StateStore } from '../../plugin/state/store.ts';
import { createMetrics } from '../../plugin/telemetry/http.ts';
import { systemClock } from '../../plugin/util/clock.ts';
import { formatUtc } from '../../plugin/util/time.ts';
import { MemorySink } from '../helpers/memory-sink.ts';
import { tmpDir } from '../helpers/tmp.ts';
import { scriptedSource } from './scripted/index.ts';

const FIRST = Date.UTC(2026, 10, 23, 12);

function configText(stateDir: string): string {
  return `globals: { state_dir: ${stateDir} }
output: { type: stdout }
inputs:
  scripted_lines:
    id: lines-1
    services:
      lines: { lines: [alpha, beta], first_at_ms: ${FIRST} }
`;
}

/** Runs a CLI handler in this process (the test's registry holds the new type), capturing what it prints. */
async function captured(run: () => Promise<number>): Promise<{ code: number; stdout: string; stderr: string }> {
  const out = { stdout: '', stderr: '' };
  const write = { stdout: process.stdout.write, stderr: process.stderr.write };
  process.stdout.write = ((c: string | Uint8Array) => ((out.stdout += String(c)), true)) as typeof process.stdout.write;
  process.stderr.write = ((c: string | Uint8Array) => ((out.stderr += String(c)), true)) as typeof process.stderr.write;
  try {
    return { code: await run(), ...out };
  } finally {
    process.stdout.write = write.stdout;
    process.stderr.write = write.stderr;
  }
}

test('a new input type needs only its own folder and one registry entry: config, check, feeds, /metrics and state show know it', async (t) => {
  const folder = fileURLToPath(new URL('./scripted/', import.meta.url));
  assert.deepEqual(readdirSync(folder).sort(), ['index.ts', 'source.ts'], 'the files a new vendor writes: its descriptor and its source');
  const unregister = registerSource(scriptedSource);
  t.after(unregister);
  const dir = tmpDir('pps-new-input-');
  const stateDir = path.join(dir, 'state');
  const file = path.join(dir, 'c.yaml');
  writeFileSync(file, configText(stateDir));

  // Config: its section is accepted and validated by its own schema, with its defaults.
  const { config } = loadConfigText(configText(stateDir));
  assert.deepEqual(config.inputs['scripted_lines'], { id: 'lines-1', enabled: true, services: { lines: { lines: ['alpha', 'beta'], first_at_ms: FIRST } } });
  assert.throws(
    () => loadConfigText(configText(stateDir).replace('lines: { lines', 'lines: { line')),
    /inputs\.scripted_lines\.services\.lines\.line: unknown key; did you mean "lines"\?/,
  );

  // check: its warnings, prefixed with its section.
  const checked = await captured(() => checkHandler({ config: file }));
  assert.equal(checked.code, 0, checked.stderr);
  assert.match(checked.stdout, /warning: inputs\.scripted_lines: services\.lines\.lines has only 2 lines/);
  assert.match(checked.stdout, /Configuration is valid\./);

  // Coordination: its feeds.
  assert.deepEqual(
    feedsOf(config, 'pps').map((f) => [f.id, f.lease, f.type, f.services]),
    [['lines-1/lines', 'pps-lines-1-lines', 'scripted_lines', ['lines']]],
  );

  // Run: its source collects; /metrics shows its own series and its lag from its cursor's time.
  const store = await StateStore.open(stateDir);
  const sink = new MemorySink();
  const pipeline = new Pipeline({ store, sink, sources: await createSources(config) });
  const registry = createMetrics({ pipeline, sink, store, clock: systemClock });
  await pipeline.start();
  let metrics: string;
  try {
    for (let i = 0; i < 200 && pipeline.counters()[0]?.sent !== 2; i++) await new Promise((r) => setTimeout(r, 10));
    assert.equal(pipeline.counters()[0]?.sent, 2, 'both lines were delivered and committed');
    metrics = await registry.metrics();
  } finally {
    await pipeline.stop(1_000);
    await store.close();
  }
  assert.match(metrics, /# TYPE proofpoint_sidecar_scripted_lines_total counter/);
  assert.match(metrics, /proofpoint_sidecar_scripted_lines_total\{input_id="lines-1",service="lines"\} 2/);
  const lag = /proofpoint_sidecar_lag_seconds\{input_id="lines-1",source="scripted_lines",service="lines"\} (\S+)/.exec(metrics);
  assert.ok(lag, metrics);
  const expected = (Date.now() - (FIRST + 1000)) / 1000;
  assert.ok(Math.abs(Number(lag[1]) - expected) < 60, `lag ${lag[1]} s is measured from the last line's time (${expected} s)`);

  // state show: its cursor as its view reads it (epoch ms as UTC) and where it stands.
  const shown = await captured(() => stateHandler({ action: 'show', config: file, input: 'scripted_lines' }));
  assert.equal(shown.code, 0, shown.stderr);
  const report = JSON.parse(shown.stdout) as { services: Array<{ input: string; service: string; cursor: unknown; backfill: { position: string } }> };
  assert.deepEqual(report.services.map((s) => [s.input, s.service, s.cursor]), [['lines-1', 'lines', { count: 2, last_at_ms: formatUtc(FIRST + 1000) }]]);
  assert.equal(report.services[0]!.backfill.position, formatUtc(FIRST + 1000));
});
