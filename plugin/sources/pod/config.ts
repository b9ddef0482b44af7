/** Config of input `proofpoint_on_demand` (issue 4). Keys follow the Devo POD collector. */
import { z } from 'zod';
import { fluentTag, inputId, isoTimestamp, positiveInt, secret } from '../../config/types.ts';

export const POD_SERVICES = ['message', 'maillog', 'audit'] as const;
export type PodServiceName = (typeof POD_SERVICES)[number];

export const POD_DEFAULT_TAGS: Record<PodServiceName, string> = {
  message: 'mail.proofpoint.pod.message',
  maillog: 'mail.proofpoint.pod.maillog',
  audit: 'mail.proofpoint.pod.audit',
};

export const podServiceSchema = z.strictObject({
  /** Replay from here on first start (archive mode, at most 30 days back); default: live. */
  start_time: isoTimestamp.optional(),
  /** Minimum seconds between two connection attempts (the Devo collector's meaning). */
  request_period_in_seconds: positiveInt.default(60),
  override_tag_base: fluentTag.optional(),
  /** Seconds a de-dup key is remembered after its batch is committed (at least two hours). */
  dedup_window_secs: z.number().int().min(7200, 'must be at least 7200 (two hours)').default(7200),
});

export const podInputSchema = z.strictObject({
  id: inputId,
  enabled: z.boolean().default(true),
  credentials: z.strictObject({
    cluster_id: z.string().min(1, 'must not be empty'),
    api_key: secret,
  }),
  override_url_base: z.url({ protocol: /^wss?$/ }).optional(),
  services: z.strictObject({
    message: podServiceSchema.optional(),
    maillog: podServiceSchema.optional(),
    audit: podServiceSchema.optional(),
  }),
});

export type PodInputConfig = z.infer<typeof podInputSchema>;
export type PodServiceConfig = z.infer<typeof podServiceSchema>;
