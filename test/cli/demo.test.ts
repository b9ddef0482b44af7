/**
 * `demo`: the built-in simulators through a sidecar to the console or to a forward receiver (the
 * in-process one always, the real Fluent Bit with the shipped fluent-bit/stdout.example.conf when
 * FLUENT_BIT_BIN is set). It ends by itself, keeps records and logs apart, and ends with a summary
 * whose numbers agree with what actually arrived.
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import { readFileSync, writeFileSync } from 'node:fs';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { runCliAsync, startCli, type CliResult } from '../helpers/cli.ts';
import { ForwardReceiver } from '../helpers/forward-receiver.ts';
import { accepts, freePort, until } from '../helpers/net.ts';
import { tmpDir } from '../helpers/tmp.ts';

const ROOT = fileURLToPath(new URL('../../', import.meta.url));
const SERVICES = [
  'TAP clicksBlocked',
  'TAP clicksPermitted',
  'TAP messagesBlocked',
  'TAP messagesDelivered',
  'POD message',
  'POD maillog',
  'POD audit',
];

interface Totals {
  received: number;
  duplicates: number;
  deadLetters: number;
  committed: number;
}

/** The `total` row of the summary table. */
function totals(report: string): Totals {
  const m = /^\s*total\s+([\d,]+)\s+([\d,]+)\s+([\d,]+)\s+([\d,]+)\s*$/m.exec(report);
  assert.ok(m, `a summary with a total row:\n${report.slice(-3000)}`);
  const [received, duplicates, deadLetters, committed] = m.slice(1).map((v) => Number(v.replace(/,/g, '')));
  return { received: received!, duplicates: duplicates!, deadLetters: deadLetters!, committed: committed! };
}

/** The CLI, killed (and the test failed) if it has not ended by itself within `limitMs`. */
function runBounded(args: string[], limitMs: number): Promise<CliResult & { killed: boolean }> {
  return new Promise((resolve) => {
    const child = startCli(args);
    let stdout = '';
    let stderr = '';
    let killed = false;
    const timer = setTimeout(() => {
      killed = true;
      child.kill('SIGKILL');
    }, limitMs);
    child.stdout!.on('data', (c) => (stdout += c));
    child.stderr!.on('data', (c) => (stderr += c));
    child.on('close', (status) => {
      clearTimeout(timer);
      resolve({ status, stdout, stderr, killed });
    });
  });
}

test('npm start (demo without flags) ends by itself with exit 0, a sample per source, counts and a per-service summary instead of a flood', async () => {
  const pkg = JSON.parse(readFileSync(path.join(ROOT, 'package.json'), 'utf8')) as { scripts: Record<string, string> };
  assert.equal(pkg.scripts.start, 'tsx plugin/main.ts demo', 'npm start is the demo without flags');
  const r = await runBounded(['demo'], 45_000);
  assert.equal(r.killed, false, `demo did not end by itself:\n${r.stdout.slice(-2000)}`);
  assert.equal(r.status, 0, r.stderr.slice(-2000));
  // Records stay out of the console as raw JSON: one pretty sample of each source, then counts.
  assert.equal(r.stdout.split('\n').filter((l) => l.startsWith('{"tag"')).length, 0, 'no record printed as a JSON line');
  assert.match(r.stdout, /First TAP record: tag mail\.proofpoint\.tapsiem_v2\.\w+/);
  assert.match(r.stdout, /First POD record: tag mail\.proofpoint\.pod\.\w+/);
  assert.match(r.stdout, /Stops by itself after 10 s/);
  assert.match(r.stdout, /\[\s*\d+\.\d s\] [\d,]+ events received · [\d,]+ committed/, 'a progress line');
  for (const s of SERVICES) assert.match(r.stdout, new RegExp(`^\\s+${s}\\s+mail\\.proofpoint\\.\\S+\\s+[\\d,]+\\s+[\\d,]+\\s+[\\d,]+\\s+[\\d,]+$`, 'm'), `a summary row for ${s}`);
  const t = totals(r.stdout);
  assert.ok(t.received > 500, `the TAP backfill shows events at once (${t.received})`);
  assert.equal(t.committed, t.received - t.duplicates - t.deadLetters, 'everything not dropped is committed at the end');
  assert.ok(r.stdout.split('\n').length < 400, `a readable amount of output (${r.stdout.split('\n').length} lines)`);
  // The sidecar's log goes to stderr (warnings only by default) and never carries records.
  assert.doesNotMatch(r.stderr, /mail\.proofpoint\.tapsiem_v2/);
});

