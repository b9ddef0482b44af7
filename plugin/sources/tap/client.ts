/**
 * One GET of the TAP SIEM API for one explicit window (proofpoint-tap.md §2).
 *
 *  - HTTPS GET with Basic auth (service principal, secret), `format=json` (the default is syslog),
 *    `interval=<start>/<end>` computed by us: never `sinceSeconds`/`sinceTime`, whose end the server
 *    rounds to its own minute.
 *  - undici, through EnvHttpProxyAgent by default (HTTPS_PROXY / HTTP_PROXY / NO_PROXY), TLS
 *    verified, one deadline for the whole exchange (headers and body).
 *  - 200 with empty or missing arrays and 204 with no body are both "no events": the window is done.
 *    Any other 200 body that is not the documented object (`queryEndTime` and arrays) is an error
 *    for the window (TapMalformedAnswerError, code 300), never an empty window.
 *  - Status codes become the Devo collector's errors: 401/403 -> 100, other HTTP errors -> 300
 *    (status, text, window), no answer -> 301. Retrying is the caller's business.
 */
import { EnvHttpProxyAgent, request, type Dispatcher } from 'undici';
import { CredentialsError, VendorHttpError, VendorRequestError } from '../../errors.ts';
import { TAP_DEFAULT_URL_BASE, TAP_SERVICES, threatStatusParams, type TapInputConfig, type TapServiceName } from './config.ts';
import { TapBadRequestError, TapMalformedAnswerError, TapThrottledError } from './errors.ts';
import { formatInterval } from './window.ts';
import { USER_AGENT } from '../../util/user-agent.ts';
import { parseTimestamp } from '../../util/time.ts';
import { registerCredentialPair, vendorText } from '../../telemetry/secrets.ts';

/** Endpoint paths, and the arrays each one returns. */
export const TAP_PATHS: Record<TapServiceName | 'all', string> = {
  clicksBlocked: '/v2/siem/clicks/blocked',
  clicksPermitted: '/v2/siem/clicks/permitted',
  messagesBlocked: '/v2/siem/messages/blocked',
  messagesDelivered: '/v2/siem/messages/delivered',
  all: '/v2/siem/all',
};

export interface TapClientOptions {
  baseUrl: string;
  username: string;
  password: string;
  /** `threatStatus` values (repeated parameter); empty: the API's default, active and cleared. */
  threatStatus: readonly string[];
  /** `threatType` values (repeated parameter); empty: all types. */
  threatType: readonly string[];
  timeoutMs: number;
  dispatcher?: Dispatcher;
  /** Input id, for messages. */
  input: string;
  /** User-Agent header; names the replica when coordination is on. */
  userAgent?: string;
}

export interface WindowAnswer {
  status: 200 | 204;
  /** The arrays the answer carried, by service; a missing array is absent here. */
  arrays: Partial<Record<TapServiceName, unknown[]>>;
  queryEndTime?: string;
  bytes: number;
}

/** The client an input's config describes (the source, and `check --online`). */
export function tapClientFor(cfg: TapInputConfig, opts: { dispatcher?: Dispatcher; timeoutMs?: number; userAgent?: string } = {}): TapClient {
  return new TapClient({
    baseUrl: cfg.override_url_base ?? TAP_DEFAULT_URL_BASE,
    username: cfg.credentials.username,
    password: cfg.credentials.password,
    threatStatus: threatStatusParams(cfg),
    threatType: cfg.threat_type ?? [],
    timeoutMs: opts.timeoutMs ?? cfg.request_timeout_secs * 1000,
    dispatcher: opts.dispatcher,
    input: cfg.id,
    userAgent: opts.userAgent,
  });
}

export class TapClient {
  readonly #o: TapClientOptions;
  readonly #auth: string;
  readonly #dispatcher: Dispatcher;
  readonly #ownDispatcher: boolean;

  constructor(o: TapClientOptions) {
    this.#o = o;
    // Whoever builds the header registers it, so an echo of it is masked however the client was configured.
    registerCredentialPair(o.username, o.password);
    this.#auth = 'Basic ' + Buffer.from(`${o.username}:${o.password}`, 'utf8').toString('base64');
    this.#ownDispatcher = o.dispatcher === undefined;
    this.#dispatcher = o.dispatcher ?? new EnvHttpProxyAgent();
  }

