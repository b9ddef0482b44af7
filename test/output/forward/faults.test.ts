/**
 * ForwardSink against a receiver that misbehaves: withheld, late, reordered and split acks; cut
 * connections; refused connections; handshake failures; oversize records. Timers (ack timeout,
 * backoff) run on a FakeClock, so the tests check behaviour, not timing.
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { ForwardSink } from '../../../plugin/output/forward/sink.ts';
import type { ForwardEvents } from '../../../plugin/output/forward/client.ts';
import { ErrorCode, SidecarError } from '../../../plugin/errors.ts';
import type { ForwardOutputConfig } from '../../../plugin/config/schema.ts';
import { FakeClock, flushMicrotasks } from '../../helpers/fake-clock.ts';
import { ForwardReceiver, captureLogger, forwardConfig, waitUntil } from '../../helpers/forward-receiver.ts';
import { TEST_SECRETS } from '../../helpers/secrets.ts';

const TAG = 'mail.proofpoint.tapsiem_v2.messagesdelivered';
const fixture = (name: string) => fileURLToPath(new URL(`../../fixtures/tls/${name}`, import.meta.url));

interface Harness {
  sink: ForwardSink;
  clock: FakeClock;
  receiver: ForwardReceiver;
  retries: number[];
  disconnects: Error[];
  errors: SidecarError[];
  /** Chunk ids the client had seen acked, snapshot at each disconnect. */
  ackedAtDisconnect: Set<string>[];
  acked: Set<string>;
}

async function harness(
  cfg: Partial<ForwardOutputConfig> = {},
  receiver = new ForwardReceiver(),
  opts: { logger?: ReturnType<typeof captureLogger>['logger']; listen?: boolean } = {},
): Promise<Harness> {
  if (opts.listen !== false) await receiver.listen();
  const clock = new FakeClock();
  const h: Omit<Harness, 'sink'> = { clock, receiver, retries: [], disconnects: [], errors: [], ackedAtDisconnect: [], acked: new Set() };
  const events: ForwardEvents = {
    retryScheduled: ({ delayMs }) => h.retries.push(delayMs),
    disconnected: ({ error }) => {
      h.disconnects.push(error);
      h.ackedAtDisconnect.push(new Set(h.acked));
    },
    error: (e) => h.errors.push(e),
    acked: ({ chunk }) => h.acked.add(chunk),
  };
  const sink = new ForwardSink(
    forwardConfig({ port: receiver.port, reconnect_initial_secs: 0.1, reconnect_max_secs: 1, ...cfg }),
    { clock, random: () => 1, events, ...(opts.logger ? { logger: opts.logger } : {}) },
  );
  return { ...h, sink };
}

async function teardown(h: Harness): Promise<void> {
  const closing = h.sink.close(0);
  await h.clock.advance(1);
  await closing;
  await h.receiver.close();
}

/** Moves the fake clock in steps until `pred` holds, letting real I/O run in between. */
async function driveUntil(clock: FakeClock, pred: () => boolean, what: string, stepMs = 50): Promise<void> {
  const end = Date.now() + 10_000;
  while (!pred()) {
    if (Date.now() > end) throw new Error(`timed out waiting for ${what}`);
    await clock.advance(stepMs);
    await new Promise((r) => setTimeout(r, 2));
  }
}

/** `n` encoded records of about `size` bytes with a `seq` field, starting at `from`. */
function batch(sink: ForwardSink, from: number, n: number, size = 1000): Buffer[] {
  return Array.from({ length: n }, (_, i) =>
    sink.encode({ time: { sec: 1795355887, nsec: from + i }, record: { seq: from + i, message: 'm'.repeat(size) } }),
  );
}

function seqs(r: ForwardReceiver): number[] {
  return r.records.map((x) => x.record.seq as number);
}

