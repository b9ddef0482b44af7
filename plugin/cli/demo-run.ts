/**
 * What `demo` runs (plugin/cli/demo.ts defines the command and loads this file only for it).
 */
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { Writable } from 'node:stream';
import { loadConfigObject, readConfigDocument } from '../config/load.ts';
import type { Config, OutputConfig } from '../config/schema.ts';
import type { ServiceCounters } from '../pipeline/pipeline.ts';
import { Sidecar } from '../sidecar.ts';
import { createLogger, type LogLevel } from '../telemetry/logger.ts';
import { systemClock } from '../util/clock.ts';
import { startPodSimulator, type PodSimulator } from '../simulator/pod/index.ts';
import { startTapSimulator, type TapSimulator } from '../simulator/tap/index.ts';
import { reportError, UsageError } from './common.ts';
import { DEFAULT_DEMO_DURATION, parseDemoDuration, type DemoArgs } from './demo.ts';
import { runUntilSignal } from './run.ts';

/** Seconds between progress lines. */
const PROGRESS_EVERY_MS = 2_000;
/** `demo` stops the sidecar within this; a Fluent Bit that never acknowledges costs no longer. */
const DEMO_SHUTDOWN_TIMEOUT_SECS = 5;

/**
 * Starts both simulators on loopback and a sidecar on them with a temporary state directory, runs
 * it for --duration, stops it the way SIGTERM does (drain, commit) and prints a summary per service.
 * TAP starts two hours back, so its backfill shows events at once; POD streams live.
 *
 * The console stays readable: stdout carries the demo's report (one sample record per source,
 * pretty-printed, then a progress line every few seconds and the summary), stderr the sidecar's
 * own log. With --records every record goes to stdout as a JSON line and the report to stderr.
 * With the forward output the records are Fluent Bit's to show (fluent-bit/stdout.example.conf
 * prints them); the demo exits 1 when Fluent Bit acknowledged none of them.
 */
export async function runDemo(args: DemoArgs): Promise<number> {
  let output: Record<string, unknown>;
  let durationMs: number;
  try {
    durationMs = parseDemoDuration(args.duration ?? DEFAULT_DEMO_DURATION);
    output = demoOutput(args);
  } catch (err) {
    return reportError(err);
  }
  const report: NodeJS.WritableStream = args.records ? process.stderr : process.stdout;
  const logLevel = args.logLevel ?? 'warn';
  const stateDir = mkdtempSync(path.join(tmpdir(), 'proofpoint-sidecar-demo-'));
  let keepStateDir = false;
  const tap = await startTapSimulator({ ratesPerHour: { clicksBlocked: 60, clicksPermitted: 120, messagesBlocked: 60, messagesDelivered: 240 } });
  const pod = await startPodSimulator({ rate: { message: 1, maillog: 2, audit: 0.2 } });
  try {
    const loaded = loadDemoConfig(args, demoConfig(tap, pod, output, { logLevel, stateDir }));
    if (typeof loaded === 'number') return loaded;
    const run = await runSidecar({ args, config: loaded.config, logLevel, durationMs, report, urls: { tap: tap.url, pod: pod.url } });
    keepStateDir = run.keepStateDir;
    return run.code;
  } finally {
    await Promise.all([tap.close(), pod.close()]);
    if (!keepStateDir) rmSync(stateDir, { recursive: true, force: true });
  }
}