  /** The URL of one window's request (no credentials in it). */
  url(path: string, w: { start: number; end: number }): string {
    const q = new URLSearchParams({ format: 'json', interval: formatInterval(w) });
    for (const s of this.#o.threatStatus) q.append('threatStatus', s);
    for (const t of this.#o.threatType) q.append('threatType', t);
    return `${this.#o.baseUrl.replace(/\/+$/, '')}${path}?${q.toString()}`;
  }

  /**
   * Fetches one window. Throws CredentialsError (100), TapBadRequestError / TapThrottledError /
   * TapMalformedAnswerError / VendorHttpError (300) or VendorRequestError (301); an abort of `signal` rethrows its reason.
   */
  async fetchWindow(path: string, w: { start: number; end: number }, signal: AbortSignal): Promise<WindowAnswer> {
    const where = `${path} interval ${formatInterval(w)}`;
    const deadline = AbortSignal.timeout(this.#o.timeoutMs);
    const both = AbortSignal.any([signal, deadline]);
    let status: number;
    let text: string;
    try {
      const res = await request(this.url(path, w), {
        method: 'GET',
        dispatcher: this.#dispatcher,
        headers: { authorization: this.#auth, accept: 'application/json', 'user-agent': this.#o.userAgent ?? USER_AGENT },
        signal: both,
        headersTimeout: this.#o.timeoutMs,
        bodyTimeout: this.#o.timeoutMs,
      });
      status = res.statusCode;
      text = await res.body.text();
    } catch (err) {
      if (signal.aborted) throw signal.reason;
      const why = deadline.aborted ? `no complete answer within ${this.#o.timeoutMs / 1000} s` : describeNetworkError(err);
      throw new VendorRequestError(`TAP request failed for input ${this.#o.input}, ${where}: ${why}`, err);
    }
    return this.#interpret(status, text, where);
  }

  #interpret(status: number, text: string, where: string): WindowAnswer {
    const bytes = Buffer.byteLength(text);
    if (status === 204) return { status: 204, arrays: {}, bytes };
    if (status === 200) {
      const malformed = (problem: string) => {
        const shown = vendorText(text);
        return new TapMalformedAnswerError(
          problem,
          shown,
          `TAP API answered HTTP 200 with a body that is not the documented answer (${problem}) for input ${this.#o.input}, ${where}` +
            (shown ? `; body (${bytes} bytes) starts: ${shown}` : ''),
        );
      };
      // A 200 has a body: "no content" is 204. An empty 200 may be a cut answer.
      if (text.trim() === '') throw malformed('empty body');
      let body: unknown;
      try {
        body = JSON.parse(text);
      } catch {
        throw malformed('not JSON');
      }
      try {
        return { status: 200, ...parseArrays(body), bytes };
      } catch (err) {
        if (err instanceof MalformedAnswer) throw malformed(err.message);
        throw err;
      }
    }
    const shown = vendorText(text);
    if (status === 401 || status === 403) {
      throw new CredentialsError(
        `TAP API refused the credentials of input ${this.#o.input} (HTTP ${status}${shown ? `: ${shown}` : ''}): ` +
          (status === 401
            ? 'check credentials.username (service principal) and credentials.password (secret)'
            : 'the credential is valid but not authorised for this customer\'s SIEM data'),
      );
    }
    const msg = `TAP API answered HTTP ${status}${shown ? ` "${shown}"` : ''} for input ${this.#o.input}, ${where}`;
    if (status === 400) throw new TapBadRequestError(text, msg);
    if (status === 429) throw new TapThrottledError(text, msg);
    throw new VendorHttpError(status, shown, msg);
  }

  async close(): Promise<void> {
    if (this.#ownDispatcher) await this.#dispatcher.close();
  }
}

/** Why a parsed 200 body is not the documented answer (parseArrays). */
export class MalformedAnswer extends Error {}

/**
 * The arrays of a 200 answer, checked against the documented shape: an object with `queryEndTime`
 * (a timestamp) and, per service, an array. An array may be missing (treated as empty) and one
 * report shows a malformed key, `"messagesDelivered:"` (elastic/integrations #9965): keys are
 * matched without trailing punctuation so such an array is not silently lost. A known key holding
 * anything but an array (null included), a body that is not an object, or no `queryEndTime`
 * throws MalformedAnswer: such an answer says nothing about its window's events. Unknown keys are
 * ignored. The elements are not looked at here (a bad element is the event builder's business).
 */
export function parseArrays(body: unknown): Pick<WindowAnswer, 'arrays'> & { queryEndTime: string } {
  if (body === null || typeof body !== 'object' || Array.isArray(body)) {
    throw new MalformedAnswer(`the body is ${describe(body)}, not an object`);
  }
  const arrays: Partial<Record<TapServiceName, unknown[]>> = {};
  let queryEndTime: string | undefined;
  for (const [rawKey, value] of Object.entries(body as Record<string, unknown>)) {
    const key = rawKey.trim().replace(/[^A-Za-z]+$/, '');
    if (key === 'queryEndTime') {
      if (typeof value !== 'string' || parseTimestamp(value) === undefined) {
        throw new MalformedAnswer(`queryEndTime is ${typeof value === 'string' ? `"${value.slice(0, 40)}"` : describe(value)}, not a timestamp`);
      }
      queryEndTime = value;
      continue;
    }
    if (!(TAP_SERVICES as readonly string[]).includes(key)) continue;
    if (!Array.isArray(value)) throw new MalformedAnswer(`"${rawKey.slice(0, 40)}" is ${describe(value)}, not an array`);
    const svc = key as TapServiceName;
    arrays[svc] = arrays[svc] ? arrays[svc]!.concat(value) : value;
  }
  if (queryEndTime === undefined) throw new MalformedAnswer('no queryEndTime');
  return { arrays, queryEndTime };
}

function describe(v: unknown): string {
  if (v === null) return 'null';
  if (Array.isArray(v)) return 'an array';
  return typeof v === 'object' ? 'an object' : `a ${typeof v}`;
}

function describeNetworkError(err: unknown): string {
  if (err instanceof Error) {
    const code = (err as { code?: unknown }).code;
    const cause = (err as { cause?: unknown }).cause;
    const inner = cause instanceof Error ? `: ${cause.message}` : '';
    return `${typeof code === 'string' ? `${code} ` : ''}${err.message}${inner}`;
  }
  return String(err);
}
