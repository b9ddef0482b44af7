/**
 * The PoD behaviour matrix (one file per profile beside this one): every simulator server profile (plugin/simulator/pod/scenario.ts, each
 * a reading of the vendor its documents do not rule out) against every fault we can cause here.
 * The sidecar is the real binary (`plugin/main.ts run`) in a child process; its output is a real
 * Fluent Bit when FLUENT_BIT_BIN names one (forward input with filesystem storage, file output),
 * else the test forward receiver. The faults:
 *
 *  - steady: nothing goes wrong on our side;
 *  - stall: in the middle of an archive window, the output withholds its acks (Fluent Bit is
 *    stopped with SIGSTOP; the receiver holds them) for several idle timeouts: the sidecar pauses
 *    the socket, the server goes quiet, and that silence must not end the window;
 *  - crash: in the middle of an archive window, with chunks sent and not acknowledged, the
 *    sidecar is killed with SIGKILL, then started again on the same state.
 *
 * Each run replays about an hour from a `start_time`, streams live, has its live session dropped
 * once (the profile decides how the server resumes) and ends past the next hour boundary, so
 * the hours served partially are asked whole. It must deliver every event the simulator served
 * and every event from the replay's start up to the live position (an event the server never
 * sent counts too): none missing. Events delivered twice may only be those in flight at a kill.
 *
 * The child's clock is moved with the test's (test/helpers/shifted-clock.mjs).
 */
import { test, after } from 'node:test';
import assert from 'node:assert/strict';
import { spawn, type ChildProcess } from 'node:child_process';
import { once } from 'node:events';
import { closeSync, existsSync, openSync, readSync, fstatSync, writeFileSync } from 'node:fs';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { startPodSimulator, POD_PROFILES, type PodProfileName, type PodSimulator } from '../../../../plugin/simulator/pod/index.ts';
import { frameKey } from '../../../../plugin/sources/pod/identity.ts';
import { StateStore, scopeOf } from '../../../../plugin/state/store.ts';
import { ForwardReceiver } from '../../../helpers/forward-receiver.ts';
import { startFluentBit } from '../../../helpers/fluent-bit.ts';
import { freePort } from '../../../helpers/net.ts';
import { tmpDir } from '../../../helpers/tmp.ts';
import { API_KEY, OffsetClock, simBase, until } from '../harness.ts';

const root = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '../../../..');
const SHIFTED_CLOCK = path.join(root, 'test/helpers/shifted-clock.mjs');
const BIN = process.env.FLUENT_BIT_BIN;
const INPUT_ID = 'pod-matrix';
const MIN = 60_000;
/**
 * The matrix streams `message` events, 3 a second, every 40th padded to 32 KiB: a one-hour window
 * is ~10,800 events and ~32 MB, more than the kernel's socket buffers and the sidecar's bounds
 * can hold, so a stall in the middle of a window does pause the socket.
 */
const TYPE = 'message';
const RATE = 3;
/** Stall length, against archive_idle_timeout_secs 1. */
const STALL_MS = 3_500;

export type Fault = 'steady' | 'stall' | 'crash';

export interface Row {
  profile: string;
  fault: Fault;
  output: string;
  served: number;
  delivered: number;
  missing: number;
  /** Not delivered yet, in the replay the final cursor owes (a server resuming live from "now"). */
  owed: number;
  duplicates: number;
  inFlight: number;
  /** Stall: the window stayed open with the server silent for longer than the idle timeout. */
  quietWindow?: boolean;
  sessions: string;
}

/** OffsetClock whose offset is also written where a child's shifted clock reads it. */
class SharedClock extends OffsetClock {
  constructor(readonly file: string) {
    super();
    this.#write();
  }
  override jump(ms: number): void {
    super.jump(ms);
    this.#write();
  }
  override beforeHourEnd(ms: number): void {
    super.beforeHourEnd(ms);
    this.#write();
  }
  #write(): void {
    writeFileSync(this.file, String(this.offset));
  }
}

