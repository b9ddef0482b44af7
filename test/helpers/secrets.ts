/**
 * Credentials used by tests. scripts/test.mjs scans everything the test suite prints for these
 * values (as they are and JSON-escaped), and for the Basic base64 of each `<x>Principal` with each
 * `<x>...Secret`, and fails the run if one appears: credentials must never reach a log line or an
 * error. Values are single-quoted literals of at least 8 characters.
 */
export const TEST_SECRETS = {
  tapPrincipal: 'tap-principal-7f3c2a91',
  tapSecret: 'tap-secret-Q9xv82LmZp4s',
  /** A secret a JSON encoder escapes: it shows as `\"` and `\\` in a JSON log line. */
  tapQuotedSecret: 'tap-secret-"Qu0te\\Bk7-Lm',
  podApiKey: 'pod-api-key-Hh27Wq9Lk3Jd',
  forwardSharedKey: 'fwd-shared-key-Zk82Pq1m',
  forwardPassword: 'fwd-password-Xy71Lm0q',
  /** The simulators' default credentials (most source tests use them). */
  tapSimSecret: 'sim-secret-0f3c9a7e',
  podSimApiKey: 'sim-api-key-0123456789abcdef',
} as const;
