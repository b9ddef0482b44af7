/**
 * The forward protocol's shared-key handshake, as Fluent Bit's in_forward (v3+) runs it
 * (plugins/in_forward/fw_prot.c upstream; the client side mirrors plugins/out_forward/forward.c):
 *
 *   server → HELO  ['HELO', {nonce, auth}]          nonce, auth: 16 random bytes each in a msgpack str
 *   client → PING  ['PING', self_hostname, salt, sha512_hex(salt + self_hostname + nonce + key),
 *                   username, sha512_hex(auth + username + password)]
 *   server → PONG  ['PONG', auth_result, reason, server_hostname,
 *                   sha512_hex(salt + server_hostname + nonce + key)]
 *
 * Fluent Bit sends the 16-byte `auth` salt in every HELO, with or without `security.users`, and
 * checks the user fields only when `security.users` is set. So the user fields are no signal that
 * users are required: without output.username the client sends an empty username and
 * sha512_hex(auth), byte for byte what out_forward sends; a HELO with an empty `auth` (Fluentd
 * without user_auth) gets two empty strings.
 *
 * Fluent Bit reads PING with one read into a 1,024-byte buffer (1,023 bytes usable) and wants
 * exactly six msgpack **str** elements (a bin salt is refused). On a wrong key it logs
 * "shared_key mismatch" and closes without a PONG; on an unknown user or a wrong password it
 * sends PONG false with "username/password mismatch". Anything written before PONG is dropped
 * silently, so no data goes out before `verifyPong` succeeds. Errors name the config key to fix
 * and never carry the key or the password.
 */
import { createHash, randomBytes } from 'node:crypto';
import { SidecarError, ErrorCode } from '../../errors.ts';
import type { Value } from './reader.ts';

export interface HandshakeCredentials {
  sharedKey: string;
  selfHostname: string;
  username?: string;
  password?: string;
}

export interface Helo {
  nonce: Buffer;
  /** Salt for the user digest: 16 bytes from Fluent Bit whether or not it has `security.users`. */
  auth: Buffer;
  keepalive?: boolean;
}

/** Fluent Bit reads PING in one read of at most this many bytes (a 1,024-byte buffer less one). */
export const MAX_PING_BYTES = 1023;

export class HandshakeError extends SidecarError {
  constructor(message: string, opts: { cause?: unknown } = {}) {
    super(ErrorCode.FORWARD_HANDSHAKE, `Forward handshake with Fluent Bit failed: ${message}`, opts);
  }
}

export function isHelo(msg: Value): boolean {
  return Array.isArray(msg) && msg.length >= 1 && isText(msg[0], 'HELO');
}

export function isPong(msg: Value): boolean {
  return Array.isArray(msg) && msg.length >= 1 && isText(msg[0], 'PONG');
}

/** Reads HELO; nonce and auth stay raw bytes whether they came as str or bin. */
export function parseHelo(msg: Value): Helo {
  if (!Array.isArray(msg) || msg.length !== 2 || !isText(msg[0], 'HELO') || !(msg[1] instanceof Map)) {
    throw new HandshakeError('expected HELO [\'HELO\', {nonce, auth}] as the first message');
  }
  const opts = msg[1];
  const nonce = opts.get('nonce');
  const auth = opts.get('auth') ?? Buffer.alloc(0);
  const keepalive = opts.get('keepalive');
  if (!Buffer.isBuffer(nonce) || nonce.length === 0) throw new HandshakeError('HELO has no nonce');
  if (!Buffer.isBuffer(auth)) throw new HandshakeError('HELO auth is neither str nor bin');
  return typeof keepalive === 'boolean' ? { nonce, auth, keepalive } : { nonce, auth };
}

export function sharedKeyDigest(salt: string, hostname: string, nonce: Buffer, sharedKey: string): string {
  return createHash('sha512').update(salt).update(hostname).update(nonce).update(sharedKey).digest('hex');
}

