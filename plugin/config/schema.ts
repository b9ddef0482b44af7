/**
 * The sidecar's configuration, declared once with its defaults. Every object is
 * strict: an unknown key is an error naming it, its path and the nearest valid key (load.ts).
 * Each input type owns its section's schema (its descriptor, listed in sources/registry.ts).
 */
import { z } from 'zod';
import { positiveInt, positiveSecs, secret, type RenamedKey } from './types.ts';
import { inputsShape, registryGeneration, type BuiltInInputs } from '../sources/registry.ts';

/** Fluent Bit closes the connection on a frame over buffer_max_size (6,144,000 bytes by default). */
export const FLUENT_BIT_BUFFER_MAX_SIZE = 6_144_000;

const hostPort = z
  .string()
  .regex(/^(\[[0-9a-fA-F:]+\]|[A-Za-z0-9_.-]+):\d{1,5}$/, 'must be "host:port", e.g. "127.0.0.1:2021"');

/**
 * One puller per feed across replicas: each feed (coordination/feeds.ts) is pulled only by the
 * replica holding its coordination.k8s.io/v1 Lease. Timings follow client-go's leader election: a
 * holder that has not renewed within renew_deadline_secs stops pulling, and a peer takes a Lease
 * over only after lease_duration_secs without a renewal, so two replicas never pull one feed at once.
 */
export const coordinationSchema = z
  .strictObject({
    type: z.literal('kubernetes'),
    /** Namespace of the Leases; the pod's own (service account namespace file) when omitted. */
    namespace: z
      .string()
      .regex(/^[a-z0-9]([-a-z0-9]*[a-z0-9])?$/, 'must be a Kubernetes namespace name (lowercase letters, digits and "-")')
      .max(63)
      .optional(),
    /** Lease names are `<lease_prefix>-<input id>-<service>` (TAP: `-all`), lowercased. */
    lease_prefix: z
      .string()
      .regex(/^[a-z0-9]([-a-z0-9.]*[a-z0-9])?$/, 'must be lowercase letters, digits, "-" and "." (a Kubernetes object name)')
      .max(120)
      .default('proofpoint-sidecar'),
    /** How long a Lease stays valid after its last renewal (the Lease's leaseDurationSeconds). */
    lease_duration_secs: positiveSecs.default(15),
    /** A holder that cannot renew within this time stops pulling the feed. */
    renew_deadline_secs: positiveSecs.default(10),
    /** How often Leases are renewed and free ones looked at. */
    retry_period_secs: positiveSecs.default(2),
    /** A kubeconfig file; the in-cluster service account when omitted. */
    kubeconfig: z.string().min(1).optional(),
    /**
     * Most de-dup keys (as fingerprints) a holder carries in each feed's Lease, so the next holder
     * does not deliver the span it re-reads again; 0 carries none.
     */
    carry_dedup_keys: z.number().int().min(0).max(16_384).default(8_192),
  })
  .refine((c) => c.renew_deadline_secs < c.lease_duration_secs, {
    message: 'must be less than lease_duration_secs, so a holder stops pulling before its Lease can expire',
    path: ['renew_deadline_secs'],
  })
  .refine((c) => c.retry_period_secs * 2 <= c.renew_deadline_secs, {
    message: 'must be at most half of renew_deadline_secs, so a renewal is tried at least twice before the deadline',
    path: ['retry_period_secs'],
  });

export const globalsSchema = z.strictObject({
  name: z.string().min(1).default('proofpoint-sidecar'),
  log_level: z.enum(['debug', 'info', 'warn', 'error']).default('info'),
  /** LevelDB directory: cursors, de-dup windows, request logs, dead letters. */
  state_dir: z.string().min(1).default('./state'),
  /** /healthz, /readyz and /metrics; omit to disable. */
  http: z.strictObject({ listen: hostPort.default('127.0.0.1:2021') }).optional(),
  /** On SIGTERM/SIGINT: how long to wait for in-flight chunks to be acknowledged. */
  shutdown_timeout_secs: positiveInt.default(30),
  /** How often expired de-dup keys are deleted. */
  dedup_sweep_interval_secs: positiveInt.default(300),
  /** Most de-dup keys kept per service; the oldest go first beyond it. */
  dedup_max_keys: positiveInt.default(2_000_000),
  /** Share the feeds among replicas through Kubernetes Leases; omit to pull every feed here. */
  coordination: coordinationSchema.optional(),
  /** Devo-only: accepted and ignored (state lives in state_dir). */
  persistence: z.unknown().optional(),
  /** Devo-only: accepted and ignored (log_level sets the detail). */
  debug: z.unknown().optional(),
  /** Devo-only: accepted and ignored (the collector's id; inputs keep their own `id`). */
  id: z.unknown().optional(),
});

const tlsSchema = z.strictObject({
  /** CA bundle that signs Fluent Bit's certificate; the system CAs when omitted. */
  ca_file: z.string().min(1).optional(),
  /** Client certificate and key, when Fluent Bit verifies clients. */
  cert_file: z.string().min(1).optional(),
  key_file: z.string().min(1).optional(),
  /** Verify Fluent Bit's certificate and name. */
  verify: z.boolean().default(true),
  /** Name to verify and send as SNI; defaults to host. */
  servername: z.string().min(1).optional(),
});

