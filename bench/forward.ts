/**
 * Forward output throughput: 200,000 TAP-like records of about 2 KB each through ForwardSink,
 * then through @fluent-org/logger's FluentClient (PackedForward, acks on), both against the same
 * acknowledging receiver. Every party runs in its own process, so each client's CPU time and
 * peak RSS are its own: the receiver is a byte-level frame scanner that acks `{ack: chunk}` as
 * soon as a frame is whole, so it is never the bottleneck.
 *
 * Both clients keep at most ~64 MB of records unacknowledged (ForwardSink: queue_max_bytes via
 * waitForCapacity; FluentClient: a window of emit() promises) and send ~1 MB frames.
 *
 *   npm run bench              (bench/index.ts calls runForwardBench())
 *   npx tsx bench/forward.ts   [--records N]
 */
import { spawn, type ChildProcess } from 'node:child_process';
import net from 'node:net';
import { createInterface } from 'node:readline';
import { fileURLToPath, pathToFileURL } from 'node:url';

const SELF = fileURLToPath(import.meta.url);
const TAG = 'mail.proofpoint.tapsiem_v2.messagesdelivered';
const BATCH = 500;
/** Unacknowledged bytes allowed to each client, as ForwardSink's default queue_max_bytes. */
const WINDOW_BYTES = 64 * 1_048_576;

export interface ClientResult {
  client: string;
  records: number;
  wallMs: number;
  cpuMs: number;
  peakRssMb: number;
  /** As the receiver saw them. */
  wireBytes: number;
  frames: number;
  receivedRecords: number;
}

export interface ForwardBenchResult {
  records: number;
  /** One record as JSON, and as a msgpack PackedForward entry. */
  recordBytes: number;
  entryBytes: number;
  results: ClientResult[];
}

// ---------------------------------------------------------------------------------------------
// Records

const MESSAGE_TEMPLATE = (() => {
  const event = {
    GUID: '@@ID@@',
    QID: 'r2FNwRHF004109',
    ccAddresses: ['bruce.wayne@university-of-education.zz'],
    clusterId: 'pharmtech_hosted',
    completelyRewritten: 'true',
    fromAddress: 'badguy@evil.zz',
    headerFrom: '"A. Badguy" <badguy@evil.zz>',
    headerReplyTo: null,
    impostorScore: 0,
    malwareScore: 100,
    messageID: '20160624211145.62086.mail@evil.zz',
    messageParts: [
      {
        contentType: 'text/plain',
        disposition: 'inline',
        filename: 'text.txt',
        md5: '008c5926ca861023c1d2a36653fd88e2',
        oContentType: 'text/plain',
        sandboxStatus: 'unsupported',
        sha256: '85738f8f9a7f1b04b5329c590ebcb9e425925c6d0984089c43a022de4f19c281',
      },
      {
        contentType: 'application/pdf',
        disposition: 'attached',
        filename: 'Invoice for Order #004009.pdf',
        md5: '5873c7d37608e0d49bcaa6f32b6c731f',
        oContentType: 'application/pdf',
        sandboxStatus: 'threat',
        sha256: '2fab740f143fc1aa4c1cd0146d334c5593b1428f6d062b2c406e5efe8abe95ca',
      },
    ],
    messageTime: '2016-06-24T21:18:38.000Z',
    modulesRun: ['pdr', 'sandbox', 'spam', 'urldefense'],
    phishScore: 46,
    policyRoutes: ['default_inbound', 'executives'],
    quarantineFolder: 'Attachment Defense',
    quarantineRule: 'module.sandbox.threat',
    recipient: ['clark.kent@pharmtech.zz', 'diana.prince@pharmtech.zz'],
    replyToAddress: null,
    sender: 'e99d7ed5580193f36a51f597bc2c0210@evil.zz',
    senderIP: '192.0.2.255',
    spamScore: 4,
    subject: 'Please find a totally safe invoice attached.',
    threatsInfoMap: [
      {
        campaignId: '46e01b8a-c899-404d-bcd9-189bb393d1a7',
        classification: 'MALWARE',
        threat: '2fab740f143fc1aa4c1cd0146d334c5593b1428f6d062b2c406e5efe8abe95ca',
        threatId: '2fab740f143fc1aa4c1cd0146d334c5593b1428f6d062b2c406e5efe8abe95ca',
        threatStatus: 'active',
        threatTime: '2016-06-24T21:18:38.000Z',
        threatType: 'ATTACHMENT',
        threatUrl: 'https://threatinsight.proofpoint.com/#/73aa0499-dfc8-75eb-1de8-a471b24a2e75/threat/u/2fab740f143fc1aa4c1cd0146d334c5593b1428f6d062b2c406e5efe8abe95ca',
      },
    ],
    toAddresses: [],
    xmailer: 'Spambot v2.5',
  };
  let text = JSON.stringify(event);
  // Pad to about 1.9 KB with a field real events carry in varying sizes.
  const pad = Math.max(0, 1900 - text.length - 16);
  text = JSON.stringify({ ...event, headerTo: 'x'.repeat(pad) });
  return text.split('@@ID@@') as [string, string];
})();

