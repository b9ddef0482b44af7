/** Config of input `proofpoint_tap` (issue 3). Keys follow the Devo TAP collector. */
import { z } from 'zod';
import { fluentTag, inputId, isoTimestamp, positiveInt, secret } from '../../config/types.ts';

export const TAP_SERVICES = ['clicksBlocked', 'clicksPermitted', 'messagesBlocked', 'messagesDelivered'] as const;
export type TapServiceName = (typeof TAP_SERVICES)[number];

export const TAP_DEFAULT_TAGS: Record<TapServiceName, string> = {
  clicksBlocked: 'mail.proofpoint.tapsiem_v2.clicksblocked',
  clicksPermitted: 'mail.proofpoint.tapsiem_v2.clickspermitted',
  messagesBlocked: 'mail.proofpoint.tapsiem_v2.messagesblocked',
  messagesDelivered: 'mail.proofpoint.tapsiem_v2.messagesdelivered',
};

export const tapServiceSchema = z.strictObject({
  /** Where the first pull starts (default: one hour before the first start); at most 7 days back. */
  start_time_in_utc: isoTimestamp.optional(),
  /** Seconds between polls once caught up. */
  request_period_in_seconds: positiveInt.default(60),
  /** Replaces the service's tag (and Devo table). */
  override_tag_base: fluentTag.optional(),
});

export const tapInputSchema = z.strictObject({
  id: inputId,
  enabled: z.boolean().default(true),
  credentials: z.strictObject({
    /** TAP service principal. */
    username: secret,
    /** TAP service secret. */
    password: secret,
  }),
  override_url_base: z.url({ protocol: /^https?$/ }).optional(),
  /** Seconds a de-dup key is remembered after its batch is committed. */
  dedup_window_secs: positiveInt.default(7 * 24 * 3600),
  services: z.strictObject({
    clicksBlocked: tapServiceSchema.optional(),
    clicksPermitted: tapServiceSchema.optional(),
    messagesBlocked: tapServiceSchema.optional(),
    messagesDelivered: tapServiceSchema.optional(),
  }),
});

export type TapInputConfig = z.infer<typeof tapInputSchema>;
export type TapServiceConfig = z.infer<typeof tapServiceSchema>;
