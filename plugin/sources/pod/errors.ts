/**
 * How a PoD handshake or session can fail, mapped to the Devo collectors' codes (errors.ts).
 * Handshake answers as the vendor's connection notes catalogue them: 400 malformed query,
 * 401 bad token / cluster / licence, 404 bad URL, 405 not GET: fatal for the service (except a
 * 400 on an archive window, which the stream retries: the server may refuse a window's times,
 * and one refused window must not end collection, see replay-plan.ts); 409
 * "Exceeded maximum number of sessions per token": another session holds the token (possibly
 * our own previous one, still closing server-side): retried. Messages carry the server's text
 * and never the api_key.
 */
import { CredentialsError, SidecarError, VendorHttpError, VendorRequestError } from '../../errors.ts';
import { vendorText } from '../../telemetry/secrets.ts';

/** 409: the token already has a session for this type. Retryable. */
export class PodSessionConflictError extends VendorHttpError {
  constructor(service: string, body: string) {
    super(409, body, `PoD refused the ${service} session: another session holds the token for this type (HTTP 409: ${quote(body)})`);
  }
}

/** 401: credentials, cluster id or remote-syslog licence refused. Code 100, fatal for the service. */
export class PodCredentialsError extends CredentialsError {
  readonly status: number;
  /** The answer's text, scrubbed and bounded. */
  readonly body: string;
  constructor(service: string, status: number, body: string) {
    super(
      `PoD refused the credentials for the ${service} stream (HTTP ${status}: ${quote(body)}); ` +
        'check credentials.api_key, credentials.cluster_id and the Remote Syslog licence',
    );
    this.status = status;
    this.body = vendorText(body);
  }
}

/** A session that opened and then failed: pong timeout, oversized frame, protocol error. Retried. */
export class PodSessionError extends VendorRequestError {}

/**
 * The error for a refused upgrade. 400/404/405 are fatal (the request itself is wrong and will
 * not get better), 401 is code 100, 409 and everything else (5xx, proxies' 502/503) is retried.
 */
export function handshakeError(service: string, status: number, body: string): SidecarError {
  if (status === 401 || status === 403) return new PodCredentialsError(service, status, body);
  if (status === 409) return new PodSessionConflictError(service, body);
  const fatal = status === 400 || status === 404 || status === 405;
  return new VendorHttpError(status, body, `PoD refused the ${service} session (HTTP ${status}: ${quote(body)})`, { fatal });
}

/** A server's text quoted in a message: scrubbed, cut (`vendorText()`), in double quotes. */
export function quote(body: string): string {
  return JSON.stringify(vendorText(body));
}
