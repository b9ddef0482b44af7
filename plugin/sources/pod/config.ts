/**
 * Config of input `proofpoint_on_demand`. Keys follow the Devo POD collector (`credentials`,
 * `override_url_base`, `services.<name>.{start_time, request_period_in_seconds,
 * override_tag_base}`); the keys this sidecar adds are snake_case with their unit (durations
 * `_secs`) and default here, each with the vendor fact behind it.
 */
import { z } from 'zod';
import { fluentTag, inputId, positiveInt, positiveSecs, secret, serviceUrlBase, startTimestamp, type RenamedKey } from '../../config/types.ts';
import type { StartTimeSetting } from '../start-time.ts';

export const POD_SERVICES = ['message', 'maillog', 'audit'] as const;
export type PodServiceName = (typeof POD_SERVICES)[number];

export const POD_DEFAULT_TAGS: Record<PodServiceName, string> = {
  message: 'mail.proofpoint.pod.message',
  maillog: 'mail.proofpoint.pod.maillog',
  audit: 'mail.proofpoint.pod.audit',
};

export const POD_DEFAULT_URL_BASE = 'wss://logstream.proofpoint.com';

/** Vendor limits: how long the server resumes a dropped live session, how far back archive mode goes. */
export const POD_LIVE_RESUME_MS = 3600_000;
export const POD_ARCHIVE_MAX_AGE_MS = 30 * 24 * 3600_000;

const nonNegativeInt = z.number().int().min(0);

export const podServiceSchema = z.strictObject({
  /**
   * Replay from here on first start (archive mode, hour-rounded, at most 30 days back). Omitted,
   * empty or null (the Devo collector's "from now"): live.
   */
  start_time: startTimestamp.transform((v) => v ?? undefined),
  /** Minimum seconds between two connection attempts of this service (the Devo collector's meaning). */
  request_period_in_seconds: positiveInt.default(60),
  /** Replaces the service's tag (and Devo table). */
  override_tag_base: fluentTag.optional(),
  /**
   * The Devo collector's place for the log stream's base URL. A tenant has one log stream, so all
   * services (and the input's `override_url_base`) must name the same one.
   */
  override_url_base: z.url({ protocol: /^wss?$/ }).optional(),
  /** Seconds a de-dup key is remembered after its batch is committed (at least two hours: archive hour rounding repeats up to an hour). */
  dedup_window_secs: z.number().int().min(7200, 'must be at least 7200 (two hours)').default(7200),
});