/** The demo's raw configuration: both inputs on the simulators, TAP two hours back, the chosen output. */
function demoConfig(tap: TapSimulator, pod: PodSimulator, output: Record<string, unknown>, o: { logLevel: LogLevel; stateDir: string }): Record<string, unknown> {
  const start = new Date(systemClock.now() - 2 * 3600_000).toISOString();
  const tapService = { start_time_in_utc: start, request_period_in_seconds: 10 };
  const podService = { request_period_in_seconds: 5 };
  return {
    globals: { name: 'proofpoint-sidecar-demo', log_level: o.logLevel, state_dir: o.stateDir, shutdown_timeout_secs: DEMO_SHUTDOWN_TIMEOUT_SECS },
    output,
    inputs: {
      proofpoint_tap: {
        id: 'demo-tap',
        credentials: tap.credentials,
        override_url_base: tap.url,
        window_lag_secs: 30,
        services: { clicksBlocked: tapService, clicksPermitted: tapService, messagesBlocked: tapService, messagesDelivered: tapService },
      },
      proofpoint_on_demand: {
        id: 'demo-pod',
        credentials: pod.credentials,
        override_url_base: pod.url,
        services: { message: podService, maillog: podService, audit: podService },
      },
    },
  };
}

interface DemoRun {
  args: DemoArgs;
  config: Config;
  logLevel: LogLevel;
  durationMs: number;
  report: NodeJS.WritableStream;
  urls: { tap: string; pod: string };
}

/** Runs the sidecar for the demo's duration and reports; `keepStateDir` when dead letters are worth a look. */
async function runSidecar(d: DemoRun): Promise<{ code: number; keepStateDir: boolean }> {
  const { args, config, report } = d;
  const say = (line: string) => report.write(`${line}\n`);
  const logger = createLogger({ level: d.logLevel, name: 'proofpoint-sidecar-demo' });
  const target = describeOutput(config.output);
  const records = config.output.type === 'stdout' ? new RecordConsole(args.records ? process.stdout : undefined, report) : undefined;
  say(introduction(d, target));
  const startedAt = systemClock.now();
  let sidecar: Sidecar;
  try {
    sidecar = await Sidecar.start({ config, logger, stdout: records });
  } catch (err) {
    return { code: reportError(err), keepStateDir: false };
  }
  const progress = setInterval(() => say(progressLine(sidecar, systemClock.now() - startedAt)), PROGRESS_EVERY_MS);
  progress.unref();
  let code: number;
  try {
    code = await runUntilSignal(sidecar, logger, d.durationMs > 0 ? { durationMs: d.durationMs } : {});
  } finally {
    clearInterval(progress);
  }
  const counters = sidecar.pipeline.counters();
  const totals = total(counters);
  say('');
  say(summary(counters, systemClock.now() - startedAt, target));
  const keepStateDir = totals.deadLettered > 0;
  if (keepStateDir) say(`Dead letters are kept in ${sidecar.pipeline.deadLetterPath} (remove ${config.globals.state_dir} when done).`);
  if (config.output.type === 'forward' && totals.received > 0 && totals.sent === 0) {
    say(
      `Nothing was acknowledged by the ${target}: is Fluent Bit running and listening there? ` +
        'For example: FORWARD_LISTEN=127.0.0.1 FORWARD_PORT=24224 FLUENT_BIT_STORAGE_PATH=/tmp/fluent-bit-storage fluent-bit -c fluent-bit/stdout.example.conf',
    );
    return { code: code === 0 ? 1 : code, keepStateDir };
  }
  return { code, keepStateDir };
}

/** What the demo connects, how long it runs, and where records and logs go. */
function introduction(d: DemoRun, target: string): string {
  const { args, config } = d;
  return [
    `Demo: TAP simulator ${d.urls.tap} and POD simulator ${d.urls.pod} -> sidecar -> ${target}.`,
    d.durationMs > 0 ? `Stops by itself after ${seconds(d.durationMs)} (--duration); Ctrl-C stops sooner.` : 'Runs until Ctrl-C (--duration 0).',
    config.output.type === 'stdout'
      ? args.records
        ? 'Every record follows on stdout as a JSON line; this report goes to stderr.'
        : 'One record of each source is shown, then counts (--records prints every record as a JSON line).'
      : 'Records are shown by Fluent Bit (fluent-bit/stdout.example.conf prints them); here: counts.',
    `The sidecar's own log goes to stderr at level ${d.logLevel} (--log-level info shows every pull).`,
  ].join('\n');
}

