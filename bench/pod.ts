/**
 * PoD throughput: the simulator streams 200,000 events (100,000 message + 100,000
 * maillog, realistic sizes: message ~1.4–4.7 KB, maillog ~0.9 KB) as fast as it can, through
 *
 *   sidecar: the real sidecar (PoD source, de-dup, LevelDB commits, ForwardSink with acks), and
 *   bare:    WebSocket -> JSON.parse -> msgpack -> socket (no de-dup, no state, no acks; the
 *            entries go out as PackedForward frames once per event-loop turn, so the wire format
 *            and the receiver's work are the sidecar's),
 *
 * each in its own process, to a forward receiver in a third process that acks chunked frames. The
 * processes run the build with the manifests' V8 flags, as the image does (bench/build.ts).
 * Each system under test measures its own wall time (first connection to last record
 * acknowledged / written), CPU time and peak RSS; the simulator runs in this process.
 *
 *   npm run bench -- pod          (bench/index.ts calls runPodBench())
 *   npx tsx bench/pod.ts          [--events N]
 *
 *   npm run bench -- pod --fluent-bit   (or BENCH_FLUENT_BIT=1): the receiver is the real Fluent
 *                 Bit FLUENT_BIT_BIN names (the shipped fluent-bit/forward-input.yaml: forward input,
 *                 filesystem storage; null output), for both systems in the same run
 *
 * BENCH_CPU_PROF=<dir> makes each child process write a V8 CPU profile there (--cpu-prof).
 */
import { spawn, type ChildProcess } from 'node:child_process';
import net from 'node:net';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { createInterface } from 'node:readline';
import { fileURLToPath, pathToFileURL } from 'node:url';
import { Packr, UnpackrStream } from 'msgpackr';
import { buildBench, type BuiltBench } from './build.ts';
import { formatPhases, MemorySampler, type PhaseMemory } from './memory.ts';

const SELF = fileURLToPath(import.meta.url);
const API_KEY = 'bench-api-key-3f9a1c77';
const CLUSTER = 'pphosted_bench_hosted';
const TAGS = { message: 'mail.proofpoint.pod.message', maillog: 'mail.proofpoint.pod.maillog' } as const;

export interface PodRunResult {
  system: 'sidecar' | 'bare';
  events: number;
  wallMs: number;
  cpuMs: number;
  peakRssMb: number;
  /** Frame bytes the simulator sent for these events. */
  frameBytes: number;
  /** Records the receiver counted (the bare pipeline's last records may still be on the way). */
  received: number;
  /** Memory while starting (before the first event), while streaming, and while stopping. */
  memory: PhaseMemory[];
}

export interface PodBenchResult {
  events: number;
  avgFrameBytes: number;
  /** What both systems sent to. */
  receiver: string;
  /** How both systems ran (bench/build.ts). */
  runtime: string;
  runs: PodRunResult[];
  ratio: { eventsPerSec: number; cpuPerEvent: number; peakRss: number };
}

// ------------------------------------------------------------------------------------------------
// Forward receiver (own process): acks PackedForward chunks, counts records.

async function runReceiver(): Promise<void> {
  let records = 0;
  const packr = new Packr({ useRecords: false });
  const server = net.createServer((socket) => {
    socket.setNoDelay(true);
    const un = new UnpackrStream({ useRecords: false, mapsAsObjects: true });
    socket.pipe(un);
    un.on('data', (v: unknown) => {
      if (!Array.isArray(v)) return;
      const opt = (v.length >= 3 && v[v.length - 1] && typeof v[v.length - 1] === 'object' && !Buffer.isBuffer(v[v.length - 1]) ? v[v.length - 1] : undefined) as
        | { size?: number; chunk?: string }
        | undefined;
      if (Buffer.isBuffer(v[1]) || v[1] instanceof Uint8Array || typeof v[1] === 'string') records += opt?.size ?? 0; // PackedForward
      else records += 1; // Message mode
      if (opt?.chunk) socket.write(packr.pack({ ack: opt.chunk }));
    });
    un.on('error', () => socket.destroy());
    socket.on('error', () => {});
  });
  await new Promise<void>((r) => server.listen(0, '127.0.0.1', r));
  process.stdout.write(JSON.stringify({ port: (server.address() as net.AddressInfo).port }) + '\n');
  for await (const line of createInterface({ input: process.stdin })) {
    if (line === 'report') {
      process.stdout.write(JSON.stringify({ records }) + '\n');
      records = 0;
    } else if (line === 'exit') break;
  }
  server.close();
  process.exit(0);
}

