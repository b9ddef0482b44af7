/**
 * The shared-key handshake against digests computed by hand with sha512sum:
 *
 *   printf '0123456789abcdef0123456789abcdef' 'sidecar' '\xff\x01..\x0f' 'secret' | sha512sum
 *
 * HELO parsing at byte level, where nonce and auth are random bytes inside a msgpack str, and the
 * whole handshake through ForwardSink against test/helpers/forward-receiver.ts behaving as Fluent
 * Bit's in_forward: a 16-byte auth salt in every HELO, users checked only with security.users.
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { decode, encode as pack } from '@msgpack/msgpack';
import {
  encodePing,
  HandshakeError,
  parseHelo,
  passwordDigest,
  MAX_PING_BYTES,
  sharedKeyDigest,
  verifyPong,
} from '../../../plugin/output/forward/handshake.ts';
import { decodeOne } from '../../../plugin/output/forward/reader.ts';
import { ForwardSink } from '../../../plugin/output/forward/sink.ts';
import { ErrorCode, type SidecarError } from '../../../plugin/errors.ts';
import type { ForwardOutputConfig } from '../../../plugin/config/schema.ts';
import { FakeClock } from '../../helpers/fake-clock.ts';
import { ForwardReceiver, captureLogger, forwardConfig, waitUntil } from '../../helpers/forward-receiver.ts';
import { TEST_SECRETS } from '../../helpers/secrets.ts';

const SALT = '0123456789abcdef0123456789abcdef';
const NONCE = Buffer.from('ff0102030405060708090a0b0c0d0e0f', 'hex'); // not valid UTF-8
const AUTH = Buffer.from('feeeddccbbaa99887766554433221100', 'hex');
// sha512(SALT + 'sidecar' + NONCE + 'secret')
const CLIENT_DIGEST =
  'a7f8e160793f4fc77290c48ca7186d1a29d085e55bd1af1337165ccb1d21368f87ea91e86c5b549b04ffb827716fba99113df0f3c690ba175c72c7cdc4128183';
// sha512(SALT + 'fluent-bit' + NONCE + 'secret')
const SERVER_DIGEST =
  '7e5167eace984c8ac2904cc62e579f7d860fee481262772e699943f6c0d59545ef69c2e98fc9968e733cc14bc59f6d4b75e1a2e1d589d0eff82e6a350ac17b10';
// sha512(AUTH + 'alice' + 'pa55word')
const PASSWORD_DIGEST =
  'd0623037f72cdb147fba89c17c31768912654a8fdcb34fefd85f23d1d1bc4fdc90ea69fd82c9472746053103c78d5fbfa24f22a9b0d5c54335b56ffe1ae4e798';

const str = (b: Buffer) => Buffer.concat([Buffer.of(0xa0 | b.length), b]);
/** HELO exactly as Fluent Bit writes it: both values raw bytes in fixstr. */
const heloBytes = (auth: Buffer) =>
  Buffer.concat([Buffer.from('92a448454c4f82a56e6f6e6365', 'hex'), str(NONCE), Buffer.from('a461757468', 'hex'), str(auth)]);

test('digests match the hand-computed values', () => {
  assert.equal(sharedKeyDigest(SALT, 'sidecar', NONCE, 'secret'), CLIENT_DIGEST);
  assert.equal(sharedKeyDigest(SALT, 'fluent-bit', NONCE, 'secret'), SERVER_DIGEST);
  assert.equal(passwordDigest(AUTH, 'alice', 'pa55word'), PASSWORD_DIGEST);
});

test('HELO nonce and auth are read as the raw bytes, even when they are not UTF-8', () => {
  const helo = parseHelo(decodeOne(heloBytes(AUTH)));
  assert.deepEqual(helo.nonce, NONCE);
  assert.deepEqual(helo.auth, AUTH);
  // What a UTF-8 decoder makes of the same bytes: the digest would be wrong.
  const mangled = (decode(heloBytes(AUTH)) as [string, { nonce: string }])[1].nonce;
  assert.notEqual(Buffer.from(mangled, 'utf8').toString('hex'), NONCE.toString('hex'));
});

