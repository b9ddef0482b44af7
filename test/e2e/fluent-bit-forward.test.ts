/**
 * End to end against a real Fluent Bit: the binary named by FLUENT_BIT_BIN runs with the shipped
 * fluent-bit/forward-input.yaml (included from a generated main file that adds filesystem
 * storage and a `file` output in a temp dir); N records go through ForwardSink and each must come
 * out exactly once with its tag, time and fields.
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import type { ChildProcess } from 'node:child_process';
import { existsSync, mkdtempSync, readFileSync, rmSync } from 'node:fs';
import net from 'node:net';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { ForwardSink } from '../../plugin/output/forward/sink.ts';
import { forwardConfig } from '../helpers/forward-receiver.ts';
import { startFluentBit } from '../helpers/fluent-bit.ts';
import { until } from '../helpers/net.ts';

const BIN = process.env.FLUENT_BIT_BIN;
const N = 5_000;
const TAG = 'mail.proofpoint.tapsiem_v2.messagesdelivered';

if (!BIN) {
  test.skip('FLUENT_BIT_BIN not set: skipping end-to-end test against a real Fluent Bit');
} else {
  test('records sent through ForwardSink come out of a real Fluent Bit exactly once', async (t) => {
    const dir = mkdtempSync(path.join(tmpdir(), 'fluent-bit-e2e-'));
    let fb: ChildProcess | undefined;
    t.after(async () => {
      if (fb && fb.exitCode === null) {
        fb.kill('SIGTERM');
        await new Promise((r) => fb!.once('exit', r));
      }
      rmSync(dir, { recursive: true, force: true });
    });

    const started = await startFluentBit(BIN, dir, { flush: 1, logLevel: 'info' });
    fb = started.proc;
    const port = started.port;

    const sink = new ForwardSink(forwardConfig({ port, chunk_bytes: 256 * 1024 }), {});
    sink.start();
    const base = 1795355887;
    const sends: Promise<void>[] = [];
    for (let from = 0; from < N; from += 500) {
      await sink.waitForCapacity();
      const encoded = [];
      for (let i = from; i < Math.min(N, from + 500); i++) {
        encoded.push(
          sink.encode({
            time: { sec: base + i, nsec: 123_456_000 },
            record: { seq: i, message: `{"GUID":"g-${i}","subject":"héllo ✓"}`, devo_tag: TAG, input_id: '100001' },
          }),
        );
      }
      sends.push(sink.send(TAG, encoded));
    }
    await Promise.all(sends);
    assert.equal(await sink.close(10_000), 0);

    // out_file's default format: `<tag>: [<time as seconds.fraction>, {record}]`, one per line.
    const file = started.recordsFile;
    const lines = () => (existsSync(file) ? readFileSync(file, 'utf8').split('\n').filter(Boolean) : []);
    await until(() => lines().length >= N, `${N} records in ${file}`, 30_000);
    const seen = new Map<number, number>();
    for (const line of lines()) {
      const cut = line.indexOf(': [');
      assert.equal(line.slice(0, cut), TAG);
      const [time, record] = JSON.parse(line.slice(cut + 2)) as [number, { seq: number; message: string }];
      assert.ok(Math.abs(time - (base + record.seq + 0.123456)) < 1e-5, `time of record ${record.seq}: ${time}`);
      assert.equal(record.message, `{"GUID":"g-${record.seq}","subject":"héllo ✓"}`);
      seen.set(record.seq, (seen.get(record.seq) ?? 0) + 1);
    }
    assert.equal(seen.size, N, 'every record arrived');
    assert.ok([...seen.values()].every((n) => n === 1), 'none twice');
  });
}
