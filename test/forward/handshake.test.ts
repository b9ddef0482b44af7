/**
 * The shared-key handshake against digests computed by hand with sha512sum:
 *
 *   printf '0123456789abcdef0123456789abcdef' 'sidecar' '\xff\x01..\x0f' 'secret' | sha512sum
 *
 * and HELO parsing at byte level, where nonce and auth are random bytes inside a msgpack str.
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { decode, encode as pack } from '@msgpack/msgpack';
import {
  encodePing,
  HandshakeError,
  parseHelo,
  passwordDigest,
  sharedKeyDigest,
  verifyPong,
} from '../../plugin/forward/handshake.ts';
import { decodeOne } from '../../plugin/forward/reader.ts';
import { ErrorCode } from '../../plugin/errors.ts';

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
  assert.throws(
    () => encodePing(helo, { sharedKey: 'secret', selfHostname: 'sidecar' }, SALT),
    /asks for user authentication.*output\.username/,
  );
});

test('PONG verifies with the server hostname in the digest', () => {
  const helo = { nonce: NONCE, auth: Buffer.alloc(0) };
  const creds = { sharedKey: 'secret', selfHostname: 'sidecar' };
  const pong = (ok: boolean, reason: string, digest: string) =>
    decodeOne(Buffer.from(pack(['PONG', ok, reason, 'fluent-bit', digest])));
  assert.equal(verifyPong(pong(true, '', SERVER_DIGEST), helo, creds, SALT), 'fluent-bit');
  assert.throws(() => verifyPong(pong(true, '', CLIENT_DIGEST), helo, creds, SALT), /digest.*does not match/);
  assert.throws(() => verifyPong(pong(false, 'username/password mismatch', ''), helo, creds, SALT), /refused authentication \(username\/password mismatch\)/);
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