/** Every record arrived, first arrivals in the order sent, and only chunks not yet acked were sent twice. */
function assertDelivered(h: Harness, total: number): void {
  const firsts: number[] = [];
  const seen = new Set<number>();
  for (const s of seqs(h.receiver)) if (!seen.has(s)) (seen.add(s), firsts.push(s));
  assert.deepEqual(firsts, Array.from({ length: total }, (_, i) => i), 'every record, first arrivals in order');
  const counts = new Map<string, number>();
  for (const c of h.receiver.chunks) counts.set(c, (counts.get(c) ?? 0) + 1);
  const ackedBefore = new Set(h.ackedAtDisconnect.flatMap((s) => [...s]));
  for (const [chunk, n] of counts) {
    if (n > 1) assert.ok(!ackedBefore.has(chunk), `chunk ${chunk} was resent after the client saw its ack`);
  }
}

function settled(p: Promise<unknown>): () => boolean {
  let done = false;
  p.then(
    () => (done = true),
    () => (done = true),
  );
  return () => done;
}

test('withheld acks: send stays pending, in-flight chunks are capped, waitForCapacity blocks, pendingBytes stays bounded', async () => {
  const receiver = new ForwardReceiver();
  receiver.holdAcks();
  const h = await harness({ chunk_bytes: 4096, max_chunks_in_flight: 2, queue_max_bytes: 20_000 }, receiver);
  try {
    h.sink.start();
    const sends: Promise<void>[] = [];
    let produced = 0;
    let maxPending = 0;
    const producer = (async () => {
      for (let b = 0; b < 10; b++) {
        await h.sink.waitForCapacity();
        sends.push(h.sink.send(TAG, batch(h.sink, b * 4, 4)));
        produced++;
        maxPending = Math.max(maxPending, h.sink.stats().pendingBytes);
      }
    })();
    await waitUntil(() => receiver.frames.length === 2, 'two chunks in flight');
    await new Promise((r) => setTimeout(r, 100));
    assert.equal(receiver.frames.length, 2, 'no more than max_chunks_in_flight unacked chunks on the wire');
    assert.ok(produced < 10, 'the producer is held back by waitForCapacity');
    const stats = h.sink.stats();
    assert.ok(stats.pendingBytes >= 20_000, 'blocked only once the bound is reached');
    assert.ok(maxPending < 20_000 + 4 * 1100, `pendingBytes ${maxPending} stays within the bound plus one batch`);
    assert.equal(stats.chunksInFlight, 2);
    assert.equal(stats.pendingRecords, produced * 4);
    const firstSent = settled(sends[0]!);
    await flushMicrotasks();
    assert.equal(firstSent(), false, 'send does not resolve without acks');

    receiver.autoAck();
    assert.equal(receiver.releaseAcks(), 2);
    await producer;
    await Promise.all(sends);
    assert.equal(h.sink.stats().pendingBytes, 0);
    assert.equal(h.receiver.records.length, 40);
    assertDelivered(h, 40);
  } finally {
    await teardown(h);
  }
});

test('acks out of order and coalesced in one write resolve every chunk', async () => {
  const receiver = new ForwardReceiver();
  receiver.holdAcks();
  const h = await harness({ chunk_bytes: 2200, max_chunks_in_flight: 8 }, receiver);
  try {
    h.sink.start();
    const sent = h.sink.send(TAG, batch(h.sink, 0, 12)); // 6 chunks of 2 records
    await waitUntil(() => receiver.heldAcks === 6, 'six chunks held');
    assert.equal(receiver.releaseAcks('reverse'), 6);
    await sent;
    assert.equal(h.sink.stats().chunksAcked, 6);
    assert.deepEqual(seqs(receiver), Array.from({ length: 12 }, (_, i) => i));
  } finally {
    await teardown(h);
  }
});

test('acks written one byte at a time are reassembled', async () => {
  const receiver = new ForwardReceiver();
  receiver.splitAcks = true;
  const h = await harness({ chunk_bytes: 2200 }, receiver);
  try {
    h.sink.start();
    await h.sink.send(TAG, batch(h.sink, 0, 20));
    assert.equal(h.sink.stats().chunksAcked, 10);
    assert.equal(h.disconnects.length, 0);
  } finally {
    await teardown(h);
  }
});

