/**
 * The operational endpoints on `globals.http.listen` (loopback by default):
 *   /healthz  the process is alive (200)
 *   /readyz   state open and taking commits, output connected, no service in a fatal error
 *             (200, else 503 with why)
 *   /metrics  Prometheus text format
 *   /state    what `state show` prints, as JSON (`?input=ID&service=NAME` narrow it): the CLI
 *             asks here while `run` holds the state's lock
 * Metrics are read from the pipeline, the sink and the health registry at scrape time, so the hot
 * path counts nothing twice. Every series a service, the output or an input type has exists from
 * the first scrape: counters at 0, `lag_seconds` measured from the configured start (see
 * `lagFrom`); docs/operations.md lists them, and test/telemetry/metrics-docs.test.ts holds the two
 * to each other.
 */
import http from 'node:http';
import type { AddressInfo } from 'node:net';
import { Counter, Gauge, Registry, collectDefaultMetrics } from 'prom-client';
import { sourceMetricDecls } from './source-metrics.ts';
import { descriptorOf } from '../sources/registry.ts';
import type { Sink } from '../output/sink.ts';
import type { Pipeline } from '../pipeline/pipeline.ts';
import type { StateStore } from '../state/store.ts';
import type { Clock } from '../util/clock.ts';
import { parseTimestampMs } from '../util/time.ts';
import type { FeedLeaseStatus } from '../coordination/coordinator.ts';
import { stateReport } from '../state/report.ts';
import type { BackfillSnapshot } from './progress.ts';

export interface HttpDeps {
  pipeline: Pipeline;
  sink: Sink;
  store: StateStore;
  clock: Clock;
  /** With coordination on: the feeds and their Leases. */
  coordinator?: { identity: string; status(): FeedLeaseStatus[] };
  /** When the sidecar started (ms); default: when the metrics are created. */
  startedAt?: number;
}

export interface Readiness {
  ready: boolean;
  reasons: string[];
  /** With coordination on: what this replica pulls (a replica holding none is a ready standby). */
  notes: string[];
}

export function readiness(d: HttpDeps): Readiness {
  const reasons: string[] = [];
  if (d.store.closed) reasons.push('state store is closed');
  if (!d.sink.stats().connected) reasons.push(`output (${d.sink.kind}) is not connected`);
  for (const h of d.pipeline.health.all()) {
    if (h.status === 'failed') reasons.push(`${h.input}/${h.service} failed: ${h.reason ?? 'fatal error'}`);
    else if (h.commitFailing !== undefined) reasons.push(`${h.input}/${h.service}: state commits are failing (${h.commitFailing})`);
  }
  const notes: string[] = [];
  if (d.coordinator) {
    const held = d.coordinator.status().filter((f) => f.held);
    notes.push(`replica ${d.coordinator.identity} holds ${held.length === 0 ? 'no feed (standby)' : held.map((f) => `${f.feed} (Lease ${f.lease})`).join(', ')}`);
  }
  return { ready: reasons.length === 0, reasons, notes };
}

type Row = { labels: Record<string, string>; value: number };

/**
 * A counter or gauge whose values are read at scrape time from where they are kept (pipeline
 * counters, source metrics, health, Leases): all rows are set anew on each scrape.
 */
function scraped(registry: Registry, type: 'counter' | 'gauge', name: string, help: string, labelNames: readonly string[], rows: () => Iterable<Row>): void {
  const config = { name, help, labelNames: [...labelNames], registers: [registry] };
  if (type === 'counter') {
    new Counter({
      ...config,
      collect() {
        this.reset();
        for (const r of rows()) this.inc(r.labels, r.value);
      },
    });
  } else {
    new Gauge({
      ...config,
      collect() {
        this.reset();
        for (const r of rows()) this.set(r.labels, r.value);
      },
    });
  }
}

/**
 * The time `lag_seconds` is measured from: the committed cursor's; before the first commit the
 * configured start time, or the sidecar's start when none is configured (so a first start with
 * the output down shows a lag that grows, and an alert on it fires).
 */
export function lagFrom(c: { source: string; cursor?: unknown; startTime?: string }, startedAt: number): number {
  const committed = c.cursor === undefined || c.cursor === null ? undefined : descriptorOf(c.source)?.cursorTime(c.cursor);
  return committed ?? (c.startTime !== undefined ? parseTimestampMs(c.startTime) : undefined) ?? startedAt;
}

