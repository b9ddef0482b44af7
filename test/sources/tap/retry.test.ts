/**
 * The TAP error policy (plugin/sources/tap/retry.ts): every error the client raises maps to one
 * action, one row per kind, and nothing falls through to a wrong row (the 429 and the malformed
 * 200 are HTTP errors too; the two recoverable 400 texts are not retried like other 400s).
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { CredentialsError, VendorHttpError, VendorRequestError } from '../../../plugin/errors.ts';
import { TapBadRequestError, TapMalformedAnswerError, TapThrottledError } from '../../../plugin/sources/tap/errors.ts';
import { TAP_ERROR_POLICY, tapErrorPolicy, type TapErrorAction, type TapErrorKind } from '../../../plugin/sources/tap/retry.ts';

const rows: { name: string; err: unknown; kind: TapErrorKind; action: TapErrorAction; countsMalformed: boolean }[] = [
  { name: 'HTTP 401', err: new CredentialsError('TAP API refused the credentials (HTTP 401)'), kind: 'credentials', action: 'fail_input', countsMalformed: false },
  {
    name: 'HTTP 400 too far into the past',
    err: new TapBadRequestError('The requested start time is too far into the past.', 'm'),
    kind: 'too_far_in_past',
    action: 'move_window_start',
    countsMalformed: false,
  },
  {
    name: 'HTTP 400 still current',
    err: new TapBadRequestError('The requested interval is still current.', 'm'),
    kind: 'still_current',
    action: 'wait_lag',
    countsMalformed: false,
  },
  { name: 'HTTP 400 another text', err: new TapBadRequestError('Invalid parameter: format', 'm'), kind: 'http', action: 'retry_with_backoff', countsMalformed: false },
  { name: 'HTTP 429', err: new TapThrottledError('Too many requests', 'm'), kind: 'throttled', action: 'throttle_backoff', countsMalformed: false },
  {
    name: 'HTTP 200, not the documented answer',
    err: new TapMalformedAnswerError('no queryEndTime', '{}', 'm'),
    kind: 'malformed_answer',
    action: 'retry_with_backoff',
    countsMalformed: true,
  },
  { name: 'HTTP 503', err: new VendorHttpError(503, 'unavailable', 'm'), kind: 'http', action: 'retry_with_backoff', countsMalformed: false },
  { name: 'network failure or a body cut short', err: new VendorRequestError('TAP request failed: ECONNRESET'), kind: 'request', action: 'retry_with_backoff', countsMalformed: false },
  { name: 'not a vendor error (a bug)', err: new TypeError('x is undefined'), kind: 'unknown', action: 'rethrow', countsMalformed: false },
  { name: 'not an Error at all', err: 'a string', kind: 'unknown', action: 'rethrow', countsMalformed: false },
];

test('TAP error policy: every error kind maps to its action (table)', () => {
  for (const r of rows) {
    assert.deepEqual(tapErrorPolicy(r.err), { kind: r.kind, action: r.action, countsMalformed: r.countsMalformed }, r.name);
  }
});

test('TAP error policy: the table test covers every row of the policy', () => {
  const covered = new Set(rows.map((r) => r.kind));
  assert.deepEqual([...Object.keys(TAP_ERROR_POLICY)].sort(), [...covered].sort());
});