// ------------------------------------------------------------------------------------------------
// System under test: the sidecar.

async function runSidecar(simUrl: string, port: number, events: number): Promise<void> {
  const { loadConfigObject } = await import('../plugin/config/load.ts');
  const { Sidecar } = await import('../plugin/sidecar.ts');
  const { createLogger } = await import('../plugin/telemetry/logger.ts');
  const stateDir = mkdtempSync(path.join(tmpdir(), 'pod-bench-'));
  const logger = createLogger({ level: 'warn', pretty: false });
  const { config } = loadConfigObject({
    globals: { state_dir: stateDir, log_level: 'warn' },
    output: { type: 'forward', host: '127.0.0.1', port },
    inputs: {
      proofpoint_on_demand: {
        id: 'bench',
        credentials: { cluster_id: CLUSTER, api_key: API_KEY },
        override_url_base: simUrl,
        services: { message: { request_period_in_seconds: 1 }, maillog: { request_period_in_seconds: 1 } },
      },
    },
  });
  const sampler = new MemorySampler(100);
  sampler.phase('startup');
  const cpu0 = process.cpuUsage();
  const t0 = performance.now();
  const sidecar = await Sidecar.start({ config, logger });
  const sent = () => sidecar.pipeline.counters().reduce((n, c) => n + c.sent, 0);
  while (sent() === 0) await new Promise((r) => setTimeout(r, 5));
  sampler.phase('streaming');
  while (sent() < events) await new Promise((r) => setTimeout(r, 20));
  const wallMs = performance.now() - t0;
  const cpu = process.cpuUsage(cpu0);
  sampler.phase('stopping');
  const peakRssMb = process.resourceUsage().maxRSS / 1024;
  const count = sent();
  await sidecar.stop();
  sampler.stop();
  const result = { events: count, wallMs, cpuMs: (cpu.user + cpu.system) / 1000, peakRssMb, memory: sampler.byPhase().filter((p) => p.phase !== 'start') };
  rmSync(stateDir, { recursive: true, force: true });
  process.stdout.write(JSON.stringify(result) + '\n');
  process.exit(0);
}

// ------------------------------------------------------------------------------------------------
// System under test: the bare pipeline, the ceiling.

async function runBare(simUrl: string, port: number, events: number): Promise<void> {
  const { WebSocket } = await import('ws');
  const { parseTimestamp } = await import('../plugin/util/time.ts');
  const packr = new Packr({ useRecords: false });
  const sampler = new MemorySampler(100);
  sampler.phase('startup');
  const cpu0 = process.cpuUsage();
  const t0 = performance.now();
  const out = net.connect(port, '127.0.0.1');
  out.setNoDelay(true);
  await new Promise((r) => out.once('connect', r));
  let count = 0;
  const sockets: InstanceType<typeof WebSocket>[] = [];
  // Entries are gathered per tag and written once per turn of the event loop as PackedForward
  // frames without a chunk id: the same bytes on the wire as the sidecar's, and no acks.
  const pending: Record<string, Buffer[]> = { [TAGS.message]: [], [TAGS.maillog]: [] };
  let scheduled = false;
  let resolveDone!: () => void;
  const done = new Promise<void>((r) => (resolveDone = r));
  const flush = () => {
    scheduled = false;
    let ok = true;
    for (const [tag, entries] of Object.entries(pending)) {
      if (entries.length === 0) continue;
      ok = out.write(packr.pack([tag, Buffer.concat(entries), { size: entries.length }])) && ok;
      pending[tag] = [];
    }
    // TCP backpressure: stop reading the WebSockets while the socket is full.
    if (!ok) {
      for (const s of sockets) s.pause();
      out.once('drain', () => sockets.forEach((s) => s.resume()));
    }
    if (count >= events) out.write(Buffer.alloc(0), () => resolveDone());
  };
  for (const type of ['message', 'maillog'] as const) {
    const ws = new WebSocket(`${simUrl}/v1/stream?cid=${CLUSTER}&type=${type}`, { headers: { Authorization: `Bearer ${API_KEY}` }, perMessageDeflate: false, maxPayload: 64 * 1_048_576 });
    sockets.push(ws);
    ws.on('message', (data: Buffer) => {
      if (count >= events) return;
      if (count === 0) sampler.phase('streaming');
      const text = data.toString('utf8');
      const obj = JSON.parse(text) as { ts: string };
      const t = parseTimestamp(obj.ts);
      pending[TAGS[type]]!.push(packr.pack([t?.sec ?? 0, { message: text, devo_tag: TAGS[type], source: 'proofpoint_on_demand', service: type, input_id: 'bench', pulling_id: 1 }]));
      count++;
      if (!scheduled) {
        scheduled = true;
        setImmediate(flush);
      }
    });
  }
  await done;
  const wallMs = performance.now() - t0;
  const cpu = process.cpuUsage(cpu0);
  sampler.stop();
  for (const s of sockets) s.terminate();
  out.end();
  const memory = sampler.byPhase().filter((p) => p.phase !== 'start');
  process.stdout.write(JSON.stringify({ events: count, wallMs, cpuMs: (cpu.user + cpu.system) / 1000, peakRssMb: process.resourceUsage().maxRSS / 1024, memory }) + '\n');
  process.exit(0);
}