/** The backfill figures a running source reports (telemetry/progress.ts), per input and service. */
export function backfillSnapshots(p: Pipeline): Map<string, BackfillSnapshot> {
  const out = new Map<string, BackfillSnapshot>();
  const read = (name: 'backfill_active' | 'backfill_position_timestamp_seconds' | 'backfill_remaining_seconds' | 'backfill_eta_seconds') =>
    new Map(p.sourceMetrics.values(name).map((v) => [`${v.labels['input_id']}::${v.labels['service']}`, v.value]));
  const active = read('backfill_active');
  const position = read('backfill_position_timestamp_seconds');
  const remaining = read('backfill_remaining_seconds');
  const eta = read('backfill_eta_seconds');
  for (const [key, a] of active) {
    const e = eta.get(key) ?? -1;
    out.set(key, {
      active: a === 1,
      positionMs: (position.get(key) ?? 0) * 1000,
      remainingMs: (remaining.get(key) ?? 0) * 1000,
      ...(e >= 0 ? { etaMs: e * 1000 } : {}),
    });
  }
  return out;
}

export function createMetrics(d: HttpDeps): Registry {
  const registry = new Registry();
  const startedAt = d.startedAt ?? d.clock.now();
  collectDefaultMetrics({ register: registry, prefix: 'proofpoint_sidecar_' });
  const perService = (type: 'counter' | 'gauge', name: string, help: string, pick: (c: ReturnType<Pipeline['counters']>[number]) => number) =>
    scraped(registry, type, name, help, ['input_id', 'source', 'service'], () =>
      d.pipeline.counters().map((c) => ({ labels: { input_id: c.input, source: c.source, service: c.service }, value: pick(c) })),
    );
  perService('counter', 'proofpoint_sidecar_events_received_total', 'Events the source produced', (c) => c.received);
  perService('counter', 'proofpoint_sidecar_events_sent_total', 'Events acknowledged by the output and committed', (c) => c.sent);
  perService('counter', 'proofpoint_sidecar_duplicates_total', 'Events dropped as already delivered or in flight', (c) => c.duplicates);
  perService('counter', 'proofpoint_sidecar_dead_lettered_total', 'Inputs written to the dead-letter file', (c) => c.deadLettered);
  perService(
    'gauge',
    'proofpoint_sidecar_lag_seconds',
    'Now minus the time of the committed cursor (before the first commit: minus the configured start time, or the sidecar start)',
    (c) => Math.max(0, (d.clock.now() - lagFrom(c, startedAt)) / 1000),
  );
  scraped(registry, 'gauge', 'proofpoint_sidecar_service_up', '1 when the service is running without a fatal error', ['input_id', 'service', 'status'], () =>
    d.pipeline.health.all().map((h) => ({ labels: { input_id: h.input, service: h.service, status: h.status }, value: h.status === 'failed' ? 0 : 1 })),
  );
  const sinkSeries = (type: 'counter' | 'gauge', name: string, help: string, pick: (s: ReturnType<Sink['stats']>) => number) =>
    scraped(registry, type, name, help, [], () => [{ labels: {}, value: pick(d.sink.stats()) }]);
  sinkSeries('gauge', 'proofpoint_sidecar_output_connected', '1 when the output is connected', (s) => (s.connected ? 1 : 0));
  sinkSeries('gauge', 'proofpoint_sidecar_output_chunks_in_flight', 'Chunks sent and not yet acknowledged', (s) => s.chunksInFlight);
  sinkSeries('counter', 'proofpoint_sidecar_output_chunks_acked_total', 'Chunks acknowledged', (s) => s.chunksAcked);
  sinkSeries(
    'gauge',
    'proofpoint_sidecar_output_pending_bytes',
    'Bytes of records accepted by the output and not acknowledged (sources pause at output.queue_max_bytes; each input may add the one batch it was handing over)',
    (s) => s.pendingBytes,
  );
  sinkSeries('counter', 'proofpoint_sidecar_output_reconnects_total', 'Output reconnects', (s) => s.reconnects);
  sinkSeries('gauge', 'proofpoint_sidecar_output_ack_latency_seconds', 'Latency of the last acknowledgement (0 before the first)', (s) =>
    s.lastAckLatencyMs === undefined ? 0 : s.lastAckLatencyMs / 1000,
  );
  for (const m of sourceMetricDecls()) {
    scraped(registry, m.type, `proofpoint_sidecar_${m.name}`, m.help, ['input_id', ...m.labels], () => d.pipeline.sourceMetrics.withZeros(m.name, d.pipeline.counters()));
  }
  if (d.coordinator) {
    const leases = () => d.coordinator!.status();
    const lease = (f: FeedLeaseStatus) => ({ feed: f.feed, lease: f.lease });
    scraped(registry, 'gauge', 'proofpoint_sidecar_lease_held', "1 while this replica holds the feed's Lease and pulls the feed", ['feed', 'lease'], () =>
      leases().map((f) => ({ labels: lease(f), value: f.held ? 1 : 0 })),
    );
    scraped(
      registry,
      'counter',
      'proofpoint_sidecar_lease_transitions_total',
      'Leases this replica acquired, lost (renewal failed or taken) and released (shutdown, or handed over on request)',
      ['feed', 'lease', 'event'],
      () => leases().flatMap((f) => (['acquired', 'lost', 'released'] as const).map((event) => ({ labels: { ...lease(f), event }, value: f[event] }))),
    );
    scraped(registry, 'counter', 'proofpoint_sidecar_lease_renew_failures_total', 'Lease renewals that failed (no answer, refused or conflicting)', ['feed', 'lease'], () =>
      leases().map((f) => ({ labels: lease(f), value: f.renewFailures })),
    );
  }
  return registry;
}