export const forwardOutputSchema = z
  .strictObject({
    type: z.literal('forward'),
    host: z.string().min(1).default('127.0.0.1'),
    port: z.number().int().min(1).max(65535).default(24224),
    /** Unix socket of Fluent Bit's forward input; replaces host/port. */
    unix_path: z.string().min(1).optional(),
    /** Fluent Bit `shared_key`: enables the HELO/PING/PONG handshake. */
    shared_key: secret.optional(),
    /** Our hostname in the handshake (Fluent Bit's view of the client). */
    self_hostname: z.string().min(1).optional(),
    /** Fluent Bit `security.users`: needs shared_key. */
    username: z.string().min(1).optional(),
    password: secret.optional(),
    tls: tlsSchema.optional(),
    connect_timeout_secs: positiveInt.default(10),
    /** A chunk not acknowledged within this time makes the client reconnect and resend. */
    ack_timeout_secs: positiveInt.default(30),
    /** First reconnect delay; doubles per failure, with jitter, up to reconnect_max_secs. */
    reconnect_initial_secs: positiveSecs.default(0.5),
    reconnect_max_secs: positiveSecs.default(30),
    /** A chunk is closed when it reaches this size (soft target). */
    chunk_bytes: positiveInt.default(1_048_576),
    /** Hard limit on one frame; a single record that cannot fit goes to the dead-letter file. */
    max_frame_bytes: z
      .number()
      .int()
      .min(65_536)
      .max(FLUENT_BIT_BUFFER_MAX_SIZE - 144_000, `must stay well below Fluent Bit's buffer_max_size (${FLUENT_BIT_BUFFER_MAX_SIZE})`)
      .default(4_000_000),
    /** Chunks sent and not yet acknowledged, at most. */
    max_chunks_in_flight: positiveInt.default(16),
    /** Bytes queued or in flight, at most; beyond it sources are paused. */
    queue_max_bytes: positiveInt.default(64 * 1_048_576),
  })
  .refine((o) => o.password === undefined || o.shared_key !== undefined, {
    message: 'password (security.users) needs shared_key',
    path: ['password'],
  })
  .refine((o) => (o.username === undefined) === (o.password === undefined), {
    message: 'username and password go together',
    path: ['username'],
  });

export const stdoutOutputSchema = z.strictObject({
  type: z.literal('stdout'),
  /** Bytes queued and not yet written, at most; beyond it sources are paused. */
  queue_max_bytes: positiveInt.default(16 * 1_048_576),
  max_frame_bytes: positiveInt.default(4_000_000),
});

export const outputSchema = z.discriminatedUnion('type', [forwardOutputSchema, stdoutOutputSchema]);

function buildConfigSchema() {
  return z.strictObject({
    globals: globalsSchema.prefault({}),
    output: outputSchema.prefault({ type: 'forward' }),
    inputs: z.strictObject(inputsShape()).prefault({}),
    /** Devo-only: accepted and ignored (the output is Fluent Bit). */
    outputs: z.unknown().optional(),
    /** Devo collector server's JSON form: accepted and ignored (globals holds the settings). */
    global_overrides: z.unknown().optional(),
  });
}

let built: { generation: number; schema: ReturnType<typeof buildConfigSchema> } | undefined;

/** The schema of the whole file, with an `inputs.<type>` section for every registered input type. */
export function configSchema(): ReturnType<typeof buildConfigSchema> {
  if (built?.generation !== registryGeneration()) built = { generation: registryGeneration(), schema: buildConfigSchema() };
  return built.schema;
}

/** Keys of the sections above that were renamed; each input type lists its own (its descriptor). */
export const RENAMED_KEYS: readonly RenamedKey[] = [
  { at: ['output'], from: 'reconnect_initial_ms', to: 'reconnect_initial_secs', divideBy: 1000 },
  { at: ['output'], from: 'reconnect_max_ms', to: 'reconnect_max_secs', divideBy: 1000 },
  { at: ['globals', 'coordination'], from: 'lease_duration_seconds', to: 'lease_duration_secs', divideBy: 1 },
  { at: ['globals', 'coordination'], from: 'renew_deadline_seconds', to: 'renew_deadline_secs', divideBy: 1 },
  { at: ['globals', 'coordination'], from: 'retry_period_seconds', to: 'retry_period_secs', divideBy: 1 },
];

export type Config = Omit<z.infer<ReturnType<typeof buildConfigSchema>>, 'inputs'> & {
  inputs: BuiltInInputs & Record<string, unknown>;
};
export type ForwardOutputConfig = z.infer<typeof forwardOutputSchema>;
export type StdoutOutputConfig = z.infer<typeof stdoutOutputSchema>;
export type OutputConfig = z.infer<typeof outputSchema>;
export type GlobalsConfig = z.infer<typeof globalsSchema>;
export type CoordinationConfig = z.infer<typeof coordinationSchema>;