/** Loads the demo's configuration; a bad output section (from --config) is reported and its exit code returned. */
function loadDemoConfig(args: DemoArgs, raw: Record<string, unknown>): { config: Config } | number {
  // Relative `*_file` paths of the output (tls, shared_key_file) are relative to the --config file.
  const baseDir = args.config !== undefined ? path.dirname(path.resolve(args.config)) : process.cwd();
  try {
    return loadConfigObject(raw, { baseDir });
  } catch (err) {
    return reportError(err);
  }
}

/** The raw output section: --host/--port/--output over the --config file's section over the defaults. */
function demoOutput(args: DemoArgs): Record<string, unknown> {
  const fromFile = args.config !== undefined ? readOutputSection(args.config) : undefined;
  const fileType = isObject(fromFile) ? (fromFile.type ?? 'forward') : undefined;
  const byFlags = args.host !== undefined || args.port !== undefined ? 'forward' : undefined;
  const type = args.output ?? byFlags ?? fileType ?? 'stdout';
  if (type === 'stdout') {
    if (byFlags) throw new UsageError('--host and --port are for --output forward');
    return fileType === 'stdout' ? (fromFile as Record<string, unknown>) : { type: 'stdout' };
  }
  // Any other type comes from the file: the loader says what is allowed.
  if (type !== 'forward') return fromFile as Record<string, unknown>;
  if (args.records) throw new UsageError('--records is for the stdout output: with --output forward, Fluent Bit shows the records');
  const base = isObject(fromFile) && fileType === 'forward' ? fromFile : {};
  const raw: Record<string, unknown> = { ...base, type: 'forward' };
  if (args.host !== undefined) raw.host = args.host;
  if (args.port !== undefined) raw.port = args.port;
  if (args.host !== undefined || args.port !== undefined) delete raw.unix_path;
  return raw;
}

/**
 * The `output:` mapping of a configuration file as written, `${VAR}` references kept for the
 * loader to substitute: the inputs (and the credentials they reference) are neither read nor needed.
 */
function readOutputSection(file: string): unknown {
  const { raw } = readConfigDocument(file);
  return isObject(raw) ? raw.output : undefined;
}

function isObject(v: unknown): v is Record<string, unknown> {
  return typeof v === 'object' && v !== null && !Array.isArray(v);
}

function describeOutput(o: OutputConfig): string {
  if (o.type === 'stdout') return 'stdout';
  return `Fluent Bit forward ${o.unix_path ?? `${o.host}:${o.port}`}${o.tls ? ' (TLS)' : ''}${o.shared_key !== undefined ? ' (shared key)' : ''}`;
}

/**
 * The stdout output's stream for the demo: counts records, pretty-prints the first of each
 * source to `report`, and passes every line on to `all` when given. A write is done when `all`
 * took it (or at once without `all`): the stdout output acknowledges records on that callback.
 */
class RecordConsole extends Writable {
  records = 0;
  readonly #all?: NodeJS.WritableStream;
  readonly #report: NodeJS.WritableStream;
  readonly #shown = new Set<string>();

  constructor(all: NodeJS.WritableStream | undefined, report: NodeJS.WritableStream) {
    super();
    this.#all = all;
    this.#report = report;
  }