test('HELO values given as bin (as @fluent-org/logger sends them) are accepted too', () => {
  const bin = (b: Buffer) => Buffer.concat([Buffer.of(0xc4, b.length), b]);
  const bytes = Buffer.concat([Buffer.from('92a448454c4f83a56e6f6e6365', 'hex'), bin(NONCE), Buffer.from('a461757468', 'hex'), bin(AUTH), Buffer.from('a96b656570616c697665c3', 'hex')]);
  assert.deepEqual(parseHelo(decodeOne(bytes)), { nonce: NONCE, auth: AUTH, keepalive: true });
});

test('PING is exactly six msgpack str: PING, hostname, salt, digest, and empty user fields', () => {
  const helo = parseHelo(decodeOne(heloBytes(Buffer.alloc(0))));
  const ping = encodePing(helo, { sharedKey: 'secret', selfHostname: 'sidecar' }, SALT);
  const expected = Buffer.concat([
    Buffer.of(0x96),
    str(Buffer.from('PING')),
    str(Buffer.from('sidecar')),
    Buffer.concat([Buffer.of(0xd9, 32), Buffer.from(SALT)]), // 32 characters: str8, past fixstr's 31
    Buffer.concat([Buffer.of(0xd9, 128), Buffer.from(CLIENT_DIGEST)]),
    Buffer.of(0xa0),
    Buffer.of(0xa0),
  ]);
  assert.equal(ping.toString('hex'), expected.toString('hex'));
});

test('PING with security.users carries the username and the password digest over HELO auth', () => {
  const helo = parseHelo(decodeOne(heloBytes(AUTH)));
  const ping = encodePing(helo, { sharedKey: 'secret', selfHostname: 'sidecar', username: 'alice', password: 'pa55word' }, SALT);
  assert.deepEqual(decode(ping), ['PING', 'sidecar', SALT, CLIENT_DIGEST, 'alice', PASSWORD_DIGEST]);
});

test('HELO with an auth salt and no output.username: PING has an empty username and the salt\'s digest, as out_forward sends', () => {
  const helo = parseHelo(decodeOne(heloBytes(AUTH)));
  const ping = encodePing(helo, { sharedKey: 'secret', selfHostname: 'sidecar' }, SALT);
  // plugins/out_forward/forward.c sends username "" and sha512_hex(auth + "" + "") whenever HELO has auth.
  assert.deepEqual(decode(ping), ['PING', 'sidecar', SALT, CLIENT_DIGEST, '', passwordDigest(AUTH, '', '')]);
});