function makeRecord(i: number): Record<string, unknown> {
  return {
    message: MESSAGE_TEMPLATE[0] + `f${i.toString(16).padStart(8, '0')}-bench` + MESSAGE_TEMPLATE[1],
    devo_tag: TAG,
    source: 'proofpoint_tap',
    service: 'messages_delivered',
    input_id: '100001',
    pulling_id: 1795355887000 + (i % 1000),
  };
}

const RECORD_JSON_BYTES = Buffer.byteLength(JSON.stringify(makeRecord(0)));

// ---------------------------------------------------------------------------------------------
// Receiver process: scans frames at byte level and acks each one.

/** The offset after the msgpack value at `pos`, or -1 if `b` ends first. */
function skipValue(b: Buffer, pos: number): number {
  let remaining = 1;
  while (remaining > 0) {
    if (pos >= b.length) return -1;
    const t = b[pos]!;
    remaining--;
    if (t <= 0x7f || t >= 0xe0 || t === 0xc0 || t === 0xc2 || t === 0xc3) pos += 1;
    else if ((t & 0xe0) === 0xa0) pos += 1 + (t & 0x1f);
    else if ((t & 0xf0) === 0x90) (remaining += t & 0x0f), (pos += 1);
    else if ((t & 0xf0) === 0x80) (remaining += 2 * (t & 0x0f)), (pos += 1);
    else {
      const avail = b.length - pos;
      switch (t) {
        case 0xc4:
        case 0xd9:
          if (avail < 2) return -1;
          pos += 2 + b[pos + 1]!;
          break;
        case 0xc5:
        case 0xda:
          if (avail < 3) return -1;
          pos += 3 + b.readUInt16BE(pos + 1);
          break;
        case 0xc6:
        case 0xdb:
          if (avail < 5) return -1;
          pos += 5 + b.readUInt32BE(pos + 1);
          break;
        case 0xc7:
          if (avail < 2) return -1;
          pos += 3 + b[pos + 1]!;
          break;
        case 0xc8:
          if (avail < 3) return -1;
          pos += 4 + b.readUInt16BE(pos + 1);
          break;
        case 0xc9:
          if (avail < 5) return -1;
          pos += 6 + b.readUInt32BE(pos + 1);
          break;
        case 0xcc:
        case 0xd0:
          pos += 2;
          break;
        case 0xcd:
        case 0xd1:
        case 0xd4:
          pos += 3;
          break;
        case 0xd5:
          pos += 4;
          break;
        case 0xca:
        case 0xce:
        case 0xd2:
          pos += 5;
          break;
        case 0xd6:
          pos += 6;
          break;
        case 0xcb:
        case 0xcf:
        case 0xd3:
          pos += 9;
          break;
        case 0xd7:
          pos += 10;
          break;
        case 0xd8:
          pos += 18;
          break;
        case 0xdc:
          if (avail < 3) return -1;
          remaining += b.readUInt16BE(pos + 1);
          pos += 3;
          break;
        case 0xdd:
          if (avail < 5) return -1;
          remaining += b.readUInt32BE(pos + 1);
          pos += 5;
          break;
        case 0xde:
          if (avail < 3) return -1;
          remaining += 2 * b.readUInt16BE(pos + 1);
          pos += 3;
          break;
        case 0xdf:
          if (avail < 5) return -1;
          remaining += 2 * b.readUInt32BE(pos + 1);
          pos += 5;
          break;
        default:
          throw new Error(`bad msgpack byte 0x${t.toString(16)}`);
      }
    }
  }
  return pos <= b.length ? pos : -1;
}