// ------------------------------------------------------------------------------------------------
// Orchestration.

/** The build (or the sources through tsx, BENCH_TSX=1) that every child runs: bench/build.ts. */
let built: BuiltBench | undefined;

function child(args: string[]): ChildProcess {
  const prof = process.env.BENCH_CPU_PROF ? ['--cpu-prof', '--cpu-prof-dir=' + process.env.BENCH_CPU_PROF] : [];
  const run = built ? built.nodeArgs('pod') : ['--import', 'tsx', SELF];
  return spawn(process.execPath, [...prof, ...run, ...args], { stdio: ['pipe', 'pipe', 'inherit'] });
}

async function nextLine(c: ChildProcess): Promise<string> {
  const rl = createInterface({ input: c.stdout! });
  for await (const line of rl) {
    if (line.trim().startsWith('{')) {
      rl.close();
      return line;
    }
  }
  throw new Error('child ended without a result');
}

/** Where both systems send: the counting receiver (its own process) or a real Fluent Bit. */
interface Receiver {
  port: number;
  name: string;
  /** Records taken since the last call (waiting up to 10 s for `expected` of them). */
  records(expected: number): Promise<number>;
  close(): Promise<void>;
}

async function countingReceiver(): Promise<Receiver> {
  const proc = child(['--role', 'receiver']);
  const { port } = JSON.parse(await nextLine(proc)) as { port: number };
  return {
    port,
    name: 'forward receiver in its own process',
    async records() {
      proc.stdin!.write('report\n');
      return (JSON.parse(await nextLine(proc)) as { records: number }).records;
    },
    async close() {
      proc.stdin!.write('exit\n');
      proc.kill();
    },
  };
}

async function fluentBitReceiver(): Promise<Receiver> {
  const bin = process.env.FLUENT_BIT_BIN;
  if (!bin) throw new Error('--fluent-bit needs FLUENT_BIT_BIN, the path of a fluent-bit binary');
  const { startFluentBit } = await import('../test/helpers/fluent-bit.ts');
  const dir = mkdtempSync(path.join(tmpdir(), 'pod-bench-fb-'));
  const fb = await startFluentBit(bin, dir, { flush: 1, logLevel: 'warn', output: 'null', httpServer: true });
  let seen = 0;
  return {
    port: fb.port,
    name: `Fluent Bit (${path.basename(bin)}: forward input with filesystem storage, null output)`,
    async records(expected: number) {
      // The bare pipeline ends when its bytes are written; Fluent Bit may still be reading them.
      let total = await fb.inputRecords();
      for (const until = Date.now() + 10_000; total - seen < expected && Date.now() < until; total = await fb.inputRecords()) {
        await new Promise((r) => setTimeout(r, 200));
      }
      const n = total - seen;
      seen = total;
      return n;
    },
    async close() {
      fb.proc.kill('SIGTERM');
      await new Promise((r) => (fb.proc.exitCode !== null ? r(null) : fb.proc.once('exit', r)));
      rmSync(dir, { recursive: true, force: true });
    },
  };
}