export interface HttpServer {
  url: string;
  close(): Promise<void>;
}

export async function startHttpServer(listen: string, d: HttpDeps): Promise<HttpServer> {
  const i = listen.lastIndexOf(':');
  const host = listen.slice(0, i).replace(/^\[|\]$/g, '');
  const port = Number(listen.slice(i + 1));
  const registry = createMetrics(d);
  const server = http.createServer((req, res) => {
    const path = (req.url ?? '/').split('?')[0];
    if (req.method !== 'GET' && req.method !== 'HEAD') {
      res.writeHead(405, { allow: 'GET, HEAD' }).end();
      return;
    }
    if (path === '/healthz') {
      res.writeHead(200, { 'content-type': 'text/plain' }).end('ok\n');
    } else if (path === '/readyz') {
      const r = readiness(d);
      const notes = r.notes.map((x) => `${x}\n`).join('');
      res
        .writeHead(r.ready ? 200 : 503, { 'content-type': 'text/plain' })
        .end(r.ready ? `ready\n${notes}` : `not ready:\n${r.reasons.map((x) => `- ${x}\n`).join('')}${notes}`);
    } else if (path === '/metrics') {
      registry.metrics().then(
        (text) => res.writeHead(200, { 'content-type': registry.contentType }).end(text),
        (err: Error) => res.writeHead(500, { 'content-type': 'text/plain' }).end(`metrics failed: ${err.message}\n`),
      );
    } else if (path === '/state') {
      const q = new URL(req.url ?? '/', 'http://x').searchParams;
      const filter = { ...(q.get('input') ? { input: q.get('input')! } : {}), ...(q.get('service') ? { service: q.get('service')! } : {}) };
      const progress = backfillSnapshots(d.pipeline);
      const types = new Map(d.pipeline.counters().map((c) => [c.input, c.source]));
      const typeOf = (input: string) => types.get(input);
      stateReport(d.store, filter, { now: d.clock.now(), shutdown: 'running', progress: (i, svc) => progress.get(`${i}::${svc}`), typeOf }).then(
        (r) => res.writeHead(200, { 'content-type': 'application/json' }).end(JSON.stringify(r)),
        (err: Error) => res.writeHead(500, { 'content-type': 'text/plain' }).end(`state failed: ${err.message}\n`),
      );
    } else {
      res.writeHead(404, { 'content-type': 'text/plain' }).end('not found: try /healthz, /readyz, /metrics or /state\n');
    }
  });
  await new Promise<void>((resolve, reject) => {
    server.once('error', reject);
    server.listen(port, host, () => resolve());
  });
  const addr = server.address() as AddressInfo;
  const shownHost = addr.family === 'IPv6' ? `[${addr.address}]` : addr.address;
  return {
    url: `http://${shownHost}:${addr.port}`,
    close: () =>
      new Promise<void>((resolve) => {
        server.closeAllConnections?.();
        server.close(() => resolve());
      }),
  };
}
