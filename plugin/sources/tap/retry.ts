/**
 * What the TAP run loop does about a failed request or an unreadable answer: each error kind the
 * client raises (sources/tap/client.ts, sources/tap/errors.ts) maps to one action. Pure: the run
 * loop (sources/tap/run.ts) carries the action out.
 *
 * The API's two recoverable 400 texts are window refusals, not request errors: "too far into the
 * past" (its 7-day limit measured on its clock, which may be ahead of ours) and "still current"
 * (its clock behind ours). Any other 400, like a 5xx, a body cut short or a 200 that is not the
 * documented answer, is retried with backoff: the window stays where it is and nothing of it is
 * committed, so its events come with a later, readable answer.
 */
import { CredentialsError, VendorHttpError, VendorRequestError } from '../../errors.ts';
import { TapBadRequestError, TapMalformedAnswerError, TapThrottledError } from './errors.ts';

export type TapErrorKind =
  /** HTTP 401 or 403. */
  | 'credentials'
  /** HTTP 400 "The requested start time is too far into the past". */
  | 'too_far_in_past'
  /** HTTP 400 "The requested interval is still current". */
  | 'still_current'
  /** HTTP 429: the pool's 24 h budget is spent on the server's side. */
  | 'throttled'
  /** HTTP 200 whose body is not the documented answer. */
  | 'malformed_answer'
  /** Any other HTTP status (5xx, another 400). */
  | 'http'
  /** No HTTP answer, or a body cut short (network, timeout). */
  | 'request'
  /** Not a vendor error: a bug. */
  | 'unknown';

export type TapErrorAction =
  /** The input stops (its services fail); other inputs go on. */
  | 'fail_input'
  /** The window start moves further inside the 7-day limit; asked again at once. */
  | 'move_window_start'
  /** Windows keep further behind now; asked again after waiting that lag. */
  | 'wait_lag'
  /** The pool waits for its budget (throttle backoff); services degraded. */
  | 'throttle_backoff'
  /** Asked again after the retry backoff; services degraded. */
  | 'retry_with_backoff'
  /** Rethrown: stops the input. */
  | 'rethrow';

export interface TapErrorPolicy {
  action: TapErrorAction;
  /** Counts the answer in `tap_malformed_answers_total`. */
  countsMalformed: boolean;
}

/** The policy, one row per error kind. */
export const TAP_ERROR_POLICY: Readonly<Record<TapErrorKind, TapErrorPolicy>> = {
  credentials: { action: 'fail_input', countsMalformed: false },
  too_far_in_past: { action: 'move_window_start', countsMalformed: false },
  still_current: { action: 'wait_lag', countsMalformed: false },
  throttled: { action: 'throttle_backoff', countsMalformed: false },
  malformed_answer: { action: 'retry_with_backoff', countsMalformed: true },
  http: { action: 'retry_with_backoff', countsMalformed: false },
  request: { action: 'retry_with_backoff', countsMalformed: false },
  unknown: { action: 'rethrow', countsMalformed: false },
};

/** The kind of an error thrown by a TAP request or while reading its answer. */
export function tapErrorKind(err: unknown): TapErrorKind {
  if (err instanceof CredentialsError) return 'credentials';
  if (err instanceof TapBadRequestError && err.refusal === 'too_far_in_past') return 'too_far_in_past';
  if (err instanceof TapBadRequestError && err.refusal === 'still_current') return 'still_current';
  if (err instanceof TapThrottledError) return 'throttled';
  if (err instanceof TapMalformedAnswerError) return 'malformed_answer';
  if (err instanceof VendorHttpError) return 'http';
  if (err instanceof VendorRequestError) return 'request';
  return 'unknown';
}

/** What to do about `err`. */
export function tapErrorPolicy(err: unknown): TapErrorPolicy & { kind: TapErrorKind } {
  const kind = tapErrorKind(err);
  return { kind, ...TAP_ERROR_POLICY[kind] };
}