test('demo --records prints every committed record as a JSON line on stdout and its report on stderr', async () => {
  const r = await runCliAsync(['demo', '--records', '--duration', '3s', '--log-level', 'info']);
  assert.equal(r.status, 0, r.stderr.slice(-2000));
  const lines = r.stdout.split('\n').filter((l) => l.length > 0);
  const records = lines.map((l) => JSON.parse(l) as { tag: string; time: string; record: Record<string, unknown> });
  const t = totals(r.stderr);
  assert.equal(records.length, t.committed, 'one line per committed record, nothing else on stdout');
  const tags = new Set(records.map((x) => x.tag));
  for (const tag of ['mail.proofpoint.tapsiem_v2.messagesdelivered', 'mail.proofpoint.pod.maillog']) assert.ok(tags.has(tag), `a ${tag} record`);
  for (const x of records.slice(0, 50)) {
    assert.equal(x.record.devo_tag, x.tag);
    assert.doesNotThrow(() => JSON.parse(x.record.message as string), 'message is the vendor JSON');
  }
  assert.match(r.stderr, /TAP pull \d+/, '--log-level info shows the per-cycle statistics, on stderr');
});

test('demo --output forward delivers every committed record to a forward receiver, and the summary says how many', async () => {
  const receiver = new ForwardReceiver();
  await receiver.listen(0);
  try {
    const r = await runCliAsync(['demo', '--output', 'forward', '--host', '127.0.0.1', '--port', String(receiver.port), '--duration', '3']);
    assert.equal(r.status, 0, r.stderr.slice(-2000));
    assert.match(r.stdout, new RegExp(`-> sidecar -> Fluent Bit forward 127\\.0\\.0\\.1:${receiver.port}`));
    const t = totals(r.stdout);
    assert.ok(t.committed > 500);
    assert.equal(t.committed, t.received - t.duplicates - t.deadLetters);
    assert.equal(receiver.records.length, t.committed, 'what the summary calls committed arrived, once each');
    const tags = new Set(receiver.records.map((x) => x.tag));
    for (const tag of ['mail.proofpoint.tapsiem_v2.messagesdelivered', 'mail.proofpoint.pod.maillog']) assert.ok(tags.has(tag), `a ${tag} record`);
    assert.equal(receiver.resentAfterAck, 0);
  } finally {
    await receiver.close();
  }
});

test('demo --config takes the output section (port, shared key) from a config file whose inputs need credentials not set', async () => {
  const dir = tmpDir('pps-demo-');
  const receiver = new ForwardReceiver({ sharedKey: 'demo-shared-key' });
  await receiver.listen(0);
  try {
    const file = path.join(dir, 'config.yaml');
    writeFileSync(
      file,
      [
        'output:',
        '  type: forward',
        '  host: 127.0.0.1',
        `  port: ${receiver.port}`,
        '  shared_key: ${DEMO_FORWARD_KEY}',
        'inputs:',
        '  proofpoint_tap:',
        '    id: "100001"',
        '    credentials: { username: ${PPS_DEMO_UNSET_PRINCIPAL}, password: ${PPS_DEMO_UNSET_SECRET} }',
        '    services: { messagesDelivered: {} }',
        '',
      ].join('\n'),
    );
    const r = await runCliAsync(['demo', '--config', file, '--duration', '3'], { env: { DEMO_FORWARD_KEY: 'demo-shared-key' } });
    assert.equal(r.status, 0, r.stderr.slice(-2000));
    assert.match(r.stdout, /Fluent Bit forward 127\.0\.0\.1:\d+ \(shared key\)/);
    assert.equal(receiver.handshakeFailures.length, 0);
    assert.ok(receiver.established > 0, 'the shared-key handshake passed');
    assert.equal(receiver.records.length, totals(r.stdout).committed);
    assert.doesNotMatch(r.stdout + r.stderr, /demo-shared-key/, 'the key is never printed');
  } finally {
    await receiver.close();
  }
});

