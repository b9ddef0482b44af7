/**
 * The metrics table of docs/operations.md against a real scrape of a sidecar on its first start
 * with both vendors and Fluent Bit unreachable: no event has arrived, yet every documented series
 * is there, with the documented type and exactly the documented labels.
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { readFileSync } from 'node:fs';
import { fileURLToPath } from 'node:url';
import { loadConfigObject } from '../../plugin/config/load.ts';
import { Sidecar } from '../../plugin/sidecar.ts';
import { createMetrics } from '../../plugin/telemetry/http.ts';
import { silentLogger } from '../../plugin/telemetry/logger.ts';
import { systemClock } from '../../plugin/util/clock.ts';
import { formatUtc } from '../../plugin/util/time.ts';
import { freePort, until } from '../helpers/net.ts';
import { tmpDir } from '../helpers/tmp.ts';

interface DocRow {
  name: string;
  type: string;
  labels: string[];
  coordinationOnly: boolean;
}

/** The rows of the table under `## Metrics` (wildcard rows, the prom-client defaults, left out). */
function documented(): DocRow[] {
  const md = readFileSync(fileURLToPath(new URL('../../docs/operations.md', import.meta.url)), 'utf8');
  const section = md.slice(md.indexOf('## Metrics\n'), md.indexOf('\n## ', md.indexOf('## Metrics\n') + 1));
  const rows: DocRow[] = [];
  for (const line of section.split('\n')) {
    const cells = line.split('|').map((c) => c.trim());
    if (cells.length < 6 || !cells[1]!.startsWith('`proofpoint_sidecar_') || cells[1]!.includes('*')) continue;
    rows.push({
      name: cells[1]!.replace(/`/g, ''),
      type: cells[2]!,
      labels: [...cells[3]!.matchAll(/`([a-z_]+)`/g)].map((m) => m[1]!).sort(),
      coordinationOnly: /with `globals\.coordination` only/.test(cells[4]!),
    });
  }
  return rows;
}

interface Family {
  type: string;
  samples: Array<{ labels: Record<string, string>; value: number }>;
}

/** Prometheus text format: `# TYPE` lines and samples (histogram and summary parts under their family). */
function parseExposition(text: string): Map<string, Family> {
  const families = new Map<string, Family>();
  for (const line of text.split('\n')) {
    const t = /^# TYPE (\S+) (\S+)$/.exec(line);
    if (t) {
      families.set(t[1]!, { type: t[2]!, samples: [] });
      continue;
    }
    const m = /^([a-zA-Z_:][a-zA-Z0-9_:]*)(?:\{(.*)\})? (\S+)$/.exec(line);
    if (!m) continue;
    const fam = families.get(m[1]!) ?? families.get(m[1]!.replace(/_(bucket|sum|count)$/, ''));
    assert.ok(fam, `sample ${m[1]} has no # TYPE line`);
    const labels = Object.fromEntries([...(m[2] ?? '').matchAll(/([a-zA-Z_]+)="((?:[^"\\]|\\.)*)"/g)].map((x) => [x[1]!, x[2]!]));
    fam.samples.push({ labels, value: Number(m[3]) });
  }
  return families;
}

const isDefault = (name: string) => /^proofpoint_sidecar_(process_|nodejs_)/.test(name);

async function firstStart() {
  const down = await freePort();
  const now = Date.now();
  const { config } = loadConfigObject({
    globals: { state_dir: tmpDir(), http: { listen: '127.0.0.1:0' }, shutdown_timeout_secs: 1 },
    output: { type: 'forward', host: '127.0.0.1', port: down },
    inputs: {
      proofpoint_tap: {
        id: 'tap-1',
        credentials: { username: 'principal-for-test', password: 'secret-for-test' },
        override_url_base: `http://127.0.0.1:${down}`,
        services: { messagesDelivered: { start_time_in_utc: formatUtc(now - 2 * 86_400_000) }, clicksPermitted: {} },
      },
      proofpoint_on_demand: {
        id: 'pod-1',
        credentials: { cluster_id: 'cluster-for-test', api_key: 'key-for-test' },
        override_url_base: `ws://127.0.0.1:${down}`,
        services: { message: { start_time: formatUtc(now - 86_400_000) }, maillog: {} },
      },
    },
  });
  const sc = await Sidecar.start({ config, logger: silentLogger() });
  return sc;
}

test('every documented series is exposed before the first event, typed and labelled as the docs say; every *_total is a counter', async () => {
  const docs = documented();
  assert.ok(docs.length >= 30, `the docs table was read (${docs.length} rows)`);
  const sc = await firstStart();
  try {
    const scrape = async () => parseExposition(await (await fetch(`${sc.http!.url}/metrics`)).text());
    // The sources have started (each service reports its backfill position at start).
    await until(async () => ((await scrape()).get('proofpoint_sidecar_backfill_active')?.samples.length ?? 0) === 4, 'the four services to start', 10_000);
    const exposed = await scrape();

    for (const [name, fam] of exposed) {
      // prom-client's own nodejs_active_*_total are gauges (a count of what is open now).
      if (name.endsWith('_total') && !isDefault(name)) assert.equal(fam.type, 'counter', `${name} is a counter`);
      if (!isDefault(name)) assert.ok(docs.some((d) => d.name === name), `${name} is exposed but not in docs/operations.md`);
    }
    for (const d of docs) {
      const fam = exposed.get(d.name);
      if (d.coordinationOnly) {
        assert.equal(fam, undefined, `${d.name} exists only with globals.coordination`);
        continue;
      }
      assert.ok(fam, `${d.name} is documented but not exposed`);
      assert.equal(fam.type, d.type, `${d.name}: type`);
      if (d.name !== 'proofpoint_sidecar_pod_archive_windows_retried_total') assert.ok(fam.samples.length > 0, `${d.name} has a series from start`);
      for (const s of fam.samples) assert.deepEqual(Object.keys(s.labels).sort(), d.labels, `${d.name}: labels`);
    }

    const perService = (name: string) => new Map(exposed.get(name)!.samples.map((s) => [`${s.labels['input_id']}/${s.labels['service']}`, s.value]));
    const services = ['tap-1/messagesDelivered', 'tap-1/clicksPermitted', 'pod-1/message', 'pod-1/maillog'];
    assert.deepEqual([...perService('proofpoint_sidecar_events_sent_total').keys()].sort(), [...services].sort());
    for (const v of perService('proofpoint_sidecar_events_received_total').values()) assert.equal(v, 0, 'no event has arrived');
    const lag = perService('proofpoint_sidecar_lag_seconds');
    assert.ok(lag.get('tap-1/messagesDelivered')! >= 2 * 86_400 - 60, 'lag counts from the configured start time');
    assert.ok(lag.get('pod-1/message')! >= 86_400 - 60, 'lag counts from the configured start time');
    assert.ok(lag.get('pod-1/maillog')! >= 0, 'without a start time, lag counts from the sidecar start');
    const tapRequests = exposed.get('proofpoint_sidecar_tap_requests_total')!.samples.map((s) => s.labels['pool']).sort();
    assert.deepEqual(tapRequests, ['clicksPermitted', 'shared'], 'both pools from start');
    const backfill = perService('proofpoint_sidecar_backfill_active');
    assert.equal(backfill.get('tap-1/messagesDelivered'), 1, 'two days behind: backfilling');
    assert.equal(backfill.get('pod-1/message'), 1, 'archive replay from start_time owed');
    assert.equal(backfill.get('pod-1/maillog'), 0, 'no start_time: live');
  } finally {
    await sc.stop();
  }
});

test('the Lease series carry the documented labels', async () => {
  const docs = documented().filter((d) => d.coordinationOnly);
  assert.equal(docs.length, 3);
  const noop = { counters: () => [], health: { all: () => [] }, sourceMetrics: { withZeros: () => [], values: () => [] } };
  const registry = createMetrics({
    pipeline: noop as never,
    sink: { stats: () => ({ connected: false, pendingRecords: 0, pendingBytes: 0, chunksInFlight: 0, chunksAcked: 0, reconnects: 0 }) } as never,
    store: {} as never,
    clock: systemClock,
    coordinator: {
      identity: 'replica-a',
      status: () => [{ feed: 'tap-1', lease: 'pps-tap-1', held: true, acquired: 1, lost: 0, released: 0, renewFailures: 0 }],
    },
  });
  const exposed = parseExposition(await registry.metrics());
  for (const d of docs) {
    const fam = exposed.get(d.name);
    assert.ok(fam && fam.samples.length > 0, `${d.name} exposed with coordination`);
    assert.equal(fam.type, d.type, `${d.name}: type`);
    for (const s of fam.samples) assert.deepEqual(Object.keys(s.labels).sort(), d.labels, `${d.name}: labels`);
  }
});
