/**
 * One GET of the TAP SIEM API (`/v2/siem/*`) for one explicit window.
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
import { AnswerScanner, MalformedAnswer } from './answer-stream.ts';

/** The endpoint paths, declared in endpoint.ts (light enough for the input descriptor). */
export { TAP_PATHS } from './endpoint.ts';

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
   * Fetches one window whole (`check --online`, tests): the arrays of the answer by service.
   * Throws what openWindow and WindowBody.parts throw.
   */
  async fetchWindow(path: string, w: { start: number; end: number }, signal: AbortSignal): Promise<WindowAnswer> {
    const body = await this.openWindow(path, w, signal);
    const arrays: Partial<Record<TapServiceName, unknown[]>> = {};
    const parts = body.parts(Number.POSITIVE_INFINITY);
    for (;;) {
      const r = await parts.next();
      if (r.done) {
        for (const svc of r.value.services) arrays[svc] ??= [];
        return { status: r.value.status, arrays, ...(r.value.queryEndTime !== undefined ? { queryEndTime: r.value.queryEndTime } : {}), bytes: r.value.bytes };
      }
      const a = (arrays[r.value.service] ??= []);
      for (const el of r.value.elements) a.push(el);
    }
  }

  /**
   * Sends one window's request and waits for its status line and headers. Throws CredentialsError
   * (100), TapBadRequestError / TapThrottledError / VendorHttpError (300) or VendorRequestError
   * (301); an abort of `signal` rethrows its reason. A 200's body is read by WindowBody.parts,
   * which throws TapMalformedAnswerError (300) or VendorRequestError (301, a body cut short).
   *
   * `timeoutMs` bounds the wait for the headers, and then each wait for body bytes (undici's body
   * timeout, which does not run while the body is paused because its reader is not asking).
   */
  async openWindow(path: string, w: { start: number; end: number }, signal: AbortSignal): Promise<WindowBody> {
    const where = `${path} interval ${formatInterval(w)}`;
    const headersDeadline = new AbortController();
    const timer = setTimeout(() => headersDeadline.abort(new Error('headers timeout')), this.#o.timeoutMs);
    const both = AbortSignal.any([signal, headersDeadline.signal]);
    let res: Dispatcher.ResponseData;
    try {
      res = await request(this.url(path, w), {
        method: 'GET',
        dispatcher: this.#dispatcher,
        headers: { authorization: this.#auth, accept: 'application/json', 'user-agent': this.#o.userAgent ?? USER_AGENT },
        signal: both,
        headersTimeout: this.#o.timeoutMs,
        bodyTimeout: this.#o.timeoutMs,
      });
    } catch (err) {
      if (signal.aborted) throw signal.reason;
      const why = headersDeadline.signal.aborted ? `no complete answer within ${this.#o.timeoutMs / 1000} s` : describeNetworkError(err);
      throw new VendorRequestError(`TAP request failed for input ${this.#o.input}, ${where}: ${why}`, err);
    } finally {
      clearTimeout(timer);
    }
    const status = res.statusCode;
    if (status === 200) return new WindowBody(res.body, signal, where, this.#o.input, this.#o.timeoutMs);
    let text: string;
    try {
      text = await res.body.text();
    } catch (err) {
      if (signal.aborted) throw signal.reason;
      throw new VendorRequestError(`TAP request failed for input ${this.#o.input}, ${where}: ${describeNetworkError(err)}`, err);
    }
    if (status === 204) return new WindowBody(undefined, signal, where, this.#o.input, this.#o.timeoutMs, Buffer.byteLength(text));
    throw this.#refusal(status, text, where);
  }

  /** The error a status other than 200 and 204 means. */
  #refusal(status: number, text: string, where: string): Error {
    const shown = vendorText(text);
    if (status === 401 || status === 403) {
      return new CredentialsError(
        `TAP API refused the credentials of input ${this.#o.input} (HTTP ${status}${shown ? `: ${shown}` : ''}): ` +
          (status === 401
            ? 'check credentials.username (service principal) and credentials.password (secret)'
            : 'the credential is valid but not authorised for this customer\'s SIEM data'),
      );
    }
    const msg = `TAP API answered HTTP ${status}${shown ? ` "${shown}"` : ''} for input ${this.#o.input}, ${where}`;
    if (status === 400) return new TapBadRequestError(text, msg);
    if (status === 429) return new TapThrottledError(text, msg);
    return new VendorHttpError(status, shown, msg);
  }

  async close(): Promise<void> {
    if (this.#ownDispatcher) await this.#dispatcher.close();
  }
}

export { MalformedAnswer };

/** A run of one service's elements, in body order. */
export interface WindowPart {
  service: TapServiceName;
  elements: unknown[];
}

/** What a whole answer said besides its elements. */
export interface WindowEnd {
  status: 200 | 204;
  queryEndTime?: string;
  /** The services whose array the answer carried (a missing array is absent). */
  services: ReadonlySet<TapServiceName>;
  bytes: number;
}

/** How much of a body's head an error message may show. */
const SHOWN_HEAD_BYTES = 2048;

/**
 * The body of a 200 (or 204) answer, read as it is asked for: nothing more is read from the
 * connection while the caller is not iterating `parts` (the connection's own buffers are the
 * only read-ahead), and a caller that stops iterating closes it.
 */
export class WindowBody {
  readonly #body: Dispatcher.ResponseData['body'] | undefined;
  readonly #signal: AbortSignal;
  readonly #where: string;
  readonly #input: string;
  readonly #bytes204: number;
  readonly #timeoutMs: number;

  constructor(body: Dispatcher.ResponseData['body'] | undefined, signal: AbortSignal, where: string, input: string, timeoutMs: number, bytes204 = 0) {
    this.#timeoutMs = timeoutMs;
    this.#body = body;
    this.#signal = signal;
    this.#where = where;
    this.#input = input;
    this.#bytes204 = bytes204;
  }

  /**
   * Closes the connection of a body that will not be read (or not to its end). undici reports the
   * abort of an unread body as an 'error' event: nobody reads it, so it is swallowed here.
   */
  cancel(): void {
    if (this.#body && !this.#body.destroyed) {
      this.#body.on('error', () => {});
      this.#body.destroy();
    }
  }

  /**
   * The elements, in runs of at most `max` of one service; returns the rest of the answer once the
   * whole body was read and found to be the documented answer. Throws TapMalformedAnswerError
   * (300) when it is not, VendorRequestError (301) when the body is cut short; an abort of the
   * signal rethrows its reason.
   */
  async *parts(max: number): AsyncGenerator<WindowPart, WindowEnd> {
    if (this.#body === undefined) return { status: 204, services: new Set(), bytes: this.#bytes204 };
    const body = this.#body;
    let run: WindowPart | undefined;
    const ready: WindowPart[] = [];
    const scanner = new AnswerScanner({
      element(service, value) {
        if (run === undefined || run.service !== service || run.elements.length >= max) {
          run = { service, elements: [] };
          ready.push(run);
        }
        run.elements.push(value);
      },
    });
    let bytes = 0;
    const head: Buffer[] = [];
    let headBytes = 0;
    try {
      try {
        for await (const chunk of body as AsyncIterable<Buffer>) {
          if (headBytes < SHOWN_HEAD_BYTES) {
            head.push(chunk.subarray(0, SHOWN_HEAD_BYTES - headBytes));
            headBytes += Math.min(chunk.length, SHOWN_HEAD_BYTES - headBytes);
          }
          bytes += chunk.length;
          scanner.write(chunk);
          // The run still being filled stays; every full one goes out before more is read.
          while (ready.length > 1 || (ready.length === 1 && ready[0]!.elements.length >= max)) {
            const part = ready.shift()!;
            if (part === run) run = undefined;
            yield part;
          }
        }
        const { queryEndTime } = scanner.end();
        for (const part of ready.splice(0)) yield part;
        return { status: 200, queryEndTime, services: scanner.services, bytes };
      } catch (err) {
        if (err instanceof MalformedAnswer) {
          const shown = vendorText(Buffer.concat(head).toString('utf8'));
          throw new TapMalformedAnswerError(
            err.message,
            shown,
            `TAP API answered HTTP 200 with a body that is not the documented answer (${err.message}) for input ${this.#input}, ${this.#where}` +
              (shown ? `; body (${bytes} bytes read) starts: ${shown}` : ''),
          );
        }
        if (this.#signal.aborted) throw this.#signal.reason;
        const why =
          (err as { code?: unknown }).code === 'UND_ERR_BODY_TIMEOUT'
            ? `no complete answer within ${this.#timeoutMs / 1000} s (no body bytes for that long after ${bytes} bytes)`
            : `the body was cut short after ${bytes} bytes (${describeNetworkError(err)})`;
        throw new VendorRequestError(`TAP request failed for input ${this.#input}, ${this.#where}: ${why}`, err);
      }
    } finally {
      this.cancel();
    }
  }
}

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