function readStr(b: Buffer, pos: number): [Buffer, number] | undefined {
  const t = b[pos]!;
  let start: number, len: number;
  if ((t & 0xe0) === 0xa0) (start = pos + 1), (len = t & 0x1f);
  else if (t === 0xd9) (start = pos + 2), (len = b[pos + 1]!);
  else if (t === 0xda) (start = pos + 3), (len = b.readUInt16BE(pos + 1));
  else return undefined;
  return [b.subarray(start, start + len), start + len];
}

async function runReceiver(): Promise<void> {
  const totals = { frames: 0, records: 0, bytes: 0 };
  const server = net.createServer((socket) => {
    socket.setNoDelay(true);
    let parts: Buffer[] = [];
    let have = 0;
    let need = 1;
    socket.on('data', (d: Buffer) => {
      totals.bytes += d.length;
      parts.push(d);
      have += d.length;
      if (have < need) return;
      const buf = parts.length === 1 ? parts[0]! : Buffer.concat(parts, have);
      let pos = 0;
      const acks: Buffer[] = [];
      for (;;) {
        // [tag, entries, option]: find where the entries end first, to know how much to wait for.
        const start = pos;
        const afterTag = buf.length > pos + 1 ? skipValue(buf, pos + 1) : -1;
        const afterEntries = afterTag < 0 ? -1 : skipValue(buf, afterTag);
        const end = afterEntries < 0 ? -1 : skipValue(buf, afterEntries);
        if (end < 0) {
          // Wait for the whole payload at least, rather than re-scanning on every 64 KB read.
          const payloadEnd = afterTag < 0 ? -1 : entriesEnd(buf, afterTag);
          need = Math.max(buf.length - start + 1, payloadEnd - start + 1);
          break;
        }
        // option map: pick chunk and size.
        let p = afterEntries;
        const h = buf[p]!;
        const n = (h & 0xf0) === 0x80 ? h & 0x0f : 0;
        p += 1;
        let chunk: Buffer | undefined;
        for (let i = 0; i < n; i++) {
          const key = readStr(buf, p);
          if (!key) break;
          const valEnd = skipValue(buf, key[1]);
          const k = key[0].toString('latin1');
          if (k === 'chunk') chunk = readStr(buf, key[1])?.[0];
          else if (k === 'size') totals.records += readUint(buf, key[1]);
          p = valEnd;
        }
        totals.frames++;
        if (chunk) acks.push(Buffer.concat([Buffer.from([0x81, 0xa3, 0x61, 0x63, 0x6b, 0xa0 | chunk.length]), chunk]));
        pos = end;
        if (pos === buf.length) {
          need = 1;
          break;
        }
      }
      const rest = buf.subarray(pos);
      parts = rest.length ? [rest] : [];
      have = rest.length;
      if (acks.length) socket.write(Buffer.concat(acks));
    });
    socket.on('error', () => {});
  });
  await new Promise<void>((r) => server.listen(0, '127.0.0.1', r));
  process.stdout.write(JSON.stringify({ port: (server.address() as net.AddressInfo).port }) + '\n');
  for await (const line of createInterface({ input: process.stdin })) {
    if (line === 'report') {
      process.stdout.write(JSON.stringify(totals) + '\n');
      totals.frames = totals.records = totals.bytes = 0;
    } else if (line === 'exit') break;
  }
  server.close();
  process.exit(0);
}

/** Where the bin/str payload starting at `pos` ends (may be past the buffer). */
function entriesEnd(b: Buffer, pos: number): number {
  const t = b[pos];
  if (t === undefined) return b.length + 1;
  const avail = b.length - pos;
  if ((t === 0xc4 || t === 0xd9) && avail >= 2) return pos + 2 + b[pos + 1]!;
  if ((t === 0xc5 || t === 0xda) && avail >= 3) return pos + 3 + b.readUInt16BE(pos + 1);
  if ((t === 0xc6 || t === 0xdb) && avail >= 5) return pos + 5 + b.readUInt32BE(pos + 1);
  return b.length + 1;
}

function readUint(b: Buffer, pos: number): number {
  const t = b[pos]!;
  if (t <= 0x7f) return t;
  if (t === 0xcc) return b[pos + 1]!;
  if (t === 0xcd) return b.readUInt16BE(pos + 1);
  if (t === 0xce) return b.readUInt32BE(pos + 1);
  return 0;
}

// ---------------------------------------------------------------------------------------------
// Client processes

