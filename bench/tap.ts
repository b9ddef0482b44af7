/**
 * TAP benchmark: a 7-day backfill of all four services against the simulator, about 1,000,000
 * events, through the real source, pipeline and LevelDB state into a sink that encodes every
 * record as a forward entry and acknowledges it. Prints API requests, wall time, events per
 * second and peak RSS.
 *
 * The simulator and the sidecar's side each run in a child process (this file, started with
 * `--serve` and with `--sidecar`), so the RSS measured is the sidecar's own and the two do not
 * share one event loop. The sidecar's process runs the build with the manifests' V8 flags
 * (bench/build.ts; BENCH_TSX=1: the sources through tsx).
 *
 *   npx tsx bench/tap.ts [--no-prefetch]     or   npm run bench -- tap
 *
 * BENCH_CPU_PROF=<dir> writes V8 CPU profiles there: the sidecar's (the backfill only, taken
 * through the inspector) and the simulator child's (--cpu-prof).
 */
import { spawn } from 'node:child_process';
import { mkdirSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { Session } from 'node:inspector/promises';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { createInterface } from 'node:readline';
import { fileURLToPath } from 'node:url';
import type { OutputRecord, Sink, SinkStats } from '../plugin/output/sink.ts';
import { encodeEntry } from '../plugin/output/forward/encoder.ts';
import { Pipeline } from '../plugin/pipeline/pipeline.ts';
import { StateStore } from '../plugin/state/store.ts';
import { tapInputSchema } from '../plugin/sources/tap/config.ts';
import { createTapSource, TAP_SERVICES, type TapCursor } from '../plugin/sources/tap/create.ts';
import { createLogger } from '../plugin/telemetry/logger.ts';
import type { TapScenarioOptions } from '../plugin/simulator/tap/index.ts';
import { buildBench } from './build.ts';
import { formatPhases, MemorySampler, type PhaseMemory } from './memory.ts';

const HOUR = 3600_000;
const DAY = 24 * HOUR;

/**
 * Original items per hour; with the default quirks (extra clicks on a message, several recipients,
 * repeats) they make about 6,000 events an hour, 1,000,000 in 168 hours.
 */
const RATES = { clicksBlocked: 600, clicksPermitted: 900, messagesBlocked: 600, messagesDelivered: 1500 };

/** Acknowledges at once; encodes like the forward sink; bounded like the real sinks. */
class CountingSink implements Sink {
  readonly kind = 'forward' as const;
  records = 0;
  bytes = 0;
  #pending = 0;
  #waiters: Array<() => void> = [];
  constructor(readonly queueMaxBytes = 64 * 1024 * 1024) {}
  maxRecordBytes(): number {
    return 4_000_000;
  }
  encode(rec: OutputRecord): Buffer {
    return encodeEntry(rec);
  }
  send(_tag: string, encoded: Buffer[]): Promise<void> {
    const n = encoded.reduce((s, b) => s + b.length, 0);
    this.#pending += n;
    return new Promise((resolve) =>
      setImmediate(() => {
        this.records += encoded.length;
        this.bytes += n;
        this.#pending -= n;
        for (const w of this.#waiters.splice(0)) w();
        resolve();
      }),
    );
  }
  async waitForCapacity(): Promise<void> {
    while (this.#pending >= this.queueMaxBytes) await new Promise<void>((r) => this.#waiters.push(r));
  }
  start(): void {}
  async close(): Promise<number> {
    return 0;
  }
  stats(): SinkStats {
    return { connected: true, pendingRecords: 0, pendingBytes: this.#pending, chunksInFlight: 0, chunksAcked: 0, reconnects: 0 };
  }
}

export interface TapBenchResult {
  events: number;
  apiRequests: number;
  wallSeconds: number;
  eventsPerSecond: number;
  peakRssMiB: number;
  simulatorPeakRssMiB: number;
  duplicatesFiltered: number;
  /** Memory in the first, middle and last third of the backfill. */
  memory: PhaseMemory[];
}

interface SidecarRun {
  events: number;
  duplicates: number;
  wallSeconds: number;
  cpuSeconds: number;
  peakRssMiB: number;
  memory: PhaseMemory[];
}

export async function runTapBench(opts: { rates?: typeof RATES; print?: boolean; prefetch?: boolean } = {}): Promise<TapBenchResult> {
  const print = opts.print ?? true;
  const scenario: TapScenarioOptions = { ratesPerHour: opts.rates ?? RATES, seed: 42 };
  const profDir = process.env.BENCH_CPU_PROF;
  const childProf = profDir ? ['--cpu-prof', `--cpu-prof-dir=${profDir}`] : [];
  if (profDir) mkdirSync(profDir, { recursive: true });
  const built = buildBench(['tap']);
  const child = spawn(process.execPath, [...childProf, '--import', 'tsx', fileURLToPath(import.meta.url), '--serve', JSON.stringify(scenario)], {
    stdio: ['pipe', 'pipe', 'inherit'],
  });
  try {
    const lines = createInterface({ input: child.stdout! })[Symbol.asyncIterator]();
    const nextLine = async () => JSON.parse(String((await lines.next()).value)) as Record<string, any>;
    const hello = await nextLine();
    // The sidecar's side in a process of its own, run as the image runs it (bench/build.ts).
    const measured = spawn(process.execPath, [...built.nodeArgs('tap'), '--sidecar', JSON.stringify({ hello, prefetch: opts.prefetch, print })], {
      stdio: ['ignore', 'pipe', 'inherit'],
    });
    let out = '';
    measured.stdout!.on('data', (d) => (out += d));
    const code = await new Promise<number | null>((r) => measured.once('exit', r));
    if (code !== 0) throw new Error(`the benchmark's sidecar process exited with ${code}`);
    const run = JSON.parse(out.trim().split('\n').pop()!) as SidecarRun;

    child.stdin!.write('stats\n');
    const stats = await nextLine();
    child.stdin!.end();
    await new Promise((r) => child.once('exit', r));

    const { memory } = run;
    const result: TapBenchResult = {
      events: run.events,
      apiRequests: stats.requests,
      wallSeconds: run.wallSeconds,
      eventsPerSecond: Math.round(run.events / run.wallSeconds),
      peakRssMiB: run.peakRssMiB,
      simulatorPeakRssMiB: Math.round(stats.maxRssKiB / 1024),
      duplicatesFiltered: run.duplicates,
      memory,
    };
    if (print) {
      process.stdout.write(
        `TAP 7-day backfill, 4 services: ${result.events} events delivered (${stats.served} served, ${run.duplicates} duplicates filtered)\n` +
          `  sidecar:      ${built.runtime}\n` +
          `  API requests: ${result.apiRequests} (${stats.byStatus})\n` +
          `  wall time:    ${result.wallSeconds} s (${result.eventsPerSecond} events/s); sidecar CPU ${run.cpuSeconds} s (user + system)\n` +
          `  peak RSS:     ${result.peakRssMiB} MiB sidecar (simulator process: ${result.simulatorPeakRssMiB} MiB)\n` +
          `${formatPhases(memory)}\n` +
          `  flat:         last third's peak RSS is ${Math.round((memory[2]!.peakRssMiB / memory[0]!.peakRssMiB) * 100)}% of the first third's\n`,
      );
    }
    return result;
  } finally {
    if (child.exitCode === null) child.kill();
    built.dispose();
  }
}

/** The measured process: the real source, pipeline and state into CountingSink; progress on stderr. */
async function measureSidecar(o: { hello: { url: string; credentials: unknown }; prefetch?: boolean; print: boolean }): Promise<void> {
  const profDir = process.env.BENCH_CPU_PROF;
  const dir = mkdtempSync(path.join(tmpdir(), 'tap-bench-'));
  const logger = createLogger({ level: 'warn', pretty: false });
  const store = await StateStore.open(dir, { logger });
  const sink = new CountingSink();
  const start = Date.now() - 7 * DAY + 10 * 60_000;
  const cfg = tapInputSchema.parse({
    id: 'bench',
    credentials: o.hello.credentials,
    override_url_base: o.hello.url,
    ...(o.prefetch !== undefined ? { prefetch_next_window: o.prefetch } : {}),
    services: Object.fromEntries(TAP_SERVICES.map((s) => [s, { start_time_in_utc: new Date(start).toISOString() }])),
  });
  const source = createTapSource(cfg);
  const pipeline = new Pipeline({ store, sink, sources: [source], logger });
  const sampler = new MemorySampler();
  const m0 = performance.now();
  const t0 = Date.now();
  const cpu0 = process.cpuUsage();
  const target = t0 - 10 * 60_000;
  if (o.print) {
    process.stderr.write(
      `backfilling ${new Date(start).toISOString()} .. now, 4 services through /v2/siem/all${cfg.prefetch_next_window ? ', one window ahead' : ''}\n`,
    );
  }
  const profiler = profDir ? new Session() : undefined;
  if (profiler) {
    profiler.connect();
    await profiler.post('Profiler.enable');
    await profiler.post('Profiler.start');
  }
  await pipeline.start();
  let lastReport = Date.now();
  for (;;) {
    const counters = pipeline.counters();
    const caughtUp = counters.length === 4 && counters.every((c) => Date.parse((c.cursor as TapCursor | undefined)?.collected_to ?? '1970-01-01T00:00:00Z') >= target);
    if (caughtUp) break;
    if (o.print && Date.now() - lastReport > 5000) {
      lastReport = Date.now();
      const at = (counters[0]?.cursor as TapCursor | undefined)?.collected_to ?? '-';
      const m = sampler.sample();
      process.stderr.write(
        `  ${sink.records} records, cursor at ${at}, rss ${Math.round(m.rss / 1048576)} MiB, heap used ${Math.round(m.heapUsed / 1048576)} MiB, external ${Math.round(m.external / 1048576)} MiB\n`,
      );
    }
    await new Promise((r) => setTimeout(r, 50));
  }
  const wall = (Date.now() - t0) / 1000;
  const cpu = process.cpuUsage(cpu0);
  if (profiler && profDir) {
    const { profile } = await profiler.post('Profiler.stop');
    writeFileSync(path.join(profDir, `tap-sidecar-${process.pid}.cpuprofile`), JSON.stringify(profile));
    profiler.disconnect();
  }
  const memory = sampler.thirds(m0, performance.now());
  sampler.stop();
  const duplicates = pipeline.counters().reduce((n, c) => n + c.duplicates, 0);
  await pipeline.stop(10_000);
  await store.close();
  rmSync(dir, { recursive: true, force: true });
  const run: SidecarRun = {
    events: sink.records,
    duplicates,
    wallSeconds: Math.round(wall * 10) / 10,
    cpuSeconds: Math.round((cpu.user + cpu.system) / 1e5) / 10,
    peakRssMiB: Math.round(process.resourceUsage().maxRSS / 1024),
    memory,
  };
  process.stdout.write(JSON.stringify(run) + '\n');
}

/** The child: a simulator on the system clock, answering "stats" on stdin. */
async function serve(scenarioJson: string): Promise<void> {
  const { startTapSimulator } = await import('../plugin/simulator/tap/index.ts');
  const sim = await startTapSimulator(JSON.parse(scenarioJson) as TapScenarioOptions);
  process.stdout.write(JSON.stringify({ url: sim.url, credentials: sim.credentials }) + '\n');
  const rl = createInterface({ input: process.stdin });
  for await (const line of rl) {
    if (line.trim() !== 'stats') continue;
    const byStatus = new Map<number, number>();
    for (const r of sim.requests) byStatus.set(r.status, (byStatus.get(r.status) ?? 0) + 1);
    process.stdout.write(
      JSON.stringify({
        requests: sim.requests.length,
        served: sim.requests.reduce((n, r) => n + r.events, 0),
        byStatus: [...byStatus].map(([s, n]) => `${n} x ${s}`).join(', '),
        maxRssKiB: process.resourceUsage().maxRSS,
      }) + '\n',
    );
  }
  await sim.close();
}

const self = fileURLToPath(import.meta.url);
if (process.argv[1] && path.resolve(process.argv[1]) === self) {
  const i = process.argv.indexOf('--serve');
  const j = process.argv.indexOf('--sidecar');
  if (i >= 0) await serve(process.argv[i + 1]!);
  else if (j >= 0) await measureSidecar(JSON.parse(process.argv[j + 1]!));
  else await runTapBench(process.argv.includes('--no-prefetch') ? { prefetch: false } : {});
}
