/**
 * Config of input `proofpoint_tap`. Keys follow the Devo TAP collector (`credentials`,
 * `override_url_base`, `services.<name>.start_time_in_utc`, `request_period_in_seconds`,
 * `override_tag_base`); the rest are this sidecar's, snake_case with their unit (durations
 * `_secs`), each with its default declared here and the vendor fact behind it.
 */
import { z } from 'zod';
import { fluentTag, inputId, positiveInt, positiveSecs, secret, serviceUrlBase, startTimestamp, type RenamedKey } from '../../config/types.ts';
import type { StartTimeSetting } from '../start-time.ts';

export const TAP_SERVICES = ['clicksBlocked', 'clicksPermitted', 'messagesBlocked', 'messagesDelivered'] as const;
export type TapServiceName = (typeof TAP_SERVICES)[number];

export const TAP_DEFAULT_TAGS: Record<TapServiceName, string> = {
  clicksBlocked: 'mail.proofpoint.tapsiem_v2.clicksblocked',
  clicksPermitted: 'mail.proofpoint.tapsiem_v2.clickspermitted',
  messagesBlocked: 'mail.proofpoint.tapsiem_v2.messagesblocked',
  messagesDelivered: 'mail.proofpoint.tapsiem_v2.messagesdelivered',
};

export const TAP_DEFAULT_URL_BASE = 'https://tap-api-v2.proofpoint.com';

/** The API's limit per pool and credential: 1800 requests per rolling 24 h. */
export const TAP_REQUESTS_PER_DAY = 1800;

export const THREAT_STATUSES = ['active', 'cleared', 'falsePositive'] as const;
export const THREAT_TYPES = ['url', 'attachment', 'messageText'] as const;

export const tapServiceSchema = z.strictObject({
  /**
   * Where the first pull starts; at most 7 days back. Omitted: one hour before the first start;
   * empty or null (the Devo collector's "from now"): the first start.
   */
  start_time_in_utc: startTimestamp,
  /**
   * Seconds between polls once caught up. With two or more services one `/v2/siem/all` call serves
   * them all, so the shortest period among them sets the cadence.
   */
  request_period_in_seconds: positiveInt.default(60),
  /** Replaces the service's tag (and Devo table). */
  override_tag_base: fluentTag.optional(),
  /**
   * The Devo collector's place for the API's base URL. One `/v2/siem/all` request serves every
   * service, so all services (and the input's `override_url_base`) must name the same one.
   */
  override_url_base: z.url({ protocol: /^https?$/ }).optional(),
});