async function runSidecarClient(port: number, records: number): Promise<Omit<ClientResult, 'wireBytes' | 'frames' | 'receivedRecords'>> {
  const { ForwardSink } = await import('../plugin/output/forward/sink.ts');
  const sink = new ForwardSink(
    {
      type: 'forward',
      host: '127.0.0.1',
      port,
      connect_timeout_secs: 10,
      ack_timeout_secs: 60,
      reconnect_initial_secs: 0.5,
      reconnect_max_secs: 30,
      chunk_bytes: 1_048_576,
      max_frame_bytes: 4_000_000,
      max_chunks_in_flight: 16,
      queue_max_bytes: WINDOW_BYTES,
    },
    {},
  );
  sink.start();
  const cpu0 = process.cpuUsage();
  const t0 = performance.now();
  const base = 1795355887;
  let inFlight: Promise<void>[] = [];
  for (let from = 0; from < records; from += BATCH) {
    await sink.waitForCapacity();
    const encoded: Buffer[] = [];
    for (let i = from; i < Math.min(records, from + BATCH); i++) {
      encoded.push(sink.encode({ time: { sec: base + (i % 86400), nsec: (i * 7919) % 1e9 }, record: makeRecord(i) }));
    }
    inFlight.push(sink.send(TAG, encoded));
    if (inFlight.length >= 256) {
      await Promise.all(inFlight);
      inFlight = [];
    }
  }
  await Promise.all(inFlight);
  const wallMs = performance.now() - t0;
  const cpu = process.cpuUsage(cpu0);
  const unacked = await sink.close(5_000);
  if (unacked !== 0) throw new Error(`ForwardSink closed with ${unacked} unacked records`);
  return { client: 'ForwardSink', records, wallMs, cpuMs: (cpu.user + cpu.system) / 1000, peakRssMb: process.resourceUsage().maxRSS / 1024 };
}

async function runFluentLoggerClient(port: number, records: number): Promise<Omit<ClientResult, 'wireBytes' | 'frames' | 'receivedRecords'>> {
  const { FluentClient, EventTime } = await import('@fluent-org/logger');
  const [prefix, label] = [TAG.slice(0, TAG.lastIndexOf('.')), TAG.slice(TAG.lastIndexOf('.') + 1)];
  const client = new FluentClient(prefix, {
    eventMode: 'PackedForward',
    socket: { host: '127.0.0.1', port, timeout: 600_000 },
    ack: { ackTimeout: 60_000 },
    // Frames of ~1 MB like ForwardSink's: flush synchronously at 1 MB queued (an interval flush
    // runs only on a later tick, after a tight emit loop has queued everything into one frame),
    // and every 10 ms for the rest. The default (flushInterval 0) sends one frame per emit.
    flushInterval: 10,
    sendQueueSyncFlushLimit: { size: 1_048_576, length: Number.MAX_SAFE_INTEGER },
  });
  await client.connect();
  // connect() resolves before the socket is ESTABLISHED; until then every emit piles into one frame.
  await new Promise((r) => setTimeout(r, 200));
  const cpu0 = process.cpuUsage();
  const t0 = performance.now();
  const base = 1795355887;
  // A window of emit() promises standing in for ForwardSink's queue_max_bytes.
  const windowBatches = Math.max(1, Math.floor(WINDOW_BYTES / (BATCH * RECORD_JSON_BYTES)));
  const pending: Promise<unknown>[] = [];
  for (let from = 0; from < records; from += BATCH) {
    if (pending.length >= windowBatches) await pending.shift();
    const batch: Promise<void>[] = [];
    for (let i = from; i < Math.min(records, from + BATCH); i++) {
      batch.push(client.emit(label, makeRecord(i), new EventTime(base + (i % 86400), (i * 7919) % 1e9)));
    }
    pending.push(Promise.all(batch));
  }
  await Promise.all(pending);
  const wallMs = performance.now() - t0;
  const cpu = process.cpuUsage(cpu0);
  await client.disconnect();
  return { client: '@fluent-org/logger', records, wallMs, cpuMs: (cpu.user + cpu.system) / 1000, peakRssMb: process.resourceUsage().maxRSS / 1024 };
}

// ---------------------------------------------------------------------------------------------
// Orchestration

function child(args: string[]): ChildProcess {
  return spawn(process.execPath, ['--import', 'tsx', SELF, ...args], { stdio: ['pipe', 'pipe', 'inherit'] });
}

