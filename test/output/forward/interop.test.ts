/**
 * Interop with an independent implementation: @fluent-org/logger's FluentServer receives what
 * ForwardSink sends, plain, with the shared-key handshake (and user auth), and over TLS.
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { readFileSync } from 'node:fs';
import { fileURLToPath } from 'node:url';
import { FluentServer, EventTime } from '@fluent-org/logger';
import { ForwardSink } from '../../../plugin/output/forward/sink.ts';
import type { ForwardOutputConfig } from '../../../plugin/config/schema.ts';
import { forwardConfig } from '../../helpers/forward-receiver.ts';
import { TEST_SECRETS } from '../../helpers/secrets.ts';

const fixture = (name: string) => fileURLToPath(new URL(`../../fixtures/tls/${name}`, import.meta.url));

interface Entry {
  tag: string;
  time: EventTime | number;
  record: Record<string, unknown>;
}

async function roundTrip(server: FluentServer, cfg: Partial<ForwardOutputConfig>): Promise<Entry[]> {
  const got: Entry[] = [];
  server.on('entry', (tag: string, time: EventTime | number, record: Record<string, unknown>) => got.push({ tag, time, record }));
  await server.listen();
  const sink = new ForwardSink(forwardConfig({ port: server.port!, chunk_bytes: 2048, ...cfg }), {});
  try {
    sink.start();
    const recs = Array.from({ length: 50 }, (_, i) => ({
      time: { sec: 1795355887 + i, nsec: 123456789 + i },
      record: { seq: i, message: `{"event":${i},"text":"héllo ✓"}`, devo_tag: 'mail.proofpoint.pod.maillog', nested: { a: [1, null, true] } },
    }));
    await sink.send('mail.proofpoint.pod.maillog', recs.map((r) => sink.encode(r)));
    assert.equal(await sink.close(1000), 0);
    assert.equal(got.length, 50);
    got.forEach((e, i) => {
      assert.equal(e.tag, 'mail.proofpoint.pod.maillog');
      assert.ok(e.time instanceof EventTime, 'time arrives as EventTime');
      assert.equal((e.time as EventTime).epoch, 1795355887 + i);
      assert.equal((e.time as EventTime).nano, 123456789 + i);
      assert.deepEqual(e.record, recs[i]!.record);
    });
    assert.ok(sink.stats().chunksAcked > 1, 'records went in several chunks');
    return got;
  } finally {
    await sink.close(0);
    await server.close();
  }
}

test('FluentServer receives every record with its tag, EventTime and fields', async () => {
  await roundTrip(new FluentServer(), {});
});

test('FluentServer with a shared key (HELO with bin nonce) accepts the handshake', async () => {
  const server = new FluentServer({
    security: { serverHostname: 'fluent-server', sharedKey: TEST_SECRETS.forwardSharedKey, authorize: false, userDict: {} },
  });
  await roundTrip(server, { shared_key: TEST_SECRETS.forwardSharedKey, self_hostname: 'sidecar' });
});

test('FluentServer with a shared key and security.users accepts our user digest', async () => {
  const server = new FluentServer({
    security: {
      serverHostname: 'fluent-server',
      sharedKey: TEST_SECRETS.forwardSharedKey,
      authorize: true,
      userDict: { alice: TEST_SECRETS.forwardPassword },
    },
  });
  await roundTrip(server, {
    shared_key: TEST_SECRETS.forwardSharedKey,
    self_hostname: 'sidecar',
    username: 'alice',
    password: TEST_SECRETS.forwardPassword,
  });
});

test('FluentServer over TLS, certificate verified against the test CA', async () => {
  const server = new FluentServer({
    tlsOptions: { key: readFileSync(fixture('server.key')), cert: readFileSync(fixture('server.crt')) },
  });
  await roundTrip(server, { tls: { ca_file: fixture('ca.crt'), verify: true, servername: 'localhost' } });
});
