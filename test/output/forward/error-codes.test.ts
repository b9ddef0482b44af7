/**
 * Each way a forward connection fails carries its own code (plugin/errors.ts), so an operator
 * and the tests tell a refused connection from a lost one, a peer's close, an ack timeout, a
 * protocol violation and a write after close. The client runs on its own options here, built
 * without the configuration schema (forwardOptionsFrom is the only translation from it).
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import net from 'node:net';
import { ForwardClient, OutboundChunk, forwardOptionsFrom, type ForwardConnectionOptions } from '../../../plugin/output/forward/client.ts';
import { encodeEntry, newChunkId } from '../../../plugin/output/forward/encoder.ts';
import { ForwardSink } from '../../../plugin/output/forward/sink.ts';
import { ErrorCode, SidecarError } from '../../../plugin/errors.ts';
import { FakeClock } from '../../helpers/fake-clock.ts';
import { ForwardReceiver, forwardConfig, waitUntil } from '../../helpers/forward-receiver.ts';
import { freePort } from '../../helpers/net.ts';

const TAG = 'mail.proofpoint.pod.maillog';

function options(port: number, over: Partial<ForwardConnectionOptions> = {}): ForwardConnectionOptions {
  return {
    host: '127.0.0.1',
    port,
    connectTimeoutSecs: 10,
    ackTimeoutSecs: 30,
    reconnectInitialMs: 100,
    reconnectMaxMs: 1000,
    maxChunksInFlight: 4,
    maxFrameBytes: 65_536,
    ...over,
  };
}

function chunk(records = 1, onAcked: () => void = () => {}): OutboundChunk {
  const entries = Array.from({ length: records }, (_, i) => encodeEntry({ time: { sec: 1, nsec: i }, record: { seq: i } }));
  return new OutboundChunk(TAG, newChunkId(), entries, entries.reduce((n, e) => n + e.length, 0), onAcked);
}

/**
 * A client on a FakeClock (so it never reconnects by itself) against `port`, one chunk queued;
 * resolves with the error of the first disconnect.
 */
async function firstDisconnect(port: number, over: Partial<ForwardConnectionOptions> = {}, drive?: (clock: FakeClock) => Promise<void>): Promise<Error> {
  const clock = new FakeClock();
  let error: Error | undefined;
  const client = new ForwardClient(options(port, over), { clock, events: { disconnected: (d) => (error ??= d.error) } });
  try {
    client.start();
    client.enqueue(chunk());
    if (drive) await drive(clock);
    await waitUntil(() => error !== undefined, 'a disconnect');
    return error!;
  } finally {
    client.close();
  }
}

/** A loopback server that treats each connection with `onData` once the client has written to it. */
async function rawServer(onData: (socket: net.Socket) => void): Promise<{ port: number; close(): Promise<void> }> {
  const sockets = new Set<net.Socket>();
  const server = net.createServer((s) => {
    sockets.add(s);
    s.on('error', () => {});
    s.once('data', () => onData(s));
  });
  await new Promise<void>((r) => server.listen(0, '127.0.0.1', r));
  return {
    port: (server.address() as net.AddressInfo).port,
    close: () => {
      for (const s of sockets) s.destroy();
      return new Promise<void>((r) => server.close(() => r()));
    },
  };
}

test('a refused connection is SIDECAR_ERR_FORWARD_CONNECT', async () => {
  const err = await firstDisconnect(await freePort());
  assert.equal((err as SidecarError).code, ErrorCode.FORWARD_CONNECT, err.message);
  assert.match(err.message, /ECONNREFUSED/);
});

test('Fluent Bit closing the connection is SIDECAR_ERR_FORWARD_PEER_CLOSED', async () => {
  const srv = await rawServer((s) => s.end());
  try {
    const err = await firstDisconnect(srv.port);
    assert.equal((err as SidecarError).code, ErrorCode.FORWARD_PEER_CLOSED, err.message);
    assert.match(err.message, /closed the connection/);
  } finally {
    await srv.close();
  }
});

test('a connection reset after it opened is SIDECAR_ERR_FORWARD_CONNECTION_LOST', async () => {
  const srv = await rawServer((s) => s.resetAndDestroy());
  try {
    const err = await firstDisconnect(srv.port);
    assert.equal((err as SidecarError).code, ErrorCode.FORWARD_CONNECTION_LOST, err.message);
  } finally {
    await srv.close();
  }
});

test('a message a forward server never sends is SIDECAR_ERR_FORWARD_PROTOCOL', async () => {
  const srv = await rawServer((s) => s.write(Buffer.of(0x01)));
  try {
    const err = await firstDisconnect(srv.port);
    assert.equal((err as SidecarError).code, ErrorCode.FORWARD_PROTOCOL, err.message);
    assert.match(err.message, /expected \{ack: chunk\}/);
  } finally {
    await srv.close();
  }
});