export function passwordDigest(auth: Buffer, username: string, password: string): string {
  return createHash('sha512').update(auth).update(username).update(password).digest('hex');
}

/** A fresh shared-key salt: 16 random bytes as 32 hex characters (sent as str). */
export function newSalt(): string {
  return randomBytes(16).toString('hex');
}

/** PING as bytes: a fixarray of six str. */
export function encodePing(helo: Helo, creds: HandshakeCredentials, salt: string): Buffer {
  if (creds.username !== undefined && creds.password === undefined) {
    throw new HandshakeError('username is set without password');
  }
  const user = creds.username ?? '';
  const withUserFields = helo.auth.length > 0 || user !== '';
  const fields = [
    'PING',
    creds.selfHostname,
    salt,
    sharedKeyDigest(salt, creds.selfHostname, helo.nonce, creds.sharedKey),
    user,
    withUserFields ? passwordDigest(helo.auth, user, creds.password ?? '') : '',
  ];
  const parts: Buffer[] = [Buffer.from([0x96])];
  for (const f of fields) parts.push(strHeader(Buffer.byteLength(f, 'utf8')), Buffer.from(f, 'utf8'));
  const out = Buffer.concat(parts);
  if (out.length > MAX_PING_BYTES) {
    throw new HandshakeError(`PING would be ${out.length} bytes, over Fluent Bit's ${MAX_PING_BYTES}: shorten self_hostname or username`);
  }
  return out;
}

/**
 * Checks PONG: auth_result must be true and the server's digest must prove it knows the key.
 * Returns the server's hostname.
 */
export function verifyPong(msg: Value, helo: Helo, creds: HandshakeCredentials, salt: string): string {
  if (!Array.isArray(msg) || msg.length !== 5 || !isText(msg[0], 'PONG')) {
    throw new HandshakeError('expected PONG [\'PONG\', auth_result, reason, server_hostname, digest] after PING');
  }
  const [, ok, reason, host, digest] = msg;
  if (ok !== true) {
    // in_forward answers PONG false only to user authentication; a wrong key gets no PONG at all.
    const why = Buffer.isBuffer(reason) && reason.length > 0 ? redact(reason.toString('utf8'), creds) : 'no reason given';
    throw new HandshakeError(
      creds.username === undefined
        ? `Fluent Bit refused authentication (${why}): its forward input has security.users and output.username is not set; set output.username and output.password to one of its users`
        : `Fluent Bit refused authentication (${why}); check output.username and output.password against the forward input's security.users`,
    );
  }
  if (!Buffer.isBuffer(host) || !Buffer.isBuffer(digest)) {
    throw new HandshakeError('PONG has no server hostname or digest');
  }
  const serverHostname = host.toString('utf8');
  const expected = sharedKeyDigest(salt, serverHostname, helo.nonce, creds.sharedKey);
  if (digest.toString('latin1') !== expected) {
    throw new HandshakeError(
      `the PONG digest from "${redact(serverHostname, creds)}" does not match: the server does not hold the key in output.shared_key`,
    );
  }
  return serverHostname;
}

/** The server picks the reason text; make sure it cannot echo a credential into our logs. */
function redact(text: string, creds: HandshakeCredentials): string {
  let out = text;
  for (const secret of [creds.sharedKey, creds.password]) {
    if (secret) out = out.split(secret).join('***');
  }
  return out;
}

function isText(v: Value | undefined, text: string): boolean {
  return Buffer.isBuffer(v) && v.length === text.length && v.toString('latin1') === text;
}

function strHeader(n: number): Buffer {
  if (n < 32) return Buffer.from([0xa0 | n]);
  if (n <= 0xff) return Buffer.from([0xd9, n]);
  if (n > 0xffff) throw new HandshakeError(`a PING field of ${n} bytes cannot fit Fluent Bit's ${MAX_PING_BYTES}-byte PING buffer`);
  const b = Buffer.alloc(3);
  b[0] = 0xda;
  b.writeUInt16BE(n, 1);
  return b;
}