export const tapInputSchema = z
  .strictObject({
    id: inputId,
    enabled: z.boolean().default(true),
    /** Devo-only: accepted and ignored (a label of the Devo collector's deployment). */
    environment: z.unknown().optional(),
    credentials: z.strictObject({
      /** TAP service principal. */
      username: secret,
      /** TAP service secret. */
      password: secret,
    }),
    /** Base URL of the TAP API (the simulator's URL in tests and the demo). */
    override_url_base: z.url({ protocol: /^https?$/ }).optional(),
    /**
     * Seconds a de-dup key is remembered after its batch is committed. It must cover the settle
     * re-query (an event seen in the first pass comes back in the re-query) and the re-emission of
     * past events when a threat is condemned later (7 days, the API's look-back).
     */
    dedup_window_secs: positiveInt.default(7 * 24 * 3600),
    /**
     * How far behind now every window ends. The API answers 400 "The requested interval is still
     * current." for an end in the future, and one client saw it even for an end just before its own
     * clock, so leave room for clock skew.
     */
    window_lag_secs: z.number().int().min(1).max(3600).default(120),
    /**
     * TAP files events by creation time and indexes them up to about 30 minutes late: recent time
     * is queried once more after it has settled, and de-duplication drops what was already sent.
     */
    settle_requery_enabled: z.boolean().default(true),
    /** Seconds after a window's end before it counts as settled (indexing lag plus a margin). */
    settle_delay_secs: z.number().int().min(60).max(24 * 3600).default(2400),
    /**
     * Settled time is re-queried once at least this many seconds of it have piled up (one request
     * covers at most an hour). Larger saves budget; smaller delivers late events sooner.
     */
    settle_window_secs: z.number().int().min(30).max(3600).default(900),
    /** `threatStatus` filter. Omitted: the API's default, active and cleared. */
    threat_status: z.array(z.enum(THREAT_STATUSES)).min(1).optional(),
    /** Also ask for false positives (`threatStatus=falsePositive`), which the API hides by default. */
    include_false_positives: z.boolean().default(false),
    /** `threatType` filter. Omitted: all types. */
    threat_type: z.array(z.enum(THREAT_TYPES)).min(1).optional(),
    /**
     * Requests allowed per rolling 24 h in each rate-limit pool. The API allows 1800 per
     * credential; lower it when another collector shares the credential.
     */
    max_requests_per_day: z.number().int().min(1).max(TAP_REQUESTS_PER_DAY).default(TAP_REQUESTS_PER_DAY),
    /** First wait after a 429; doubles per 429 up to the max. The API sends no Retry-After. */
    throttle_backoff_initial_secs: positiveInt.default(900),
    throttle_backoff_max_secs: positiveInt.default(4 * 3600),
    /** Retries of 5xx answers and network failures: capped, jittered exponential backoff. */
    retry_initial_secs: positiveSecs.default(1),
    retry_max_secs: positiveInt.default(300),
    /** Seconds one request may take, answer body included (there is no paging: an hour can be big). */
    request_timeout_secs: positiveInt.default(120),
    /**
     * While catching up, ask for the next window while the current one's events are delivered (at
     * most one window ahead, only when the budget allows it at once). Costs memory for one more
     * answer; saves the API's response time on every window of a backfill.
     */
    prefetch_next_window: z.boolean().default(true),
    /** Events per batch at most; a larger window answer is split (only its last batch moves the cursor). */
    max_events_per_batch: positiveInt.default(2000),
    services: z.strictObject({
      clicksBlocked: tapServiceSchema.optional(),
      clicksPermitted: tapServiceSchema.optional(),
      messagesBlocked: tapServiceSchema.optional(),
      messagesDelivered: tapServiceSchema.optional(),
    }),
  })
  .superRefine((cfg, ctx) => {
    if (!TAP_SERVICES.some((s) => cfg.services[s] !== undefined)) {
      ctx.addIssue({
        code: 'custom',
        path: ['services'],
        message: `must name at least one service: ${TAP_SERVICES.join(', ')}`,
      });
    }
    if (cfg.throttle_backoff_max_secs < cfg.throttle_backoff_initial_secs) {
      ctx.addIssue({
        code: 'custom',
        path: ['throttle_backoff_max_secs'],
        message: 'must be at least throttle_backoff_initial_secs',
      });
    }
    if (cfg.settle_requery_enabled && cfg.dedup_window_secs < cfg.settle_delay_secs + 2 * 3600) {
      ctx.addIssue({
        code: 'custom',
        path: ['dedup_window_secs'],
        message: `must be at least settle_delay_secs + 7200 (${cfg.settle_delay_secs + 7200}) so the settle re-query does not resend events`,
      });
    }
    if (cfg.threat_status?.includes('falsePositive') && !cfg.include_false_positives) {
      ctx.addIssue({
        code: 'custom',
        path: ['threat_status'],
        message: 'false positives are opt-in: set include_false_positives: true instead of listing falsePositive',
      });
    }
  })
  .transform(serviceUrlBase);

/** Keys renamed to the `_secs` scheme; the old names still load (config/load.ts). */
export const TAP_RENAMED_KEYS: readonly RenamedKey[] = [{ at: [], from: 'retry_initial_ms', to: 'retry_initial_secs', divideBy: 1000 }];

export type TapInputConfig = z.infer<typeof tapInputSchema>;
export type TapServiceConfig = z.infer<typeof tapServiceSchema>;
/** What callers (tests, the demo) may write: defaults not yet applied. */
export type TapInputConfigInput = z.input<typeof tapInputSchema>;

/** The enabled services, in the canonical order. */
export function enabledServices(cfg: TapInputConfig): TapServiceName[] {
  return TAP_SERVICES.filter((s) => cfg.services[s] !== undefined);
}

/** The `threatStatus` values to send; empty means the API's default (active and cleared). */
export function threatStatusParams(cfg: TapInputConfig): string[] {
  if (!cfg.include_false_positives) return cfg.threat_status ?? [];
  const base = cfg.threat_status ?? ['active', 'cleared'];
  return [...new Set([...base, 'falsePositive'])];
}

/** Each enabled service's `start_time_in_utc`, for the start-time check (sources/start-time.ts). */
export function tapStartTimes(cfg: TapInputConfig): StartTimeSetting[] {
  return enabledServices(cfg).map((svc) => ({
    path: `inputs.proofpoint_tap.services.${svc}.start_time_in_utc`,
    text: cfg.services[svc]?.start_time_in_utc,
  }));
}
