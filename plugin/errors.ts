/**
 * Errors with stable codes. The Devo collectors' numeric codes keep their meaning (docs/operations.md,
 * Error codes): 100 bad credentials, 101 bad or future start time, 300 HTTP error from the vendor API,
 * 301 request failed. Every error maps to a process exit code: 2 for configuration or usage,
 * 1 for anything at run time.
 */
import { vendorText } from './telemetry/secrets.ts';

export const ErrorCode = {
  CONFIG: 'SIDECAR_ERR_CONFIG',
  STATE_LOCKED: 'SIDECAR_ERR_STATE_LOCKED',
  /** The state was written by a newer layout than this build reads. */
  STATE_VERSION: 'SIDECAR_ERR_STATE_VERSION',
  /** LevelDB found damaged files in the state (LEVEL_CORRUPTION): `state repair` recovers what it can. */
  STATE_CORRUPT: 'SIDECAR_ERR_STATE_CORRUPT',
  /** The file system refused a state read or write (LEVEL_IO_ERROR: read-only, full, permissions). */
  STATE_IO: 'SIDECAR_ERR_STATE_IO',
  /** Fluent Bit refused the shared-key handshake or TLS refused the peer; retried with backoff. */
  FORWARD_HANDSHAKE: 'SIDECAR_ERR_FORWARD_HANDSHAKE',
  /**
   * No forward connection could be opened: refused, unreachable, not open within
   * `connect_timeout_secs`, or a TLS file unreadable. Retried with backoff.
   */
  FORWARD_CONNECT: 'SIDECAR_ERR_FORWARD_CONNECT',
  /** An open forward connection failed (reset, broken pipe); unacknowledged chunks are resent. */
  FORWARD_CONNECTION_LOST: 'SIDECAR_ERR_FORWARD_CONNECTION_LOST',
  /** Fluent Bit closed the connection (it does when its input pauses); unacknowledged chunks are resent. */
  FORWARD_PEER_CLOSED: 'SIDECAR_ERR_FORWARD_PEER_CLOSED',
  /** A chunk was not acknowledged within `ack_timeout_secs`: the client reconnects and resends it. */
  FORWARD_ACK_TIMEOUT: 'SIDECAR_ERR_FORWARD_ACK_TIMEOUT',
  /** Fluent Bit sent bytes that are not msgpack, or a message a forward server does not send. */
  FORWARD_PROTOCOL: 'SIDECAR_ERR_FORWARD_PROTOCOL',
  /** Records offered to an output (or its forward client) that is closing or closed. */
  OUTPUT_CLOSED: 'SIDECAR_ERR_OUTPUT_CLOSED',
  /** The output (forward or stdout) closed with records not acknowledged: the shutdown timeout ran out. */
  FORWARD_CLOSED: 'SIDECAR_ERR_FORWARD_CLOSED',
  RECORD_TOO_LARGE: 'SIDECAR_ERR_RECORD_TOO_LARGE',
  SHUTDOWN_TIMEOUT: 'SIDECAR_ERR_SHUTDOWN_TIMEOUT',
  /** Another replica wrote the feed's Lease first (Kubernetes 409 AlreadyExists or Conflict): it won. */
  LEASE_CONFLICT: 'SIDECAR_ERR_LEASE_CONFLICT',
  /** The Kubernetes API refused a Lease request (401, 403, 4xx, 5xx) or did not answer in time. */
  LEASE_API: 'SIDECAR_ERR_LEASE_API',
  /** A held feed's Lease was lost (not renewed within renew_deadline, or taken): its source stops at once. */
  LEASE_LOST: 'SIDECAR_ERR_LEASE_LOST',
  /** Devo collector codes. */
  BAD_CREDENTIALS: 100,
  BAD_START_TIME: 101,
  VENDOR_HTTP: 300,
  VENDOR_REQUEST: 301,
} as const;

export type ErrorCodeValue = (typeof ErrorCode)[keyof typeof ErrorCode];

export class SidecarError extends Error {
  readonly code: ErrorCodeValue;
  readonly exitCode: number;
  /** Fatal errors stop the component that raised them; others are retried. */
  readonly fatal: boolean;

  constructor(code: ErrorCodeValue, message: string, opts: { exitCode?: number; fatal?: boolean; cause?: unknown } = {}) {
    super(message, opts.cause === undefined ? undefined : { cause: opts.cause });
    this.name = new.target.name;
    this.code = code;
    this.exitCode = opts.exitCode ?? 1;
    this.fatal = opts.fatal ?? false;
  }
}

/** A configuration problem: names the key, its path and what is allowed. Exit code 2. */
export class ConfigError extends SidecarError {
  /** Every problem found, one line each, so an operator fixes them in one pass. */
  readonly problems: string[];

  constructor(problems: string[] | string) {
    const list = Array.isArray(problems) ? problems : [problems];
    super(
      ErrorCode.CONFIG,
      list.length === 1 ? `Invalid configuration: ${list[0]}` : `Invalid configuration:\n  - ${list.join('\n  - ')}`,
      { exitCode: 2, fatal: true },
    );
    this.problems = list;
  }
}

/** Code 100: the vendor refused the credentials. Stops the input that got it; others go on. */
export class CredentialsError extends SidecarError {
  constructor(message: string) {
    super(ErrorCode.BAD_CREDENTIALS, message, { fatal: true });
  }
}

/** Code 300: the vendor API answered with an HTTP error. */
export class VendorHttpError extends SidecarError {
  readonly status: number;
  /** The answer's text, scrubbed and bounded (`vendorText()`): an error's fields may be logged. */
  readonly body: string;
  constructor(status: number, body: string, message: string, opts: { fatal?: boolean } = {}) {
    super(ErrorCode.VENDOR_HTTP, message, { fatal: opts.fatal ?? false });
    this.status = status;
    this.body = vendorText(body);
  }
}

/** Code 301: the request never got an HTTP answer (network failure, timeout). Retried. */
export class VendorRequestError extends SidecarError {
  constructor(message: string, cause?: unknown) {
    super(ErrorCode.VENDOR_REQUEST, message, { cause });
  }
}