/** Where the sidecar delivers: what came out, and a way to make it withhold acks. */
interface Output {
  readonly name: string;
  readonly port: number;
  /** The `message` of every record delivered so far, in order (repeats included). */
  texts(): string[];
  hold(): void;
  release(): void;
  /** Waits until what was accepted has come out (Fluent Bit flushes on its own schedule). */
  settle(): Promise<void>;
  close(): Promise<void>;
}

async function receiverOutput(): Promise<Output> {
  const receiver = new ForwardReceiver();
  await receiver.listen(0);
  return {
    name: 'receiver',
    port: receiver.port,
    texts: () => receiver.records.map((r) => r.record.message as string),
    hold: () => receiver.holdAcks(),
    release: () => {
      receiver.autoAck();
      receiver.releaseAcks();
    },
    settle: async () => {},
    close: () => receiver.close(),
  };
}

/** A real Fluent Bit (test/helpers/fluent-bit.ts), its file output read as it grows. */
async function fluentBitOutput(bin: string, dir: string): Promise<Output> {
  const fb = await startFluentBit(bin, dir, { flush: 0.2, logLevel: 'warn' });
  const file = fb.recordsFile;
  // out_file writes `<tag>: [<time>, {record}]` per line; read only what was appended.
  const texts: string[] = [];
  let offset = 0;
  let partial = '';
  const read = (): string[] => {
    if (!existsSync(file)) return texts;
    const fd = openSync(file, 'r');
    try {
      const size = fstatSync(fd).size;
      if (size > offset) {
        const buf = Buffer.alloc(size - offset);
        readSync(fd, buf, 0, buf.length, offset);
        offset = size;
        const lines = (partial + buf.toString('utf8')).split('\n');
        partial = lines.pop()!;
        for (const line of lines) {
          if (!line) continue;
          const [, record] = JSON.parse(line.slice(line.indexOf(': [') + 2)) as [number, { message: string }];
          texts.push(record.message);
        }
      }
    } finally {
      closeSync(fd);
    }
    return texts;
  };
  return {
    name: 'fluent-bit',
    port: fb.port,
    texts: read,
    hold: () => fb.proc.kill('SIGSTOP'),
    release: () => fb.proc.kill('SIGCONT'),
    // Until nothing new has come out for 0.7 s (flush is 0.2 s).
    settle: async () => {
      let n = -1;
      while (read().length !== n) {
        n = texts.length;
        await new Promise((r) => setTimeout(r, 700));
      }
    },
    close: async () => {
      if (fb.proc.exitCode !== null) return;
      fb.proc.kill('SIGCONT');
      fb.proc.kill('SIGTERM');
      await once(fb.proc, 'exit');
    },
  };
}

interface Child {
  proc: ChildProcess;
  output: string[];
}

function startChild(configPath: string, clockFile: string): Child {
  const output: string[] = [];
  const proc = spawn(process.execPath, ['--import', 'tsx', '--import', SHIFTED_CLOCK, path.join(root, 'plugin/main.ts'), 'run', '--config', configPath], {
    cwd: root,
    env: { ...process.env, POD_API_KEY: API_KEY, SIDECAR_TEST_CLOCK_FILE: clockFile, FORCE_COLOR: '0' },
    stdio: ['ignore', 'pipe', 'pipe'],
  });
  proc.stdout!.on('data', (c: Buffer) => output.push(c.toString()));
  proc.stderr!.on('data', (c: Buffer) => output.push(c.toString()));
  return { proc, output };
}

/** The replay gauges of the child's /metrics (null while it does not answer). */
async function replayGauges(port: number): Promise<{ active: boolean; position: number } | null> {
  try {
    const text = await (await fetch(`http://127.0.0.1:${port}/metrics`)).text();
    const value = (name: string) => Number(new RegExp(`^proofpoint_sidecar_${name}\\{[^}]*service="${TYPE}"[^}]*\\} (\\S+)$`, 'm').exec(text)?.[1] ?? NaN);
    return { active: value('pod_archive_replay_active') === 1, position: value('pod_archive_replay_position_timestamp_seconds') * 1000 };
  } catch {
    return null;
  }
}