export const podInputSchema = z.strictObject({
  id: inputId,
  enabled: z.boolean().default(true),
  /** Devo-only: accepted and ignored (a label of the Devo collector's deployment). */
  environment: z.unknown().optional(),
  credentials: z.strictObject({
    /** The PoD cluster id (`cid` query parameter); not a secret. */
    cluster_id: z.string().min(1, 'must not be empty'),
    /** Sent as `Authorization: Bearer <api_key>`; never logged. */
    api_key: secret,
  }),
  /** Base URL of the log stream; `/v1/stream?cid=…&type=…` is appended. */
  override_url_base: z.url({ protocol: /^wss?$/ }).optional(),
  /** Seconds between client pings; the server is not known to ping (it answers ours). */
  ping_interval_secs: positiveInt.default(30),
  /** Seconds to wait for a pong (or any frame) after a ping before the session is ended and reopened. */
  pong_timeout_secs: positiveInt.default(30),
  /** Seconds the opening handshake (TCP, TLS, HTTP upgrade) may take. */
  handshake_timeout_secs: positiveInt.default(30),
  /** Seconds to wait for the server's close frame after ours before the TCP connection is cut. */
  close_timeout_secs: positiveInt.default(10),
  /**
   * Largest frame accepted (bytes). Frames over 1 MiB occur and peers lost them silently: keep
   * this far above 1 MiB. A larger frame ends the session with an error naming its size.
   */
  max_frame_bytes: z.number().int().min(1_048_576, 'must be at least 1048576 (1 MiB): PoD frames over 1 MiB occur').default(64 * 1_048_576),
  /** Offer permessage-deflate; the server decides whether to use it. */
  per_message_deflate: z.boolean().default(true),
  /** Frames held in memory per service (received, not yet taken by the pipeline) before the socket is paused. */
  max_buffered_frames: positiveInt.default(5_000),
  /** Bytes held in memory per service before the socket is paused. */
  max_buffered_bytes: positiveInt.default(32 * 1_048_576),
  /** A batch is handed to the pipeline when it holds this many events… */
  batch_max_events: positiveInt.default(1_000),
  /** …or this many seconds after its first event, whichever comes first. */
  batch_flush_secs: positiveSecs.default(1),
  /**
   * Seconds without contact after which a reconnect first replays the gap in archive mode. The
   * server resumes a live session dropped less than an hour ago; keep a margin below 3600.
   */
  archive_threshold_secs: z.number().int().min(60).max(3540, 'must stay below 3600: the server resumes live sessions for one hour only').default(3000),
  /**
   * Archive windows are asked only once they are this old: the vendor serves data "at least 30
   * minutes" stale, so the default keeps a 15-minute margin above it. A replay waits (live runs)
   * until its window is available.
   */
  archive_staleness_secs: nonNegativeInt.default(2700),
  /** Length of one archive session's window (the server rounds windows to whole hours). */
  archive_window_secs: z.number().int().min(3600).default(3600),
  /**
   * An archive session the server does not close is taken as complete after this many seconds
   * without a frame *while the socket is being read* (time paused for backpressure never counts).
   * Any end other than this or the server's close 1000 asks the window again.
   */
  archive_idle_timeout_secs: positiveInt.default(60),
  /**
   * Also replay the moments around every live reconnect, the sidecar's own orderly closes
   * included (a live session that ends without a normal close is always replayed). The vendor
   * documents that a live session reconnected within an hour resumes where the previous one
   * ended; set this for a tenant where it does not (see `check --online --probe --probe-live`).
   * It costs one more archive window per hour once a replay has interrupted live.
   */
  replay_live_interruptions: z.boolean().default(false),
  /** Capped backoff after refused or failed attempts (409, 5xx, network); never below request_period_in_seconds. */
  retry_max_secs: positiveInt.default(600),
  /** Seconds between per-session statistics lines while a session is open (one more when it ends). */
  stats_interval_secs: positiveInt.default(60),
  /**
   * While a live session is idle, a batch without events records the time of contact this often,
   * so a restart after a clean stop knows the gap even on quiet streams (audit).
   */
  checkpoint_interval_secs: positiveInt.default(300),
  services: z.strictObject({
    message: podServiceSchema.optional(),
    maillog: podServiceSchema.optional(),
    audit: podServiceSchema.optional(),
  }),
}).transform(serviceUrlBase);

/** Keys renamed to the `_secs` scheme; the old names still load (config/load.ts). */
export const POD_RENAMED_KEYS: readonly RenamedKey[] = [{ at: [], from: 'batch_flush_ms', to: 'batch_flush_secs', divideBy: 1000 }];

export type PodInputConfig = z.infer<typeof podInputSchema>;
export type PodInputConfigInput = z.input<typeof podInputSchema>;
export type PodServiceConfig = z.infer<typeof podServiceSchema>;

/** The services an input configures, in POD_SERVICES order. */
export function enabledPodServices(cfg: PodInputConfig): PodServiceName[] {
  return POD_SERVICES.filter((s) => cfg.services[s] !== undefined);
}

/** Each configured service's `start_time`, for the start-time check (sources/start-time.ts). */
export function podStartTimes(cfg: PodInputConfig): StartTimeSetting[] {
  return enabledPodServices(cfg).map((svc) => ({
    path: `inputs.proofpoint_on_demand.services.${svc}.start_time`,
    text: cfg.services[svc]?.start_time,
  }));
}