function nextLine(p: ChildProcess): Promise<string> {
  return new Promise((resolve, reject) => {
    let buf = '';
    const onData = (d: Buffer) => {
      buf += d.toString('utf8');
      const i = buf.indexOf('\n');
      if (i >= 0) {
        p.stdout!.off('data', onData);
        p.off('exit', onExit);
        resolve(buf.slice(0, i));
      }
    };
    const onExit = (code: number | null) => reject(new Error(`bench child exited with ${code} before answering`));
    p.stdout!.on('data', onData);
    p.once('exit', onExit);
  });
}

export async function runForwardBench(opts: { records?: number } = {}): Promise<ForwardBenchResult> {
  const records = opts.records ?? 200_000;
  const receiver = child(['--role', 'receiver']);
  try {
    const { port } = JSON.parse(await nextLine(receiver)) as { port: number };
    const results: ClientResult[] = [];
    for (const role of ['sidecar', 'fluent-logger']) {
      const c = child(['--role', role, '--port', String(port), '--records', String(records)]);
      const r = JSON.parse(await nextLine(c)) as Omit<ClientResult, 'wireBytes' | 'frames' | 'receivedRecords'>;
      await new Promise((res) => (c.exitCode !== null ? res(null) : c.once('exit', res)));
      receiver.stdin!.write('report\n');
      const seen = JSON.parse(await nextLine(receiver)) as { frames: number; records: number; bytes: number };
      results.push({ ...r, wireBytes: seen.bytes, frames: seen.frames, receivedRecords: seen.records });
    }
    const { encodeEntry } = await import('../plugin/output/forward/encoder.ts');
    const entryBytes = encodeEntry({ time: { sec: 1795355887, nsec: 0 }, record: makeRecord(0) }).length;
    const out = { records, recordBytes: RECORD_JSON_BYTES, entryBytes, results };
    printTable(out);
    return out;
  } finally {
    receiver.stdin!.write('exit\n');
    receiver.kill();
  }
}

function printTable(r: ForwardBenchResult): void {
  const rows = r.results.map((x) => ({
    client: x.client,
    rps: x.records / (x.wallMs / 1000),
    mbps: x.wireBytes / 1_048_576 / (x.wallMs / 1000),
    cpuUsPerRec: (x.cpuMs * 1000) / x.records,
    rss: x.peakRssMb,
    frames: x.frames,
    received: x.receivedRecords,
  }));
  const fmt = (n: number, d = 0) => n.toLocaleString('en-US', { maximumFractionDigits: d, minimumFractionDigits: d });
  const lines = [
    `forward: ${fmt(r.records)} TAP-like records (${fmt(r.recordBytes)} B as JSON, ${fmt(r.entryBytes)} B as msgpack entry), acking receiver in its own process`,
    `${'client'.padEnd(20)} ${'records/s'.padStart(10)} ${'MB/s'.padStart(7)} ${'CPU µs/rec'.padStart(10)} ${'peak RSS MB'.padStart(11)} ${'frames'.padStart(7)} ${'received'.padStart(9)}`,
    ...rows.map(
      (x) =>
        `${x.client.padEnd(20)} ${fmt(x.rps).padStart(10)} ${fmt(x.mbps, 1).padStart(7)} ${fmt(x.cpuUsPerRec, 1).padStart(10)} ${fmt(x.rss).padStart(11)} ${fmt(x.frames).padStart(7)} ${fmt(x.received).padStart(9)}`,
    ),
  ];
  if (rows.length === 2) {
    const [a, b] = rows as [(typeof rows)[0], (typeof rows)[0]];
    lines.push(
      `ratio ForwardSink / @fluent-org/logger: records/s ×${fmt(a.rps / b.rps, 2)}, CPU per record ×${fmt(a.cpuUsPerRec / b.cpuUsPerRec, 2)}, peak RSS ×${fmt(a.rss / b.rss, 2)}`,
    );
  }
  console.log(lines.join('\n'));
}

function arg(name: string): string | undefined {
  const i = process.argv.indexOf(name);
  return i >= 0 ? process.argv[i + 1] : undefined;
}

if (process.argv[1] && import.meta.url === pathToFileURL(process.argv[1]).href) {
  const role = arg('--role');
  const port = Number(arg('--port'));
  const records = Number(arg('--records') ?? 200_000);
  if (role === 'receiver') await runReceiver();
  else if (role === 'sidecar' || role === 'fluent-logger') {
    const r = role === 'sidecar' ? await runSidecarClient(port, records) : await runFluentLoggerClient(port, records);
    process.stdout.write(JSON.stringify(r) + '\n');
    process.exit(0);
  } else await runForwardBench({ records });
}