test('demo --output forward with nothing listening exits 1 and says that nothing was acknowledged', async () => {
  const port = await freePort();
  const r = await runCliAsync(['demo', '--port', String(port), '--duration', '1']);
  assert.equal(r.status, 1, r.stdout.slice(-2000));
  assert.equal(totals(r.stdout).committed, 0);
  assert.match(r.stdout, /Nothing was acknowledged by the Fluent Bit forward 127\.0\.0\.1:\d+: is Fluent Bit running/);
  assert.match(r.stdout, /fluent-bit -c fluent-bit\/stdout\.example\.conf/, 'and how to start one');
});

test('demo rejects flags that do not fit together with exit 2', async () => {
  const bad = await Promise.all([
    runCliAsync(['demo', '--output', 'stdout', '--port', '24224']),
    runCliAsync(['demo', '--duration', 'soon']),
    runCliAsync(['demo', '--output', 'forward', '--records']),
  ]);
  assert.deepEqual(
    bad.map((r) => r.status),
    [2, 2, 2],
    bad.map((r) => r.stderr).join('\n'),
  );
  assert.match(bad[0]!.stderr, /--host and --port are for --output forward/);
  assert.match(bad[1]!.stderr, /--duration must be a number of seconds or a duration like 10s/);
  assert.match(bad[2]!.stderr, /--records is for the stdout output/);
});

const BIN = process.env.FLUENT_BIT_BIN;
if (!BIN) {
  test.skip('FLUENT_BIT_BIN not set: skipping demo --output forward into a real Fluent Bit');
} else {
  test('demo --output forward into a real Fluent Bit running the shipped stdout.example.conf: every committed record is printed by Fluent Bit', async (t) => {
    const dir = tmpDir('pps-demo-fb-');
    const port = await freePort();
    // The command docs/deployment.md and README give, with a free port instead of 24224.
    const fb = spawn(BIN, ['-c', path.join(ROOT, 'fluent-bit', 'stdout.example.conf')], {
      env: { ...process.env, FORWARD_LISTEN: '127.0.0.1', FORWARD_PORT: String(port), FLUENT_BIT_STORAGE_PATH: path.join(dir, 'storage') },
      stdio: ['ignore', 'pipe', 'pipe'],
    });
    let out = '';
    let log = '';
    fb.stdout!.on('data', (d) => (out += d));
    fb.stderr!.on('data', (d) => (log += d));
    t.after(async () => {
      if (fb.exitCode === null) {
        fb.kill('SIGTERM');
        await new Promise((r) => fb.once('exit', r));
      }
    });
    await until(async () => {
      if (fb.exitCode !== null) throw new Error(`fluent-bit exited with ${fb.exitCode}:\n${log}`);
      return accepts(port);
    }, 'Fluent Bit to listen', 20_000);

    const r = await runCliAsync(['demo', '--output', 'forward', '--port', String(port), '--duration', '3']);
    assert.equal(r.status, 0, r.stderr.slice(-2000));
    const { committed } = totals(r.stdout);
    assert.ok(committed > 500);
    const printed = () =>
      out
        .split('\n')
        .filter((l) => l.startsWith('{'))
        .map((l) => JSON.parse(l) as { devo_tag: string; message: string; input_id: string });
    await until(() => printed().length >= committed, `Fluent Bit to print ${committed} records (printed ${printed().length})`, 15_000);
    const records = printed();
    assert.equal(records.length, committed, 'each committed record once');
    const tags = new Set(records.map((x) => x.devo_tag));
    for (const tag of ['mail.proofpoint.tapsiem_v2.messagesdelivered', 'mail.proofpoint.pod.maillog']) assert.ok(tags.has(tag), `Fluent Bit printed a ${tag} record`);
    for (const x of records.slice(0, 20)) assert.doesNotThrow(() => JSON.parse(x.message));
  });
}