test('a connection cut in the middle of a frame: reconnect, resend, every record arrives in order', async () => {
  const receiver = new ForwardReceiver();
  receiver.cutNextConnectionAfter(6000); // inside the second ~4 KB frame
  const h = await harness({ chunk_bytes: 4096, max_chunks_in_flight: 4 }, receiver);
  try {
    h.sink.start();
    const sent = h.sink.send(TAG, batch(h.sink, 0, 40));
    const done = settled(sent);
    await driveUntil(h.clock, done, 'all chunks acked after the cut');
    await sent;
    assert.equal(h.disconnects.length, 1);
    assert.equal(receiver.connections, 2);
    assert.ok(h.sink.stats().reconnects >= 1);
    assertDelivered(h, 40);
  } finally {
    await teardown(h);
  }
});

test('Fluent Bit dropping every connection (input paused) loses nothing: in-flight chunks are resent', async () => {
  const receiver = new ForwardReceiver();
  receiver.holdAcks();
  const h = await harness({ chunk_bytes: 4096, max_chunks_in_flight: 3 }, receiver);
  try {
    h.sink.start();
    const sent = h.sink.send(TAG, batch(h.sink, 0, 24));
    await waitUntil(() => receiver.heldAcks === 3, 'three chunks in flight');
    receiver.releaseAcks(); // the first three are acked ...
    await waitUntil(() => receiver.heldAcks === 3, 'the next three in flight');
    receiver.dropConnections(); // ... the next three are lost with the connection
    receiver.autoAck();
    await driveUntil(h.clock, settled(sent), 'delivery after the drop');
    await sent;
    assertDelivered(h, 24);
    const counts = new Map<string, number>();
    for (const c of receiver.chunks) counts.set(c, (counts.get(c) ?? 0) + 1);
    assert.equal([...counts.values()].filter((n) => n === 2).length, 3, 'exactly the three unacked chunks were sent twice');
  } finally {
    await teardown(h);
  }
});

test('refused connections: nothing lost, backoff doubles and is capped, delivery resumes when Fluent Bit is back', async () => {
  const receiver = new ForwardReceiver();
  await receiver.listen();
  const port = receiver.port;
  await receiver.stopListening();
  const h = await harness({ port }, receiver, { listen: false });
  try {
    const sent = h.sink.send(TAG, batch(h.sink, 0, 10));
    h.sink.start();
    for (let i = 1; i <= 7; i++) {
      await waitUntil(() => h.retries.length === i, `retry ${i}`);
      assert.equal(h.sink.stats().connected, false);
      await h.clock.advance(h.retries[i - 1]!);
    }
    // random() = 1 takes the top of each jitter range: 100 · 2^n, capped at reconnect_max_secs.
    assert.deepEqual(h.retries.slice(0, 7), [100, 200, 400, 800, 1000, 1000, 1000]);
    assert.equal(h.sink.stats().pendingRecords, 10);
    await receiver.listen(port);
    await driveUntil(h.clock, settled(sent), 'delivery after Fluent Bit came back', 250);
    await sent;
    assert.deepEqual(seqs(receiver), Array.from({ length: 10 }, (_, i) => i), 'each record exactly once');
    // Acks reset the backoff: the next outage starts again from reconnect_initial_secs.
    const before = h.retries.length;
    receiver.dropConnections();
    await waitUntil(() => h.retries.length === before + 1, 'retry after a drop');
    assert.equal(h.retries.at(-1), 100);
  } finally {
    await teardown(h);
  }
});