test('a chunk not acknowledged within ackTimeoutSecs is SIDECAR_ERR_FORWARD_ACK_TIMEOUT', async () => {
  const receiver = new ForwardReceiver();
  receiver.holdAcks();
  await receiver.listen();
  try {
    const err = await firstDisconnect(receiver.port, { ackTimeoutSecs: 5 }, async (clock) => {
      await waitUntil(() => receiver.heldAcks === 1, 'the chunk to arrive');
      await clock.advance(5_000);
    });
    assert.equal((err as SidecarError).code, ErrorCode.FORWARD_ACK_TIMEOUT, err.message);
    assert.match(err.message, /no ack for chunk .* within 5 s/);
  } finally {
    await receiver.close();
  }
});

test('records offered after close are SIDECAR_ERR_OUTPUT_CLOSED; records left unacknowledged by close are SIDECAR_ERR_FORWARD_CLOSED', async () => {
  const client = new ForwardClient(options(await freePort()), { clock: new FakeClock() });
  client.close();
  assert.throws(() => client.enqueue(chunk()), (e: SidecarError) => e.code === ErrorCode.OUTPUT_CLOSED);

  const receiver = new ForwardReceiver();
  receiver.holdAcks();
  await receiver.listen();
  const clock = new FakeClock();
  const sink = new ForwardSink(forwardConfig({ port: receiver.port }), { clock });
  try {
    sink.start();
    const unacked = sink.send(TAG, [sink.encode({ time: { sec: 1, nsec: 0 }, record: { seq: 0 } })]);
    const rejected = assert.rejects(unacked, (e: SidecarError) => e.code === ErrorCode.FORWARD_CLOSED);
    await waitUntil(() => receiver.heldAcks === 1, 'the chunk to arrive');
    const closing = sink.close(1_000);
    await clock.advance(1_000);
    assert.equal(await closing, 1);
    await rejected;
    await assert.rejects(sink.send(TAG, []), (e: SidecarError) => e.code === ErrorCode.OUTPUT_CLOSED);
    await assert.rejects(sink.waitForCapacity(), (e: SidecarError) => e.code === ErrorCode.OUTPUT_CLOSED);
  } finally {
    await receiver.close();
  }
});

test('ForwardClient.enqueue is all or none: one frame over maxFrameBytes refuses the whole call and writes nothing', async () => {
  const receiver = new ForwardReceiver();
  await receiver.listen();
  const client = new ForwardClient(options(receiver.port, { maxFrameBytes: 65_536 }), { clock: new FakeClock() });
  try {
    client.start();
    const big = encodeEntry({ time: { sec: 1, nsec: 0 }, record: { message: 'x'.repeat(70_000) } });
    const over = new OutboundChunk(TAG, newChunkId(), [big], big.length, () => {});
    assert.throws(
      () => client.enqueue([chunk(), over, chunk()]),
      (e: SidecarError) => e.code === ErrorCode.RECORD_TOO_LARGE && /output\.max_frame_bytes \(65536\)/.test(e.message),
    );
    assert.equal(client.unacked, 0, 'nothing of the refused call is queued');
    let acked = false;
    client.enqueue(chunk(2, () => (acked = true)));
    await waitUntil(() => acked, 'the next chunk to be acknowledged');
    assert.equal(receiver.frames.length, 1, 'only the chunk enqueued after the refusal was written');
    assert.equal(receiver.frames[0]!.entries, 2);
  } finally {
    client.close();
    await receiver.close();
  }
});

test('forwardOptionsFrom translates the output section into the client options, secrets and TLS included', () => {
  const o = forwardOptionsFrom(
    forwardConfig({
      host: 'fluent-bit',
      port: 24225,
      shared_key: 'k',
      self_hostname: 'me',
      username: 'u',
      password: 'p',
      tls: { verify: false, ca_file: '/ca.pem', servername: 'fb.example' },
      connect_timeout_secs: 3,
      ack_timeout_secs: 7,
      reconnect_initial_secs: 0.011,
      reconnect_max_secs: 0.013,
      max_chunks_in_flight: 2,
      max_frame_bytes: 70_000,
    }),
  );
  assert.deepEqual(o, {
    host: 'fluent-bit',
    port: 24225,
    tls: { verify: false, servername: 'fb.example', caFile: '/ca.pem' },
    credentials: { sharedKey: 'k', selfHostname: 'me', username: 'u', password: 'p' },
    connectTimeoutSecs: 3,
    ackTimeoutSecs: 7,
    reconnectInitialMs: 11,
    reconnectMaxMs: 13,
    maxChunksInFlight: 2,
    maxFrameBytes: 70_000,
  });
  assert.deepEqual(forwardOptionsFrom(forwardConfig({ unix_path: '/run/fb.sock' })).unixPath, '/run/fb.sock');
  assert.equal(forwardOptionsFrom(forwardConfig()).credentials, undefined, 'no shared key: no handshake');
});
