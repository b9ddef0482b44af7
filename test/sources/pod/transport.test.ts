/**
 * How the PoD source reaches the log stream: TLS verified (never silently relaxed), proxies
 * from HTTPS_PROXY / NO_PROXY through an HTTP CONNECT tunnel that never sees the bearer token,
 * permessage-deflate when the server agrees.
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import net from 'node:net';
import { readFileSync } from 'node:fs';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { startPodSimulator } from '../../../plugin/simulator/pod/index.ts';
import { ErrorCode } from '../../../plugin/errors.ts';
import { MemorySink } from '../../helpers/memory-sink.ts';
import { tmpDir } from '../../helpers/tmp.ts';
import { API_KEY, delivered, podConfig, simBase, startSidecar, until } from './harness.ts';

const tlsDir = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '../../fixtures/tls');
const tls = { key: readFileSync(path.join(tlsDir, 'server.key')), cert: readFileSync(path.join(tlsDir, 'server.crt')) };
const ca = readFileSync(path.join(tlsDir, 'ca.crt'));

/** A minimal HTTP CONNECT proxy that records what it tunnels. */
async function connectProxy(): Promise<{ port: number; connects: string[]; bytes: Buffer[]; close(): Promise<void> }> {
  const connects: string[] = [];
  const bytes: Buffer[] = [];
  const sockets = new Set<net.Socket>();
  const server = net.createServer((client) => {
    sockets.add(client);
    client.once('data', (head) => {
      const m = /^CONNECT ([^ ]+) HTTP\/1\.1\r\n/.exec(head.toString('latin1'));
      if (!m) return client.end('HTTP/1.1 405 Method Not Allowed\r\n\r\n');
      connects.push(m[1]!);
      const [host, port] = m[1]!.split(/:(?=\d+$)/);
      const upstream = net.connect(Number(port), host === 'localhost' ? '127.0.0.1' : host!, () => {
        client.write('HTTP/1.1 200 Connection Established\r\n\r\n');
        client.on('data', (d: Buffer) => bytes.push(d));
        client.pipe(upstream).pipe(client);
      });
      sockets.add(upstream);
      upstream.on('error', () => client.destroy());
      client.on('error', () => upstream.destroy());
    });
  });
  await new Promise<void>((r) => server.listen(0, '127.0.0.1', r));
  return {
    port: (server.address() as net.AddressInfo).port,
    connects,
    bytes,
    close: async () => {
      for (const s of sockets) s.destroy();
      await new Promise((r) => server.close(r));
    },
  };
}

test('wss: the server certificate is verified; an unknown CA is refused (301), never bypassed', async (t) => {
  const sim = await startPodSimulator({ ...simBase(), tls, rate: { audit: 100, message: 0, maillog: 0 } });
  t.after(() => sim.close());
  const cfg = podConfig(sim, {}, { audit: {} });

  const refused = await startSidecar({ cfg, stateDir: tmpDir() });
  await until(() => refused.pipeline.health.get('pod-test', 'audit')?.status === 'degraded', 'degraded');
  const line = refused.log.lines.find((l) => l.code === ErrorCode.VENDOR_REQUEST)!;
  assert.match(String(line.err), /certificate/i);
  assert.equal(sim.sessions.length, 0, 'no upgrade request reached the server');
  await refused.stop();

  const sink = new MemorySink();
  const trusted = await startSidecar({ cfg, stateDir: tmpDir(), sink, wsOptions: { ca } });
  await until(() => delivered(sink, 'audit').length >= 50, 'audit events over wss');
  await trusted.stop();
});

test('HTTPS_PROXY: the session goes through a CONNECT tunnel; the proxy never sees the api_key', async (t) => {
  const sim = await startPodSimulator({ ...simBase(), tls, rate: { maillog: 100, message: 0, audit: 0 } });
  t.after(() => sim.close());
  const proxy = await connectProxy();
  t.after(() => proxy.close());
  const sink = new MemorySink();
  const sc = await startSidecar({
    cfg: podConfig(sim, {}, { maillog: {} }),
    stateDir: tmpDir(),
    sink,
    wsOptions: { ca },
    env: { HTTPS_PROXY: `http://127.0.0.1:${proxy.port}` },
  });
  await until(() => delivered(sink, 'maillog').length >= 50, 'events through the proxy');
  await sc.stop();
  assert.deepEqual(proxy.connects, [`localhost:${sim.port}`]);
  assert.ok(!Buffer.concat(proxy.bytes).includes(API_KEY), 'the bearer token travels inside TLS');
});

test('NO_PROXY: matching hosts connect directly', async (t) => {
  const sim = await startPodSimulator({ ...simBase(), rate: { maillog: 100, message: 0, audit: 0 } });
  t.after(() => sim.close());
  const proxy = await connectProxy();
  t.after(() => proxy.close());
  const sink = new MemorySink();
  const sc = await startSidecar({
    cfg: podConfig(sim, {}, { maillog: {} }),
    stateDir: tmpDir(),
    sink,
    env: { HTTPS_PROXY: `http://127.0.0.1:${proxy.port}`, HTTP_PROXY: `http://127.0.0.1:${proxy.port}`, NO_PROXY: 'localhost,127.0.0.1' },
  });
  await until(() => delivered(sink, 'maillog').length >= 50, 'events');
  await sc.stop();
  assert.deepEqual(proxy.connects, []);
});

test('permessage-deflate is offered and used when the server agrees; per_message_deflate: false turns it off', async (t) => {
  const sim = await startPodSimulator({ ...simBase(), rate: { message: 200, maillog: 0, audit: 0 }, perMessageDeflate: true });
  t.after(() => sim.close());
  for (const offer of [true, false]) {
    const sink = new MemorySink();
    const sc = await startSidecar({ cfg: podConfig(sim, { per_message_deflate: offer }, { message: {} }), stateDir: tmpDir(), sink });
    await until(() => delivered(sink, 'message').length >= 100, 'events');
    await sc.stop();
    const s = sim.sessions.at(-1)!;
    assert.equal(s.extensions?.includes('permessage-deflate') ?? false, offer);
    for (const r of sink.records) JSON.parse(r.record.message as string);
  }
});

test('a server that never answers the upgrade: the handshake times out and the attempt is retried', async (t) => {
  const accepted: net.Socket[] = [];
  const silent = net.createServer((s) => accepted.push(s));
  await new Promise<void>((r) => silent.listen(0, '127.0.0.1', r));
  t.after(() => {
    for (const s of accepted) s.destroy();
    silent.close();
  });
  const port = (silent.address() as net.AddressInfo).port;
  const fake = { url: `ws://127.0.0.1:${port}`, credentials: { cluster_id: 'c', api_key: API_KEY } } as Parameters<typeof podConfig>[0];
  const sc = await startSidecar({ cfg: podConfig(fake, { handshake_timeout_secs: 1 }, { audit: {} }), stateDir: tmpDir() });
  await until(() => accepted.length >= 2, 'a second attempt');
  const line = sc.log.lines.find((l) => l.code === ErrorCode.VENDOR_REQUEST)!;
  assert.match(String(line.err), /handshake has timed out/i);
  assert.equal(sc.pipeline.health.get('pod-test', 'audit')?.status, 'degraded');
  await sc.stop();
});