test('an ack that never comes times out: the connection is replaced and the same chunk resent', async () => {
  const receiver = new ForwardReceiver();
  receiver.holdAcks();
  const h = await harness({ ack_timeout_secs: 5 }, receiver);
  try {
    h.sink.start();
    const sent = h.sink.send(TAG, batch(h.sink, 0, 3));
    await waitUntil(() => receiver.frames.length === 1, 'first frame');
    receiver.autoAck();
    await h.clock.advance(4_999);
    assert.equal(h.disconnects.length, 0, 'not before ack_timeout_secs');
    await h.clock.advance(1);
    await driveUntil(h.clock, settled(sent), 'resend acked');
    await sent;
    assert.match(h.disconnects[0]!.message, /no ack for chunk .* within 5 s/);
    assert.equal(receiver.frames.length, 2);
    assert.equal(receiver.frames[0]!.chunk, receiver.frames[1]!.chunk, 'resent with the same chunk id');
    assert.notEqual(receiver.frames[0]!.connection, receiver.frames[1]!.connection);
    assert.deepEqual(seqs(receiver), [0, 1, 2, 0, 1, 2]);
  } finally {
    await teardown(h);
  }
});

test('a wrong shared key: a clear handshake error, no data sent, no credential in errors or logs', async () => {
  const receiver = new ForwardReceiver({ sharedKey: TEST_SECRETS.forwardSharedKey, serverHostname: 'fluent-bit' });
  const { logger, lines } = captureLogger();
  const h = await harness({ shared_key: 'not-the-right-key-123', self_hostname: 'sidecar' }, receiver, { logger });
  try {
    const sent = h.sink.send(TAG, batch(h.sink, 0, 5));
    h.sink.start();
    await waitUntil(() => h.errors.length >= 1, 'handshake error');
    const err = h.errors[0]!;
    assert.equal(err.code, ErrorCode.FORWARD_HANDSHAKE);
    assert.match(err.message, /without a PONG: output\.shared_key does not match/);
    assert.equal(h.sink.lastError, err);
    assert.deepEqual(receiver.handshakeFailures, ['shared_key mismatch']);
    assert.equal(receiver.frames.length, 0);
    assert.equal(receiver.droppedBeforePong, 0, 'nothing was written before PONG');
    assert.equal(h.sink.stats().pendingRecords, 5);
    assert.equal(settled(sent)(), false);
    const text = lines.join('') + h.errors.map((e) => e.message).join('');
    assert.match(text, /shared_key does not match/);
    assert.ok(!text.includes('not-the-right-key-123') && !text.includes(TEST_SECRETS.forwardSharedKey), 'no key in logs or errors');
  } finally {
    await teardown(h);
  }
});

test('the right shared key and user: the handshake passes and records flow', async () => {
  const receiver = new ForwardReceiver({
    sharedKey: TEST_SECRETS.forwardSharedKey,
    users: { alice: TEST_SECRETS.forwardPassword },
  });
  const h = await harness(
    { shared_key: TEST_SECRETS.forwardSharedKey, self_hostname: 'sidecar', username: 'alice', password: TEST_SECRETS.forwardPassword },
    receiver,
  );
  try {
    h.sink.start();
    await h.sink.send(TAG, batch(h.sink, 0, 5));
    assert.equal(receiver.established, 1);
    assert.deepEqual(seqs(receiver), [0, 1, 2, 3, 4]);
  } finally {
    await teardown(h);
  }
});

test('a wrong password: Fluent Bit\'s PONG refusal is reported with its reason', async () => {
  const receiver = new ForwardReceiver({ sharedKey: TEST_SECRETS.forwardSharedKey, users: { alice: 'another-password-000' } });
  const { logger, lines } = captureLogger();
  const h = await harness(
    { shared_key: TEST_SECRETS.forwardSharedKey, username: 'alice', password: TEST_SECRETS.forwardPassword },
    receiver,
    { logger },
  );
  try {
    h.sink.start();
    await waitUntil(() => h.errors.length >= 1, 'auth error');
    assert.match(h.errors[0]!.message, /refused authentication \(username\/password mismatch\)/);
    assert.equal(receiver.frames.length, 0);
    assert.ok(!lines.join('').includes(TEST_SECRETS.forwardPassword));
  } finally {
    await teardown(h);
  }
});