  override _write(chunk: Buffer, _enc: BufferEncoding, cb: (err?: Error | null) => void): void {
    const text = chunk.toString('utf8');
    const lines = text.split('\n').filter((l) => l.length > 0);
    this.records += lines.length;
    if (!this.#all && this.#shown.size < 2) {
      for (const line of lines) {
        const shown = this.#sample(line);
        if (shown && this.#shown.size >= 2) break;
      }
    }
    if (this.#all) this.#all.write(chunk, (err) => cb(err ?? null));
    else cb();
  }

  #sample(line: string): boolean {
    let rec: { tag: string; time: string; record: Record<string, unknown> };
    try {
      rec = JSON.parse(line) as typeof rec;
    } catch {
      return false;
    }
    const source = SOURCE_LABEL[String(rec.record.source)] ?? String(rec.record.source);
    if (this.#shown.has(source)) return false;
    this.#shown.add(source);
    let message: unknown = rec.record.message;
    try {
      message = JSON.parse(String(message));
    } catch {
      // shown as the text it is
    }
    const { message: _m, ...fields } = rec.record;
    this.#report.write(
      [
        '',
        `First ${source} record: tag ${rec.tag}, time ${rec.time}`,
        ...Object.entries(fields).map(([k, v]) => `  ${k}: ${typeof v === 'string' ? v : JSON.stringify(v)}`),
        '  message (the vendor event, sent as one JSON string; shown expanded):',
        indent(JSON.stringify(message, null, 2), '    '),
        '',
      ].join('\n') + '\n',
    );
    return true;
  }
}

function indent(text: string, by: string): string {
  return text
    .split('\n')
    .map((l) => by + l)
    .join('\n');
}

interface Totals {
  received: number;
  duplicates: number;
  deadLettered: number;
  sent: number;
}

function total(counters: ServiceCounters[]): Totals {
  const t: Totals = { received: 0, duplicates: 0, deadLettered: 0, sent: 0 };
  for (const c of counters) {
    t.received += c.received;
    t.duplicates += c.duplicates;
    t.deadLettered += c.deadLettered;
    t.sent += c.sent;
  }
  return t;
}

const n = (x: number) => x.toLocaleString('en-US');
const seconds = (ms: number) => `${(ms / 1000).toFixed(ms % 1000 === 0 ? 0 : 1)} s`;

function progressLine(sidecar: Sidecar, elapsedMs: number): string {
  const t = total(sidecar.pipeline.counters());
  const s = sidecar.sink.stats();
  const out = sidecar.config.output.type === 'forward' ? ` · output ${s.connected ? 'connected' : 'not connected (retrying)'}, ${n(s.pendingRecords)} awaiting ack` : '';
  return `[${(elapsedMs / 1000).toFixed(1).padStart(5)} s] ${n(t.received)} events received · ${n(t.sent)} committed · ${n(t.duplicates)} duplicates dropped · ${n(t.deadLettered)} dead letters${out}`;
}

/**
 * One row per service and a total: events received from the simulator, duplicates dropped,
 * dead letters, and committed (acknowledged by the output, then cursor and de-dup keys written).
 */
export function summary(counters: ServiceCounters[], elapsedMs: number, target: string): string {
  const head = ['service', 'tag', 'received', 'duplicates dropped', 'dead letters', 'committed'];
  const rows = counters.map((c) => [`${SOURCE_LABEL[c.source] ?? c.source} ${c.service}`, c.tag, n(c.received), n(c.duplicates), n(c.deadLettered), n(c.sent)]);
  const t = total(counters);
  rows.push(['total', '', n(t.received), n(t.duplicates), n(t.deadLettered), n(t.sent)]);
  const widths = head.map((h, i) => Math.max(h.length, ...rows.map((r) => r[i]!.length)));
  const fmt = (r: string[]) => `  ${r.map((v, i) => (i < 2 ? v.padEnd(widths[i]!) : v.padStart(widths[i]!))).join('  ')}`.trimEnd();
  return [
    `Demo summary after ${seconds(elapsedMs)}, output ${target}:`,
    fmt(head),
    ...rows.map(fmt),
    'committed: acknowledged by the output, then the cursor and de-dup keys were written (state in a temporary directory, removed now).',
  ].join('\n');
}

const SOURCE_LABEL: Record<string, string> = { proofpoint_tap: 'TAP', proofpoint_on_demand: 'POD' };