test('PING fits the one 1,023-byte read Fluent Bit gives it; one byte more is refused before sending', () => {
  const helo = parseHelo(decodeOne(heloBytes(Buffer.alloc(0))));
  // 172 bytes besides the hostname, whose str16 header takes 3.
  const fits = encodePing(helo, { sharedKey: 'secret', selfHostname: 'h'.repeat(848) }, SALT);
  assert.equal(fits.length, MAX_PING_BYTES);
  assert.equal(MAX_PING_BYTES, 1023);
  assert.throws(() => encodePing(helo, { sharedKey: 'secret', selfHostname: 'h'.repeat(849) }, SALT), /PING would be 1024 bytes, over Fluent Bit's 1023/);
});

test('PONG verifies with the server hostname in the digest', () => {
  const helo = { nonce: NONCE, auth: Buffer.alloc(0) };
  const creds = { sharedKey: 'secret', selfHostname: 'sidecar' };
  const pong = (ok: boolean, reason: string, digest: string) =>
    decodeOne(Buffer.from(pack(['PONG', ok, reason, 'fluent-bit', digest])));
  assert.equal(verifyPong(pong(true, '', SERVER_DIGEST), helo, creds, SALT), 'fluent-bit');
  assert.throws(() => verifyPong(pong(true, '', CLIENT_DIGEST), helo, creds, SALT), /digest.*does not match/);
  assert.throws(() => verifyPong(pong(true, '', CLIENT_DIGEST), helo, creds, SALT), /output\.shared_key/);
  // PONG false is in_forward's answer to a user it does not know; without a username, say to set one.
  assert.throws(
    () => verifyPong(pong(false, 'username/password mismatch', ''), helo, creds, SALT),
    /refused authentication \(username\/password mismatch\).*output\.username is not set/,
  );
  assert.throws(
    () => verifyPong(pong(false, 'username/password mismatch', ''), helo, { ...creds, username: 'alice', password: 'pw' }, SALT),
    /refused authentication \(username\/password mismatch\); check output\.username and output\.password/,
  );
});

test('handshake errors carry the code and never the key or password, even when the server echoes them', () => {
  const creds = { sharedKey: 'Sup3r-Secret-Key', selfHostname: 'sidecar', username: 'alice', password: 'Pa55-W0rd-XYZ' };
  const helo = { nonce: NONCE, auth: AUTH };
  const pong = decodeOne(Buffer.from(pack(['PONG', false, `bad Sup3r-Secret-Key / Pa55-W0rd-XYZ`, 'fb', ''])));
  const err = (() => {
    try {
      verifyPong(pong, helo, creds, SALT);
    } catch (e) {
      return e as HandshakeError;
    }
    throw new Error('verifyPong accepted a refusal');
  })();
  assert.ok(err instanceof HandshakeError);
  assert.equal(err.code, ErrorCode.FORWARD_HANDSHAKE);
  assert.doesNotMatch(err.message, /Sup3r|Pa55/);
  assert.match(err.message, /bad \*\*\* \/ \*\*\*/);
});

test('a first message that is not HELO is a clear handshake error', () => {
  assert.throws(() => parseHelo(decodeOne(Buffer.from('81a361636ba178', 'hex'))), /expected HELO/);
  assert.throws(() => parseHelo(decodeOne(Buffer.from('92a448454c4f80', 'hex'))), /no nonce/);
});

interface Run {
  sink: ForwardSink;
  receiver: ForwardReceiver;
  clock: FakeClock;
  errors: SidecarError[];
  lines: string[];
}

/** ForwardSink on a FakeClock against `receiver`; no reconnect happens unless the test moves the clock. */
async function run(receiver: ForwardReceiver, cfg: Partial<ForwardOutputConfig>): Promise<Run> {
  await receiver.listen();
  const clock = new FakeClock();
  const errors: SidecarError[] = [];
  const { logger, lines } = captureLogger();
  const sink = new ForwardSink(forwardConfig({ port: receiver.port, ...cfg }), {
    clock,
    logger,
    random: () => 1,
    events: { error: (e) => errors.push(e) },
  });
  sink.start();
  return { sink, receiver, clock, errors, lines };
}

async function stop(r: Run): Promise<void> {
  const closing = r.sink.close(0);
  await r.clock.advance(1);
  await closing;
  await r.receiver.close();
}

/** Waits for `sent` to resolve; the first handshake error fails the test at once instead of hanging it. */
async function delivered(r: Run, sent: Promise<void>): Promise<void> {
  let done = false;
  sent.then(() => (done = true), () => {});
  await waitUntil(() => done || r.errors.length > 0, 'the records to be acknowledged');
  if (!done) throw new Error(`not delivered: ${r.errors[0]!.message}`);
}

function records(sink: ForwardSink, n: number): Buffer[] {
  return Array.from({ length: n }, (_, i) => sink.encode({ time: { sec: 1795355887, nsec: i }, record: { seq: i } }));
}

const SECRETS = [TEST_SECRETS.forwardSharedKey, TEST_SECRETS.forwardPassword, 'wrong-shared-key-4711'];
const assertNoSecrets = (r: Run) => {
  const text = r.lines.join('') + r.errors.map((e) => e.message).join('');
  for (const s of SECRETS) assert.ok(!text.includes(s), 'no credential in logs or errors');
};

test('shared_key without security.users: a HELO with a 16-byte auth salt (as Fluent Bit always sends) still delivers', async () => {
  const receiver = new ForwardReceiver({ sharedKey: TEST_SECRETS.forwardSharedKey, serverHostname: 'fluent-bit' });
  const r = await run(receiver, { shared_key: TEST_SECRETS.forwardSharedKey, self_hostname: 'sidecar' });
  try {
    await delivered(r, r.sink.send('t', records(r.sink, 5)));
    assert.equal(receiver.established, 1);
    assert.deepEqual(receiver.records.map((x) => x.record.seq), [0, 1, 2, 3, 4]);
    assert.deepEqual(receiver.pings.map((p) => [p.hostname, p.username]), [['sidecar', '']]);
    assert.deepEqual(r.errors, []);
    assertNoSecrets(r);
  } finally {
    await stop(r);
  }
});

test('shared_key with security.users: PING carries the username and sha512(auth salt + username + password); records delivered', async () => {
  const receiver = new ForwardReceiver({ sharedKey: TEST_SECRETS.forwardSharedKey, users: { alice: TEST_SECRETS.forwardPassword, bob: 'other-pw' } });
  const r = await run(receiver, { shared_key: TEST_SECRETS.forwardSharedKey, username: 'alice', password: TEST_SECRETS.forwardPassword });
  try {
    await delivered(r, r.sink.send('t', records(r.sink, 3)));
    assert.equal(receiver.established, 1);
    assert.equal(receiver.records.length, 3);
    assert.equal(receiver.pings[0]!.username, 'alice');
    assert.match(receiver.pings[0]!.passwordDigest, /^[0-9a-f]{128}$/);
    assert.deepEqual(receiver.handshakeFailures, []);
    assertNoSecrets(r);
  } finally {
    await stop(r);
  }
});

test('a wrong shared_key against a Fluent Bit HELO (16-byte auth salt): the error names output.shared_key, nothing is delivered or acked', async () => {
  for (const users of [undefined, { alice: TEST_SECRETS.forwardPassword }]) {
    const receiver = new ForwardReceiver({ sharedKey: TEST_SECRETS.forwardSharedKey, ...(users ? { users } : {}) });
    const creds = users ? { username: 'alice', password: TEST_SECRETS.forwardPassword } : {};
    const r = await run(receiver, { shared_key: 'wrong-shared-key-4711', ...creds });
    try {
      let settled = false;
      const sent = r.sink.send('t', records(r.sink, 4)).finally(() => (settled = true));
      sent.catch(() => {});
      await waitUntil(() => r.errors.length >= 1, 'a handshake error');
      const err = r.errors[0]!;
      assert.equal(err.code, ErrorCode.FORWARD_HANDSHAKE);
      assert.match(err.message, /output\.shared_key does not match/);
      assert.doesNotMatch(err.message, /username|password|security\.users/);
      assert.deepEqual(receiver.handshakeFailures, ['shared_key mismatch']);
      assert.equal(receiver.pings.length, 1, 'the client did send PING');
      assert.equal(receiver.frames.length + receiver.droppedBeforePong, 0, 'no data written without PONG');
      assert.equal(r.sink.stats().pendingRecords, 4, 'the records wait to be resent');
      assert.equal(settled, false, 'send is not resolved: nothing may be committed');
      assertNoSecrets(r);
    } finally {
      await stop(r);
    }
  }
});

test('security.users set and output.username not: Fluent Bit\'s PONG refusal says to set output.username', async () => {
  const receiver = new ForwardReceiver({ sharedKey: TEST_SECRETS.forwardSharedKey, users: { alice: TEST_SECRETS.forwardPassword } });
  const r = await run(receiver, { shared_key: TEST_SECRETS.forwardSharedKey });
  try {
    r.sink.send('t', records(r.sink, 1)).catch(() => {});
    await waitUntil(() => r.errors.length >= 1, 'a handshake error');
    assert.match(r.errors[0]!.message, /refused authentication \(username\/password mismatch\).*output\.username is not set/);
    assert.deepEqual(receiver.handshakeFailures, ['username/password mismatch']);
    assert.equal(receiver.frames.length, 0);
    assertNoSecrets(r);
  } finally {
    await stop(r);
  }
});

test('HELO with an empty auth (Fluentd without user_auth) still works with shared_key alone', async () => {
  const receiver = new ForwardReceiver({ sharedKey: TEST_SECRETS.forwardSharedKey, heloAuth: 'empty' });
  const r = await run(receiver, { shared_key: TEST_SECRETS.forwardSharedKey });
  try {
    await delivered(r, r.sink.send('t', records(r.sink, 2)));
    assert.equal(receiver.records.length, 2);
    assert.deepEqual(receiver.pings.map((p) => [p.username, p.passwordDigest]), [['', '']]);
  } finally {
    await stop(r);
  }
});
