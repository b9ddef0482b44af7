import { test } from 'node:test';
import assert from 'node:assert/strict';
import { Pipeline } from '../../plugin/pipeline/pipeline.ts';
import { StateStore } from '../../plugin/state/store.ts';
import { startHttpServer } from '../../plugin/telemetry/http.ts';
import { systemClock } from '../../plugin/util/clock.ts';
import { MemorySink } from '../helpers/memory-sink.ts';
import { ScriptedSource, ev, spec } from '../helpers/scripted-source.ts';
import { tmpDir } from '../helpers/tmp.ts';

test('/healthz, /readyz and /metrics reflect the pipeline, the output and service health', async () => {
  const store = await StateStore.open(tmpDir());
  const sink = new MemorySink();
  const src = new ScriptedSource('100002', [spec('maillog')], async function* (ctx) {
    ctx.metrics.inc('pod_conflicts_total', { service: 'maillog' });
    ctx.metrics.inc('pod_conflicts_total', { service: 'maillog' });
    yield { service: 'maillog', pullingId: 1, events: [ev('a'), ev('b'), ev('a')], cursor: { ts: '2026-11-23T11:00:00.000000-0100' } };
    await new Promise((r) => ctx.signal.addEventListener('abort', r, { once: true }));
  }, 'proofpoint_on_demand');
  const pipeline = new Pipeline({ store, sink, sources: [src] });
  const server = await startHttpServer('127.0.0.1:0', { pipeline, sink, store, clock: systemClock });
  await pipeline.start();
  try {
    const health = await fetch(`${server.url}/healthz`);
    assert.equal(health.status, 200);

    for (let i = 0; i < 100 && pipeline.counters()[0]!.sent < 2; i++) await new Promise((r) => setTimeout(r, 10));
    const ready = await fetch(`${server.url}/readyz`);
    assert.equal(ready.status, 200, await ready.clone().text());

    const metrics = await (await fetch(`${server.url}/metrics`)).text();
    assert.match(metrics, /proofpoint_sidecar_events_received_total\{input_id="100002",source="proofpoint_on_demand",service="maillog"\} 3/);
    assert.match(metrics, /proofpoint_sidecar_events_sent_total\{input_id="100002",source="proofpoint_on_demand",service="maillog"\} 2/);
    assert.match(metrics, /proofpoint_sidecar_duplicates_total\{input_id="100002",source="proofpoint_on_demand",service="maillog"\} 1/);
    assert.match(metrics, /proofpoint_sidecar_lag_seconds\{input_id="100002",source="proofpoint_on_demand",service="maillog"\} \d+/);
    assert.match(metrics, /proofpoint_sidecar_output_connected 1/);
    assert.match(metrics, /# TYPE proofpoint_sidecar_pod_conflicts_total counter/);
    assert.match(metrics, /proofpoint_sidecar_pod_conflicts_total\{input_id="100002",service="maillog"\} 2/);
    assert.match(metrics, /proofpoint_sidecar_process_resident_memory_bytes \d+/);

    pipeline.health.set('100002', 'maillog', 'failed', 'POD answered 401: invalid token');
    const notReady = await fetch(`${server.url}/readyz`);
    assert.equal(notReady.status, 503);
    assert.match(await notReady.text(), /100002\/maillog failed: POD answered 401/);
    assert.equal((await fetch(`${server.url}/nope`)).status, 404);
  } finally {
    await pipeline.stop(1_000);
    await server.close();
    await store.close();
  }
});
