/**
 * The shared-key handshake against a real Fluent Bit (the binary FLUENT_BIT_BIN names), running
 * the shipped fluent-bit/forward-input.yaml with its optional `shared_key` / `self_hostname` lines
 * switched on, and `security.users` too in the second instance. in_forward sends a 16-byte auth
 * salt in every HELO whether or not users are configured; records must come out of its `file`
 * output either way, and a wrong key must give an error naming output.shared_key with nothing
 * acknowledged, written or committed.
 */
import { test, type TestContext } from 'node:test';
import assert from 'node:assert/strict';
import { existsSync, mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import type { ForwardOutputConfig } from '../../plugin/config/schema.ts';
import { ErrorCode, type SidecarError } from '../../plugin/errors.ts';
import { ForwardSink } from '../../plugin/output/forward/sink.ts';
import { Pipeline } from '../../plugin/pipeline/pipeline.ts';
import { StateStore } from '../../plugin/state/store.ts';
import { startFluentBit, type FluentBit, type ForwardSecurity } from '../helpers/fluent-bit.ts';
import { captureLogger, forwardConfig } from '../helpers/forward-receiver.ts';
import { until } from '../helpers/net.ts';
import { ScriptedSource, ev, spec } from '../helpers/scripted-source.ts';
import { TEST_SECRETS } from '../helpers/secrets.ts';
import { tmpDir } from '../helpers/tmp.ts';

const BIN = process.env.FLUENT_BIT_BIN;
const TAG = 'mail.proofpoint.tapsiem_v2.messagesdelivered';
const N = 300;
const WRONG_KEY = 'wrong-shared-key-4711';

async function fluentBit(t: TestContext, security: ForwardSecurity): Promise<FluentBit> {
  const dir = mkdtempSync(path.join(tmpdir(), 'fluent-bit-shared-key-'));
  const fb = await startFluentBit(BIN!, dir, { flush: 1, logLevel: 'info', security });
  t.after(async () => {
    if (fb.proc.exitCode === null) {
      fb.proc.kill('SIGTERM');
      await new Promise((r) => fb.proc.once('exit', r));
    }
    rmSync(dir, { recursive: true, force: true });
  });
  return fb;
}

function linesOf(fb: FluentBit): string[] {
  return existsSync(fb.recordsFile) ? readFileSync(fb.recordsFile, 'utf8').split('\n').filter(Boolean) : [];
}

/** Sends N records through ForwardSink and checks each comes out of Fluent Bit exactly once. */
async function deliverAll(fb: FluentBit, cfg: Partial<ForwardOutputConfig>, run: string): Promise<void> {
  const errors: SidecarError[] = [];
  const sink = new ForwardSink(forwardConfig({ port: fb.port, ...cfg }), { events: { error: (e) => errors.push(e) } });
  sink.start();
  let acked = false;
  const encoded = Array.from({ length: N }, (_, i) =>
    sink.encode({ time: { sec: 1795355887 + i, nsec: 0 }, record: { run, seq: i, message: `{"GUID":"${run}-${i}"}` } }),
  );
  const sent = sink.send(TAG, encoded).then(() => (acked = true));
  try {
    await until(() => acked || errors.length > 0, 'Fluent Bit to acknowledge', 20_000);
    assert.deepEqual(errors.map((e) => e.message), [], 'no handshake error');
    await sent;
  } finally {
    await sink.close(acked ? 5_000 : 0);
  }
  const mine = () => linesOf(fb).filter((l) => l.includes(`"run":"${run}"`));
  await until(() => mine().length >= N, `${N} records of ${run} in ${fb.recordsFile}`, 20_000);
  const seqs = mine().map((l) => (JSON.parse(l.slice(l.indexOf(': [') + 2)) as [number, { seq: number }])[1].seq);
  assert.deepEqual(seqs.sort((a, b) => a - b), Array.from({ length: N }, (_, i) => i), 'every record once');
}

/**
 * A whole pipeline (ScriptedSource → Pipeline → ForwardSink) whose handshake Fluent Bit refuses:
 * returns the first error once it is reported, after checking nothing was acknowledged, written
 * by Fluent Bit or committed to the state store.
 */
async function refused(fb: FluentBit, cfg: Partial<ForwardOutputConfig>): Promise<SidecarError> {
  const store = await StateStore.open(tmpDir());
  const errors: SidecarError[] = [];
  const { logger, lines } = captureLogger();
  // No reconnect within the test (the first backoff is longer than it runs): one handshake.
  const sink = new ForwardSink(forwardConfig({ port: fb.port, reconnect_initial_secs: 600, reconnect_max_secs: 600, ...cfg }), {
    logger,
    events: { error: (e) => errors.push(e) },
  });
  const committed: unknown[] = [];
  const src = new ScriptedSource('100001', [spec('messages')], [
    { service: 'messages', pullingId: 1, events: [ev('refused-a'), ev('refused-b')], cursor: { t: 'after' }, onCommitted: (o) => committed.push(o) },
  ]);
  const p = new Pipeline({ store, sink, sources: [src], logger });
  let stopping: Promise<unknown> | undefined;
  const stop = () => (stopping ??= p.stop(0));
  try {
    await p.start();
    await until(() => errors.length > 0 && p.pendingBatches() === 1, 'the handshake error, with the batch sent and waiting for its ack', 20_000);
    assert.equal(sink.stats().chunksAcked, 0, 'nothing acknowledged');
    await stop();
    assert.deepEqual(committed, []);
    assert.equal(await store.getCursor('100001', 'messages'), undefined, 'no cursor persisted');
    assert.deepEqual(await store.seen.has('100001::messages', ['refused-a', 'refused-b']), [false, false], 'no de-dup key persisted');
    assert.ok(!linesOf(fb).some((l) => l.includes('refused-')), 'Fluent Bit wrote none of the records');
    const text = lines.join('') + errors.map((e) => e.message).join('') + fb.log();
    for (const secret of [TEST_SECRETS.forwardSharedKey, TEST_SECRETS.forwardPassword, WRONG_KEY]) {
      assert.ok(!text.includes(secret), 'no credential in our logs, our errors or Fluent Bit\'s log');
    }
    return errors[0]!;
  } finally {
    await stop();
    await store.close();
  }
}

if (!BIN) {
  test.skip('FLUENT_BIT_BIN not set: skipping the shared-key tests against a real Fluent Bit');
} else {
  test('real Fluent Bit with shared_key and no security.users: records are delivered; a wrong key names output.shared_key and commits nothing', async (t) => {
    const fb = await fluentBit(t, { sharedKey: TEST_SECRETS.forwardSharedKey });
    await deliverAll(fb, { shared_key: TEST_SECRETS.forwardSharedKey, self_hostname: 'sidecar' }, 'key-only');

    const err = await refused(fb, { shared_key: WRONG_KEY });
    assert.equal(err.code, ErrorCode.FORWARD_HANDSHAKE);
    assert.match(err.message, /without a PONG: output\.shared_key does not match the forward input's shared_key/);
    assert.doesNotMatch(err.message, /username|password|security\.users/);
    await until(() => fb.log().includes('shared_key mismatch'), 'Fluent Bit to log the mismatch', 5_000);
  });

  test('real Fluent Bit with shared_key and security.users: records are delivered with output.username/password; a missing or wrong user is refused by name', async (t) => {
    const fb = await fluentBit(t, { sharedKey: TEST_SECRETS.forwardSharedKey, password: TEST_SECRETS.forwardPassword });
    assert.ok(fb.username, 'the shipped example names a user');
    await deliverAll(fb, { shared_key: TEST_SECRETS.forwardSharedKey, username: fb.username, password: TEST_SECRETS.forwardPassword }, 'with-users');

    const noUser = await refused(fb, { shared_key: TEST_SECRETS.forwardSharedKey });
    assert.match(noUser.message, /refused authentication \(username\/password mismatch\).*output\.username is not set/);

    const wrongPassword = await refused(fb, { shared_key: TEST_SECRETS.forwardSharedKey, username: fb.username, password: 'not-the-password-1' });
    assert.match(wrongPassword.message, /refused authentication \(username\/password mismatch\); check output\.username and output\.password/);

    const wrongKey = await refused(fb, { shared_key: WRONG_KEY, username: fb.username, password: TEST_SECRETS.forwardPassword });
    assert.match(wrongKey.message, /output\.shared_key does not match/);
    assert.doesNotMatch(wrongKey.message, /username|password|security\.users/);
  });
}