const textCache = new WeakMap<PodSimulator, Map<number, string>>();
function textOf(sim: PodSimulator, seq: number): string {
  let m = textCache.get(sim);
  if (!m) textCache.set(sim, (m = new Map()));
  let t = m.get(seq);
  if (t === undefined) m.set(seq, (t = sim.events.event(TYPE, seq).text));
  return t;
}

/**
 * What must be delivered: every event the simulator sent to any session, and every event from
 * the replay's first hour up to where the last live session stands.
 */
function expectedSeqs(sim: PodSimulator): Map<number, string> {
  const out = new Map<number, string>();
  for (const seq of sim.servedSeqs(TYPE)) out.set(seq, textOf(sim, seq));
  const ok = sim.sessions.filter((s) => s.status === 101);
  const first = ok.find((s) => s.mode === 'archive');
  const live = ok.filter((s) => s.mode === 'live').at(-1);
  if (first && live) {
    for (let seq = sim.events.firstAtOrAfter(TYPE, first.windowFrom!); seq < live.nextSeq!; seq++) out.set(seq, textOf(sim, seq));
  }
  return out;
}

export async function runCell(profile: PodProfileName, fault: Fault): Promise<Row> {
  const dir = tmpDir();
  // Five minutes into an hour, the replay starts at the hour before: its first window is whole
  // (so even a server that refuses every partial window serves one in full). Archive windows
  // end on whole past hours: the run ends by moving the clock past the next hour boundary, so
  // the hour served partially so far is asked whole, as it would be in time.
  const clock = new SharedClock(path.join(dir, 'clock-offset'));
  clock.beforeHourEnd(55 * MIN);
  const start = new Date(clock.now() - 65 * MIN).toISOString();
  const sim = await startPodSimulator({ ...simBase(clock), profiles: [profile], rate: { message: RATE, maillog: 0, audit: 0 }, largeEvery: 40, largeFrameBytes: 32_768, historyMs: 120 * MIN, archiveStalenessMs: 1_000 });
  const out = BIN ? await fluentBitOutput(BIN, dir) : await receiverOutput();
  const httpPort = await freePort();
  const stateDir = path.join(dir, 'state');
  // A server that resumes live sessions from "now" loses the moments of every reconnect, the
  // sidecar's own included: that reading needs replay_live_interruptions (docs/operations.md).
  const everyReconnect = profile === 'live-resume-now';
  const configPath = path.join(dir, 'sidecar.json');
  writeFileSync(
    configPath,
    JSON.stringify({
      globals: { state_dir: stateDir, log_level: 'info', shutdown_timeout_secs: 10, http: { listen: `127.0.0.1:${httpPort}` } },
      output: { type: 'forward', host: '127.0.0.1', port: out.port, chunk_bytes: 65_536, queue_max_bytes: 1_048_576 },
      inputs: {
        proofpoint_on_demand: {
          id: INPUT_ID,
          credentials: { cluster_id: sim.credentials.cluster_id, api_key: '${POD_API_KEY}' },
          override_url_base: sim.url,
          archive_staleness_secs: 2,
          archive_idle_timeout_secs: 1,
          batch_flush_secs: 0.05,
          batch_max_events: 1_000,
          max_buffered_frames: 2_000,
          retry_max_secs: 2,
          // The simulator compresses in this process; the matrix is about sessions, not zlib.
          per_message_deflate: false,
          replay_live_interruptions: everyReconnect,
          services: { [TYPE]: { request_period_in_seconds: 1, start_time: start } },
        },
      },
    }),
  );
  const children: Child[] = [];
  const launch = () => {
    const c = startChild(configPath, clock.file);
    children.push(c);
    return c;
  };
  const logs = () => children.flatMap((c) => c.output).join('').split('\n').filter((l) => l && !/statistics/.test(l));
  let inFlight = 0;
  let quietWindow: boolean | undefined;
  try {
    let child = launch();
    // In the middle of an archive window: a session under way that has sent a good part of its
    // hour (the first window, the whole hour before, holds ~10,800 events).
    const midWindow = () => {
      const s = sim.sessions.at(-1);
      return s !== undefined && s.mode === 'archive' && s.status === 101 && s.endedAt === undefined && s.eventsSent >= 3_000;
    };
    await until(midWindow, 'an archive window under way', 30_000);
    if (fault === 'stall') {
      const window = sim.sessions.at(-1)!;
      out.hold();
      // Evidence that the stall did what it is for: the window stayed open while the server sent
      // nothing for longer than the idle timeout (the sidecar had stopped reading).
      await new Promise((r) => setTimeout(r, STALL_MS - 1_500));
      const sent = window.eventsSent;
      await new Promise((r) => setTimeout(r, 1_500));
      // (Unless the profile's server cut the window short itself, before or during the stall.)
      quietWindow = window.cut === true || (window.endedAt === undefined && window.eventsSent === sent);
      out.release();
    } else if (fault === 'crash') {
      out.hold();
      // Chunks go out and stay unacknowledged; then the process dies without a word.
      await new Promise((r) => setTimeout(r, 1_000));
      child.proc.kill('SIGKILL');
      await once(child.proc, 'exit');
      out.release();
      await out.settle();
      // Delivered and never committed: the only events allowed twice.
      const keys = [...new Set(out.texts())].map(frameKey);
      const store = await StateStore.open(stateDir, { maintenance: true });
      try {
        assert.equal(store.uncleanShutdown, true, 'the unclean-shutdown marker survived the kill');
        inFlight = (await store.seen.has(scopeOf(INPUT_ID, TYPE), keys)).filter((c) => !c).length;
      } finally {
        await store.close();
      }
      child = launch();
    }
    // Live, caught up, then one drop of the live session; the profile decides what resumes.
    const liveOpen = () => sim.sessions.at(-1)?.mode === 'live' && sim.sessions.at(-1)?.status === 101 && sim.openSessions(TYPE) === 1;
    await until(liveOpen, 'live after the replay', 40_000);
    await new Promise((r) => setTimeout(r, 500));
    const before = sim.sessions.length;
    sim.drop(TYPE);
    await until(() => sim.sessions.length > before && liveOpen(), 'live again after the drop', 20_000);
    await new Promise((r) => setTimeout(r, 1_000));
    clock.jump(clock.toHourEnd() + 3_000);
    // Done when no replay is owed and everything expected is there; where every reconnect is
    // replayed, a replay stays owed, and what it covers is allowed to be still missing.
    let checked = 0;
    await until(
      async () => {
        if (Date.now() - checked < 500) return false;
        checked = Date.now();
        const g = await replayGauges(httpPort);
        if (!g || !liveOpen()) return false;
        if (g.active && !everyReconnect) return false;
        const have = new Set(out.texts());
        for (const [seq, t] of expectedSeqs(sim)) if (!have.has(t) && !(g.active && sim.events.event(TYPE, seq).tsMs >= g.position)) return false;
        return true;
      },
      `every event delivered and no replay owed (${profile}, ${fault})`,
      40_000,
    ).catch(() => undefined);
    child.proc.kill('SIGTERM');
    const [code] = (await once(child.proc, 'exit')) as [number | null];
    assert.equal(code, 0, `clean exit on SIGTERM:\n${logs().slice(-30).join('\n')}`);
    await out.settle();

    const store = await StateStore.open(stateDir, { maintenance: true });
    const owedSpan = ((await store.getCursor<{ owed?: { from: number; until: number } }>(INPUT_ID, TYPE))?.cursor)?.owed;
    await store.close();
    const expected = expectedSeqs(sim);
    const got = out.texts();
    const have = new Set(got);
    const absent = [...expected].filter(([, t]) => !have.has(t));
    const isOwed = (seq: number) => {
      const ts = sim.events.event(TYPE, seq).tsMs;
      return owedSpan !== undefined && ts >= owedSpan.from && ts <= owedSpan.until;
    };
    const owed = absent.filter(([seq]) => isOwed(seq)).length;
    const row: Row = {
      profile,
      fault,
      output: out.name,
      served: expected.size,
      delivered: have.size,
      missing: absent.length - owed,
      owed,
      duplicates: got.length - have.size,
      inFlight,
      quietWindow,
      sessions: sim.sessions
        .filter((s) => s.status === 101)
        .map((s) => (s.mode === 'live' ? 'L' : 'A'))
        .join(''),
    };
    if (row.missing > 0 || process.env.POD_MATRIX_DEBUG) {
      const miss = absent.filter(([seq]) => !isOwed(seq)).slice(0, 20).map(([seq]) => ({ seq, ts: new Date(sim.events.event(TYPE, seq).tsMs).toISOString() }));
      const sessions = sim.sessions.map((x) => ({ id: x.id, mode: x.mode, status: x.status, from: x.windowFrom && new Date(x.windowFrom).toISOString(), to: x.windowTo && new Date(x.windowTo).toISOString(), first: x.firstSeq, next: x.nextSeq, sent: x.eventsSent }));
      console.log(JSON.stringify({ profile, fault, miss, owedSpan, sessions }, null, 1));
      console.log(logs().slice(-60).join('\n'));
    }
    return row;
  } finally {
    for (const c of children) if (c.proc.exitCode === null && c.proc.signalCode === null) c.proc.kill('SIGKILL');
    await out.close();
    await sim.close();
  }
}

