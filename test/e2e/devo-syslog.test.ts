/**
 * End to end, sidecar -> Fluent Bit -> "Devo": the binary named by FLUENT_BIT_BIN runs the shipped
 * fluent-bit/forward-input.yaml and fluent-bit/devo-output.yaml (included from a generated main
 * file that only adds the service section), with the Devo output pointed at an in-process TLS
 * receiver that, like Devo's load balancers, requires a client certificate. Records go in through
 * the sidecar's ForwardSink; every event must come out once, whole (a 20 KB and a 2 MiB message
 * too: syslog_maxsize must not cut them), as `<PRI>Mmm dd hh:mm:ss host devo_tag: message`.
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { spawn, type ChildProcess } from 'node:child_process';
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import net from 'node:net';
import { tmpdir } from 'node:os';
import path from 'node:path';
import tls from 'node:tls';
import { fileURLToPath } from 'node:url';
import { forwardOutputSchema } from '../../plugin/config/schema.ts';
import { ForwardSink } from '../../plugin/output/forward/sink.ts';
import { POD_DEFAULT_TAGS } from '../../plugin/sources/pod/config.ts';
import { TAP_DEFAULT_TAGS } from '../../plugin/sources/tap/config.ts';
import { freePort, until, accepts } from '../helpers/net.ts';

const BIN = process.env.FLUENT_BIT_BIN;
const FB_DIR = fileURLToPath(new URL('../../fluent-bit/', import.meta.url));
const TLS_DIR = fileURLToPath(new URL('../fixtures/tls/', import.meta.url));
const HOSTNAME = 'pps-e2e-relay-host';
const TAGS = [...Object.values(TAP_DEFAULT_TAGS), ...Object.values(POD_DEFAULT_TAGS)];
const MONTHS = ['Jan', 'Feb', 'Mar', 'Apr', 'May', 'Jun', 'Jul', 'Aug', 'Sep', 'Oct', 'Nov', 'Dec'];
const N_SMALL = 1_000;

/** A syslog-over-TLS receiver that requires a client certificate signed by the test CA. */
class TlsSyslogReceiver {
  readonly lines: string[] = [];
  readonly clientNames: string[] = [];
  readonly rejected: string[] = [];
  readonly #server: tls.Server;
  readonly #sockets = new Set<tls.TLSSocket>();
  port = 0;

  constructor() {
    this.#server = tls.createServer(
      {
        key: readFileSync(path.join(TLS_DIR, 'server.key')),
        cert: readFileSync(path.join(TLS_DIR, 'server.crt')),
        ca: readFileSync(path.join(TLS_DIR, 'ca.crt')),
        requestCert: true,
        rejectUnauthorized: true,
      },
      (socket) => {
        this.#sockets.add(socket);
        socket.once('close', () => this.#sockets.delete(socket));
        this.clientNames.push(String(socket.getPeerCertificate().subject?.CN));
        let pending = Buffer.alloc(0);
        socket.on('data', (d: Buffer) => {
          pending = Buffer.concat([pending, d]);
          let nl: number;
          while ((nl = pending.indexOf(0x0a)) >= 0) {
            this.lines.push(pending.subarray(0, nl).toString('utf8'));
            pending = pending.subarray(nl + 1);
          }
        });
        socket.on('error', () => {});
      },
    );
    this.#server.on('tlsClientError', (err) => this.rejected.push(err.message));
  }

