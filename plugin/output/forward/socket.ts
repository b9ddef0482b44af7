/**
 * Opening the forward connection (TCP, Unix socket or TLS) and naming what went wrong on it, so
 * that each failure carries the code of its cause (plugin/errors.ts).
 */
import net from 'node:net';
import tls from 'node:tls';
import { readFileSync } from 'node:fs';
import { ErrorCode, SidecarError } from '../../errors.ts';
import type { ForwardConnectionOptions } from './options.ts';

/** Opens the socket; throws when a TLS file cannot be read. 'secureConnect' (TLS) or 'connect' follows. */
export function openForwardSocket(o: ForwardConnectionOptions): net.Socket {
  const path = o.unixPath;
  const where = path !== undefined ? { path } : { host: o.host, port: o.port };
  const t = o.tls;
  if (!t) return net.connect(where);
  const servername = t.servername ?? (path === undefined && net.isIP(o.host) === 0 ? o.host : undefined);
  return tls.connect({
    ...where,
    ...(servername !== undefined ? { servername } : {}),
    ...(t.caFile !== undefined ? { ca: readFileSync(t.caFile) } : {}),
    ...(t.certFile !== undefined ? { cert: readFileSync(t.certFile) } : {}),
    ...(t.keyFile !== undefined ? { key: readFileSync(t.keyFile) } : {}),
    // Node checks the certificate against `servername` when given, else against `host`.
    rejectUnauthorized: t.verify,
  });
}

/** Whether a socket error is TLS refusing the peer (certificate, name, protocol). */
export function isTlsFailure(err: Error & { code?: string }): boolean {
  return err.code !== undefined && /CERT|TLS|SSL|SELF_SIGNED|UNABLE_TO/.test(err.code);
}

/**
 * A socket error by cause: TLS refusing the peer is a handshake problem an operator must fix;
 * before the connection opened it is a failure to connect (refused, unreachable); after, the
 * connection was lost (reset, broken pipe).
 */
export function socketFailure(err: Error & { code?: string }, target: string, opened: boolean): SidecarError {
  if (isTlsFailure(err)) {
    return new SidecarError(ErrorCode.FORWARD_HANDSHAKE, `TLS with ${target} failed: ${err.message} (${err.code})`, { cause: err });
  }
  return new SidecarError(opened ? ErrorCode.FORWARD_CONNECTION_LOST : ErrorCode.FORWARD_CONNECT, `${target}: ${err.message}`, { cause: err });
}
