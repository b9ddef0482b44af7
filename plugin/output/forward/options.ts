/**
 * What a ForwardClient needs to know, in its own terms: where Fluent Bit listens, how to secure
 * and authenticate the connection, and its timing and flow limits. `forwardOptionsFrom` is the
 * one place the `output:` configuration section is translated into it, so the client does not
 * depend on the configuration schema.
 */
import os from 'node:os';
import type { ForwardOutputConfig } from '../../config/schema.ts';
import type { HandshakeCredentials } from './handshake.ts';

export interface ForwardTlsOptions {
  /** Check Fluent Bit's certificate and name. */
  verify: boolean;
  /** Name to verify and send as SNI; the host when omitted (and the host is not an IP). */
  servername?: string;
  caFile?: string;
  certFile?: string;
  keyFile?: string;
}

export interface ForwardConnectionOptions {
  host: string;
  port: number;
  /** Unix socket of Fluent Bit's forward input; replaces host and port. */
  unixPath?: string;
  tls?: ForwardTlsOptions;
  /** The shared-key handshake's credentials; without them no handshake is run. */
  credentials?: HandshakeCredentials;
  /** Opening the connection, and each handshake step, must finish within this. */
  connectTimeoutSecs: number;
  /** A chunk not acknowledged within this makes the client reconnect and resend. */
  ackTimeoutSecs: number;
  reconnectInitialMs: number;
  reconnectMaxMs: number;
  maxChunksInFlight: number;
  /** The largest frame the client writes: Fluent Bit closes the connection on a larger one. */
  maxFrameBytes: number;
}

/** The client's options from the `output:` section (type forward). */
export function forwardOptionsFrom(cfg: ForwardOutputConfig): ForwardConnectionOptions {
  const t = cfg.tls;
  return {
    host: cfg.host,
    port: cfg.port,
    ...(cfg.unix_path !== undefined ? { unixPath: cfg.unix_path } : {}),
    ...(t
      ? {
          tls: {
            verify: t.verify,
            ...(t.servername !== undefined ? { servername: t.servername } : {}),
            ...(t.ca_file !== undefined ? { caFile: t.ca_file } : {}),
            ...(t.cert_file !== undefined ? { certFile: t.cert_file } : {}),
            ...(t.key_file !== undefined ? { keyFile: t.key_file } : {}),
          },
        }
      : {}),
    ...(cfg.shared_key !== undefined
      ? {
          credentials: {
            sharedKey: cfg.shared_key,
            selfHostname: cfg.self_hostname ?? os.hostname(),
            ...(cfg.username !== undefined ? { username: cfg.username } : {}),
            ...(cfg.password !== undefined ? { password: cfg.password } : {}),
          },
        }
      : {}),
    connectTimeoutSecs: cfg.connect_timeout_secs,
    ackTimeoutSecs: cfg.ack_timeout_secs,
    reconnectInitialMs: cfg.reconnect_initial_secs * 1000,
    reconnectMaxMs: cfg.reconnect_max_secs * 1000,
    maxChunksInFlight: cfg.max_chunks_in_flight,
    maxFrameBytes: cfg.max_frame_bytes,
  };
}

/** `host:port` or `unix:<path>`, with ` (TLS)` when secured: how logs and errors name the peer. */
export function describeTarget(o: Pick<ForwardConnectionOptions, 'host' | 'port' | 'unixPath' | 'tls'>): string {
  return (o.unixPath !== undefined ? `unix:${o.unixPath}` : `${o.host}:${o.port}`) + (o.tls ? ' (TLS)' : '');
}