test('Fluent Bit wants a shared key the sidecar does not have: the error says so', async () => {
  const receiver = new ForwardReceiver({ sharedKey: TEST_SECRETS.forwardSharedKey });
  const h = await harness({}, receiver);
  try {
    const sent = h.sink.send(TAG, batch(h.sink, 0, 2));
    h.sink.start();
    await waitUntil(() => h.errors.length >= 1, 'error');
    assert.match(h.errors[0]!.message, /requires a shared key, and output\.shared_key is not set/);
    assert.equal(receiver.frames.length, 0, 'whatever was written before HELO was dropped, not ingested');
    assert.equal(settled(sent)(), false, 'and is still pending, to be resent');
  } finally {
    await teardown(h);
  }
});

test('max_frame_bytes: maxRecordBytes is exact, an oversize record is refused, frames never exceed the limit', async () => {
  const max_frame_bytes = 65_536;
  const h = await harness({ max_frame_bytes, chunk_bytes: 1_000_000 });
  try {
    h.sink.start();
    const limit = h.sink.maxRecordBytes(TAG);
    const sized = (n: number, seq: number) => h.sink.encode({ time: { sec: 1, nsec: 0 }, record: { seq, message: 'x'.repeat(n) } });
    // Build a record of exactly `limit` bytes: the encoding overhead around a long str is fixed.
    const probe = h.sink.encode({ time: { sec: 1, nsec: 0 }, record: { seq: 0, message: 'x'.repeat(60_000) } });
    const overhead = probe.length - 60_000;
    const exact = h.sink.encode({ time: { sec: 1, nsec: 0 }, record: { seq: 0, message: 'x'.repeat(limit - overhead) } });
    assert.equal(exact.length, limit);
    const over = h.sink.encode({ time: { sec: 1, nsec: 0 }, record: { seq: 1, message: 'x'.repeat(limit - overhead + 1) } });

    await assert.rejects(h.sink.send(TAG, [over]), (e: SidecarError) => e.code === ErrorCode.RECORD_TOO_LARGE && /output\.max_frame_bytes \(65536\)/.test(e.message));
    assert.equal(h.sink.stats().pendingRecords, 0, 'nothing of a refused send is queued');

    await h.sink.send(TAG, [exact]);
    assert.equal(h.receiver.frames.at(-1)!.bytes, max_frame_bytes, 'a record of exactly maxRecordBytes makes a frame of exactly max_frame_bytes');

    // Mixed sizes with chunk_bytes far above the limit: frames are cut by max_frame_bytes.
    const mixed = Array.from({ length: 40 }, (_, i) => sized(5_000 + ((i * 7919) % 25_000), 100 + i));
    await h.sink.send(TAG, mixed);
    const frames = h.receiver.frames.slice(1);
    assert.ok(frames.length > 1);
    for (const f of frames) assert.ok(f.bytes! <= max_frame_bytes, `frame of ${f.bytes} bytes`);
    assert.equal(frames.reduce((n, f) => n + f.entries, 0), 40);
  } finally {
    await teardown(h);
  }
});

test('close(timeout) with acks withheld resolves with the unacked count and rejects pending sends', async () => {
  const receiver = new ForwardReceiver();
  receiver.holdAcks();
  const h = await harness({ chunk_bytes: 2200 }, receiver);
  h.sink.start();
  const sent = h.sink.send(TAG, batch(h.sink, 0, 6));
  await waitUntil(() => receiver.heldAcks === 3, 'three chunks');
  receiver.releaseAcks(); // those three are acked; the next send is not
  const later = h.sink.send(TAG, batch(h.sink, 6, 4));
  const rejected = assert.rejects(later, (e: SidecarError) => e.code === ErrorCode.FORWARD_CLOSED);
  await sent;
  await waitUntil(() => receiver.heldAcks === 2, 'two more chunks');
  const closing = h.sink.close(5_000);
  await h.clock.advance(4_999);
  assert.equal(settled(closing)(), false, 'close waits for acks up to its timeout');
  await h.clock.advance(1);
  assert.equal(await closing, 4);
  await rejected;
  await assert.rejects(h.sink.send(TAG, batch(h.sink, 10, 1)), /closing/);
  await receiver.close();
});