const FAULTS: Fault[] = ['steady', 'stall', 'crash'];

/**
 * One test per fault for `profile` (a file per profile, so the files run side by side and each
 * stays within the runner's per-file timeout), the rows printed as a table at the end.
 * POD_MATRIX=fault,... runs only those faults (to look into one cell).
 */
export function matrixTests(profile: PodProfileName): void {
  if (!(profile in POD_PROFILES)) throw new Error(`unknown profile ${profile}`);
  const rows: Row[] = [];
  const only = process.env.POD_MATRIX?.split(',');
  for (const fault of FAULTS) {
    if (only && !only.includes(fault)) continue;
    test(`${profile} x ${fault}: every event served is delivered, repeats only what was in flight`, async () => {
      const r = await runCell(profile, fault);
      rows.push(r);
      assert.equal(r.missing, 0, `${r.missing} of ${r.served} events never delivered`);
      if (profile !== 'live-resume-now') assert.equal(r.owed, 0, `${r.owed} events still owed at the end`);
      assert.ok(r.served > 11_000, `the run served ${r.served} events`);
      assert.ok(r.duplicates <= r.inFlight, `${r.duplicates} delivered twice, ${r.inFlight} were in flight`);
      if (fault === 'crash') assert.ok(r.inFlight > 0, 'some events were in flight at the kill');
      if (fault === 'stall') assert.equal(r.quietWindow, true, 'the window stayed open and silent for longer than the idle timeout');
      assert.ok(r.sessions.includes('A') && r.sessions.includes('L'), `sessions ${r.sessions}`);
    });
  }
  after(() => {
    const cols: Array<keyof Row> = ['profile', 'fault', 'output', 'served', 'delivered', 'missing', 'owed', 'duplicates', 'inFlight', 'quietWindow', 'sessions'];
    const cell = (r: Row, c: keyof Row) => String(r[c] ?? '-');
    const width = (c: keyof Row) => Math.max(c.length, ...rows.map((r) => cell(r, c).length));
    const line = (cells: string[]) => cells.map((v, i) => v.padEnd(width(cols[i]!))).join('  ');
    console.log(['', `PoD behaviour matrix, profile ${profile}:`, line(cols), ...rows.map((r) => line(cols.map((c) => cell(r, c))))].join('\n'));
  });
}