  async listen(): Promise<number> {
    await new Promise<void>((r) => this.#server.listen(0, '127.0.0.1', r));
    this.port = (this.#server.address() as net.AddressInfo).port;
    return this.port;
  }

  async close(): Promise<void> {
    for (const s of this.#sockets) s.destroy();
    await new Promise<void>((r) => this.#server.close(() => r()));
  }
}

interface Sent {
  tag: string;
  sec: number;
  message: string;
}

const RFC3164 = /^<(\d{1,3})>([A-Z][a-z]{2}) ([ \d]\d) (\d\d):(\d\d):(\d\d) (\S+) (\S+): (.*)$/s;

if (!BIN) {
  test('sidecar -> Fluent Bit -> Devo syslog/TLS end to end', { skip: 'FLUENT_BIT_BIN not set: no Fluent Bit binary to run the Devo output against' }, () => {});
} else {
  test('sidecar -> Fluent Bit (shipped input + Devo output) -> TLS receiver: every event once, whole, with its Devo tag', async (t) => {
    const dir = mkdtempSync(path.join(tmpdir(), 'devo-e2e-'));
    const receiver = new TlsSyslogReceiver();
    let fb: ChildProcess | undefined;
    let log = '';
    t.after(async () => {
      if (fb && fb.exitCode === null) {
        fb.kill('SIGTERM');
        await new Promise((r) => fb!.once('exit', r));
      }
      await receiver.close();
      rmSync(dir, { recursive: true, force: true });
    });

    const devoPort = await receiver.listen();
    const forwardPort = await freePort();
    const main = path.join(dir, 'fluent-bit.yaml');
    writeFileSync(
      main,
      [
        'service:',
        '  flush: 1',
        '  log_level: info',
        `  storage.path: ${JSON.stringify(path.join(dir, 'storage'))}`,
        '  storage.sync: normal',
        'includes:',
        `  - ${JSON.stringify(path.join(FB_DIR, 'forward-input.yaml'))}`,
        `  - ${JSON.stringify(path.join(FB_DIR, 'devo-output.yaml'))}`,
        '',
      ].join('\n'),
    );
    fb = spawn(BIN, ['-c', main], {
      env: {
        ...process.env,
        FORWARD_LISTEN: '127.0.0.1',
        FORWARD_PORT: String(forwardPort),
        DEVO_HOST: '127.0.0.1',
        DEVO_PORT: String(devoPort),
        DEVO_TLS_CA_FILE: path.join(TLS_DIR, 'ca.crt'),
        DEVO_TLS_CRT_FILE: path.join(TLS_DIR, 'client.crt'),
        DEVO_TLS_KEY_FILE: path.join(TLS_DIR, 'client.key'),
        DEVO_HOSTNAME: HOSTNAME,
        FLUENT_BIT_BACKLOG_LIMIT: '256M',
      },
      stdio: ['ignore', 'pipe', 'pipe'],
    });
    fb.stdout!.on('data', (d) => (log += d));
    fb.stderr!.on('data', (d) => (log += d));
    await until(async () => {
      if (fb!.exitCode !== null) throw new Error(`fluent-bit exited with ${fb!.exitCode}:\n${log}`);
      return accepts(forwardPort);
    }, 'Fluent Bit to listen', 20_000);

    // Small events across every default tag, then a 20 KB one and a 2 MiB one (POD frames can
    // exceed 1 MiB). Messages are compact JSON, as the sidecar sends them: no line breaks.
    const base = 1795355887;
    const sent = new Map<string, Sent>();
    const event = (i: number, pad: number) => JSON.stringify({ id: `e-${i}`, subject: 'héllo ✓', pad: 'x'.repeat(pad) });
    for (let i = 0; i < N_SMALL; i++) sent.set(`e-${i}`, { tag: TAGS[i % TAGS.length]!, sec: base + i * 3607, message: event(i, 0) });
    sent.set(`e-${N_SMALL}`, { tag: POD_DEFAULT_TAGS.maillog, sec: base + 1, message: event(N_SMALL, 20_000) });
    sent.set(`e-${N_SMALL + 1}`, { tag: POD_DEFAULT_TAGS.message, sec: base + 2, message: event(N_SMALL + 1, 2 * 1024 * 1024) });

    const sink = new ForwardSink(forwardOutputSchema.parse({ type: 'forward', port: forwardPort }), {});
    sink.start();
    const byTag = new Map<string, Buffer[]>();
    for (const s of sent.values()) {
      const list = byTag.get(s.tag) ?? [];
      list.push(
        sink.encode({
          time: { sec: s.sec, nsec: 250_000_000 },
          record: { message: s.message, devo_tag: s.tag, source: 'proofpoint_tap', service: 'test', input_id: '100001', pulling_id: 1 },
        }),
      );
      byTag.set(s.tag, list);
    }
    const sends: Promise<void>[] = [];
    for (const [tag, encoded] of byTag) {
      await sink.waitForCapacity();
      sends.push(sink.send(tag, encoded));
    }
    await Promise.all(sends);
    assert.equal(await sink.close(10_000), 0, 'every chunk acknowledged by Fluent Bit');

    await until(() => receiver.lines.length >= sent.size, `${sent.size} syslog lines (have ${receiver.lines.length}); Fluent Bit log:\n${log}`, 60_000);
    // Anything re-sent would arrive within a flush or two.
    await new Promise((r) => setTimeout(r, 2_500));

    assert.deepEqual(receiver.rejected, [], 'the client certificate was accepted');
    assert.ok(receiver.clientNames.every((cn) => cn === 'client.test'), `Fluent Bit presented the client certificate: ${receiver.clientNames.join(',')}`);
    const seen = new Map<string, number>();
    for (const line of receiver.lines) {
      const m = RFC3164.exec(line);
      assert.ok(m, `RFC 3164 framing: ${line.slice(0, 200)}`);
      const [, pri, mon, day, hh, mm, ss, host, tag, message] = m;
      // The id leads the JSON text, so a cut message still names its event.
      const id = /^\{"id":"(e-\d+)"/.exec(message!)?.[1] ?? '';
      const s = sent.get(id);
      assert.ok(s, `an event that was sent: ${id}`);
      assert.equal(pri, '14', 'facility user, severity info (the output presets)');
      assert.equal(host, HOSTNAME, 'the hostname preset, so Devo does not read the tag as the host');
      assert.equal(tag, s.tag, 'the Devo tag is the syslog TAG');
      assert.equal(message!.length, s.message.length, `${id} whole (${s.message.length} characters)`);
      assert.equal(message, s.message);
      const d = new Date(s.sec * 1000);
      assert.equal(mon, MONTHS[d.getUTCMonth()]);
      assert.equal(Number(day), d.getUTCDate());
      assert.deepEqual([hh, mm, ss].map(Number), [d.getUTCHours(), d.getUTCMinutes(), d.getUTCSeconds()], `${id}: the event time, UTC`);
      seen.set(id, (seen.get(id) ?? 0) + 1);
    }
    assert.equal(seen.size, sent.size, 'every event arrived');
    assert.deepEqual([...seen].filter(([, n]) => n !== 1), [], 'none twice');
  });
}