export async function runPodBench(opts: { events?: number; fluentBit?: boolean } = {}): Promise<PodBenchResult> {
  const events = opts.events ?? 200_000;
  const half = Math.ceil(events / 2);
  const { startPodSimulator } = await import('../plugin/simulator/pod/index.ts');
  const useFluentBit = opts.fluentBit ?? (process.argv.includes('--fluent-bit') || process.env.BENCH_FLUENT_BIT === '1');
  built = buildBench(['pod']);
  const runtime = built.runtime;
  const receiver = useFluentBit ? await fluentBitReceiver() : await countingReceiver();
  const runs: PodRunResult[] = [];
  try {
    const { port } = receiver;
    for (const system of ['sidecar', 'bare'] as const) {
      // A fresh simulator per run: every event already exists, sent as fast as each reader takes them.
      const sim = await startPodSimulator({
        apiKey: API_KEY,
        clusterId: CLUSTER,
        seed: 7,
        rate: { message: 1_000_000, maillog: 1_000_000, audit: 0 },
        maxEvents: { message: half, maillog: half, audit: 0 },
        historyMs: 1_000,
        firstSessionFrom: 'origin',
        perMessageDeflate: false,
      });
      try {
        const c = child(['--role', system, '--sim', sim.url, '--port', String(port), '--events', String(events)]);
        const r = JSON.parse(await nextLine(c)) as Omit<PodRunResult, 'system' | 'frameBytes'>;
        await new Promise((res) => (c.exitCode !== null ? res(null) : c.once('exit', res)));
        const received = await receiver.records(r.events);
        const perEvent = sim.stats.bytesSent / Math.max(1, sim.stats.eventsSent);
        runs.push({ system, ...r, frameBytes: perEvent * r.events, received });
      } finally {
        await sim.close();
      }
    }
  } finally {
    await receiver.close();
    built.dispose();
    built = undefined;
  }
  const [s, b] = runs as [PodRunResult, PodRunResult];
  const eps = (x: PodRunResult) => x.events / (x.wallMs / 1000);
  const result: PodBenchResult = {
    events,
    avgFrameBytes: s.frameBytes / s.events,
    receiver: receiver.name,
    runtime,
    runs,
    ratio: { eventsPerSec: eps(s) / eps(b), cpuPerEvent: s.cpuMs / s.events / (b.cpuMs / b.events), peakRss: s.peakRssMb / b.peakRssMb },
  };
  print(result);
  return result;
}

function print(r: PodBenchResult): void {
  const fmt = (n: number, d = 0) => n.toLocaleString('en-US', { maximumFractionDigits: d, minimumFractionDigits: d });
  const lines = [
    `pod: ${fmt(r.events)} events (message + maillog, ${fmt(r.avgFrameBytes)} B per frame on average), simulator in this process, each system in its own (${r.runtime}), to ${r.receiver}`,
    `${'system'.padEnd(16)} ${'events/s'.padStart(10)} ${'MB/s'.padStart(7)} ${'CPU s/100k'.padStart(11)} ${'peak RSS MB'.padStart(12)} ${'received'.padStart(9)}`,
    ...r.runs.map(
      (x) =>
        `${(x.system === 'bare' ? 'bare pipeline' : 'sidecar').padEnd(16)} ${fmt(x.events / (x.wallMs / 1000)).padStart(10)} ${fmt(x.frameBytes / 1_048_576 / (x.wallMs / 1000), 1).padStart(7)} ${fmt((x.cpuMs / 1000 / x.events) * 100_000, 2).padStart(11)} ${fmt(x.peakRssMb).padStart(12)} ${fmt(x.received).padStart(9)}`,
    ),
    `sidecar / bare: ${fmt(r.ratio.eventsPerSec * 100)}% of the events/s, ${fmt(r.ratio.cpuPerEvent, 1)}x the CPU per event, ${fmt(r.ratio.peakRss, 1)}x the peak RSS`,
    ...r.runs.flatMap((x) => [`memory of the ${x.system === 'bare' ? 'bare pipeline' : 'sidecar'} per phase:`, formatPhases(x.memory)]),
  ];
  process.stdout.write(lines.join('\n') + '\n');
}

// ------------------------------------------------------------------------------------------------

const argv = process.argv.slice(2);
const arg = (name: string) => {
  const i = argv.indexOf(name);
  return i >= 0 ? argv[i + 1] : undefined;
};
if (import.meta.url === pathToFileURL(process.argv[1] ?? '').href) {
  const role = arg('--role');
  if (role === 'receiver') await runReceiver();
  else if (role === 'sidecar') await runSidecar(arg('--sim')!, Number(arg('--port')), Number(arg('--events')));
  else if (role === 'bare') await runBare(arg('--sim')!, Number(arg('--port')), Number(arg('--events')));
  else await runPodBench({ events: arg('--events') ? Number(arg('--events')) : undefined });
}