test('close drains: resolves with 0 once everything queued is acked', async () => {
  const h = await harness();
  h.sink.start();
  const sent = h.sink.send(TAG, batch(h.sink, 0, 50));
  assert.equal(await h.sink.close(10_000), 0);
  await sent;
  assert.equal(h.receiver.records.length, 50);
  await h.receiver.close();
});

test('unix socket transport', async (t) => {
  const dir = mkdtempSync(path.join(tmpdir(), 'fwd-'));
  t.after(() => rmSync(dir, { recursive: true, force: true }));
  const unixPath = path.join(dir, 'forward.sock');
  const h = await harness({ unix_path: unixPath }, new ForwardReceiver({ unixPath }));
  try {
    h.sink.start();
    await h.sink.send(TAG, batch(h.sink, 0, 10));
    assert.deepEqual(seqs(h.receiver), Array.from({ length: 10 }, (_, i) => i));
  } finally {
    await teardown(h);
  }
});

test('TLS with a client certificate (mutual TLS)', async () => {
  const receiver = new ForwardReceiver({
    tls: { key: readFileSync(fixture('server.key')), cert: readFileSync(fixture('server.crt')), ca: readFileSync(fixture('ca.crt')) },
  });
  const h = await harness(
    { tls: { ca_file: fixture('ca.crt'), cert_file: fixture('client.crt'), key_file: fixture('client.key'), verify: true } },
    receiver,
  );
  try {
    h.sink.start();
    await h.sink.send(TAG, batch(h.sink, 0, 10));
    assert.equal(receiver.records.length, 10);
  } finally {
    await teardown(h);
  }
});

test('TLS with a certificate the CA bundle does not trust: a TLS error, nothing sent', async () => {
  const receiver = new ForwardReceiver({ tls: { key: readFileSync(fixture('server.key')), cert: readFileSync(fixture('server.crt')) } });
  const h = await harness({ tls: { verify: true } }, receiver); // system CAs only
  try {
    h.sink.start();
    const sent = h.sink.send(TAG, batch(h.sink, 0, 1));
    await waitUntil(() => h.errors.length >= 1, 'TLS error');
    assert.equal(h.errors[0]!.code, ErrorCode.FORWARD_HANDSHAKE);
    assert.match(h.errors[0]!.message, /^TLS with 127\.0\.0\.1:\d+ \(TLS\) failed: .*certificate/);
    assert.equal(receiver.records.length, 0);
    assert.equal(settled(sent)(), false);
  } finally {
    await teardown(h);
  }
});

test('TLS verification checks the name: a servername not in the certificate is refused', async () => {
  const receiver = new ForwardReceiver({ tls: { key: readFileSync(fixture('server.key')), cert: readFileSync(fixture('server.crt')) } });
  const h = await harness({ tls: { ca_file: fixture('ca.crt'), verify: true, servername: 'other.example' } }, receiver);
  try {
    h.sink.start();
    await waitUntil(() => h.errors.length >= 1, 'TLS error');
    assert.match(h.errors[0]!.message, /other\.example|altnames/i);
    assert.equal(receiver.records.length, 0);
  } finally {
    await teardown(h);
  }
});

test('an unreadable TLS file is reported and retried, not thrown', async () => {
  const h = await harness({ tls: { ca_file: '/nonexistent/ca.crt', verify: true } });
  try {
    h.sink.start();
    assert.equal(h.errors.length, 1);
    assert.match(h.errors[0]!.message, /cannot connect to 127\.0\.0\.1:\d+ \(TLS\): ENOENT.*\/nonexistent\/ca\.crt/);
    assert.equal(h.retries.length, 1, 'a retry is scheduled');
    await h.clock.advance(h.retries[0]!);
    assert.equal(h.errors.length, 2, 'and the file is read again on the next attempt');
  } finally {
    await teardown(h);
  }
});
