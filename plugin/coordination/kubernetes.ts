/**
 * LeaseApi over node:http(s): get, create (POST) and replace (PUT) of coordination.k8s.io/v1
 * Leases, loaded only when coordination is on. A standby replica runs little else, so this is a
 * small client of its own rather than a general Kubernetes library (which costs tens of MiB of RSS).
 *
 * - Credentials: kube-config.ts (the pod's service account, or `kubeconfig`). The token is never
 *   logged: messages are built from the answer's status and Status reason and message only, scrubbed,
 *   and the token is masked in them should a server echo it.
 * - Lease times are MicroTime: the API server parses exactly six fractional digits
 *   (Date#toISOString gives three and is refused with 400).
 * - Every write carries the resourceVersion read; 409 is LeaseConflictError (AlreadyExists on
 *   create, Conflict on replace). A PUT of a Lease that does not exist creates it (201): replace is
 *   only ever sent for a Lease read before.
 * - Each call carries an abort signal, and a request timeout of its own besides, so a partition from
 *   the API server costs a deadline, never a hung renewal.
 * - One keep-alive agent for every request (a renewal or a read per feed every retry period would
 *   otherwise be a TCP and TLS handshake each), rebuilt when the TLS material changes (a rotated
 *   CA or client certificate).
 */
import http from 'node:http';
import https from 'node:https';
import { readFileSync } from 'node:fs';
import path from 'node:path';
import type { CoordinationConfig } from '../config/schema.ts';
import { ErrorCode, SidecarError } from '../errors.ts';
import { vendorText } from '../telemetry/secrets.ts';
import { LeaseApiError, LeaseConflictError, type Lease, type LeaseApi, type LeaseSpec } from './lease-api.ts';
import { SERVICE_ACCOUNT_DIR, inClusterEndpoint, kubeconfigEndpoint, type KubeEndpoint } from './kube-config.ts';

export const SERVICE_ACCOUNT_NAMESPACE_FILE = path.join(SERVICE_ACCOUNT_DIR, 'namespace');

/** A Lease answer is at most 256 KiB of annotations plus its spec; anything far larger is not one. */
const ANSWER_LIMIT = 4 * 1024 * 1024;
const DEFAULT_REQUEST_TIMEOUT_MS = 30_000;

export interface KubernetesLeaseApiOptions {
  userAgent: string;
  env?: NodeJS.ProcessEnv;
  /** Where the pod's namespace is read from when `namespace` is not configured. */
  namespaceFile?: string;
  /** The service account's folder (token, ca.crt, namespace) in a pod. */
  serviceAccountDir?: string;
  /** Bound of one request, whatever its caller's signal; default 30 s. */
  requestTimeoutMs?: number;
}

function configError(message: string): SidecarError {
  return new SidecarError(ErrorCode.CONFIG, message, { exitCode: 2, fatal: true });
}

/** Builds the client from config; a missing namespace or cluster is a config error naming the key. */
export async function createKubernetesLeaseApi(cfg: CoordinationConfig, o: KubernetesLeaseApiOptions): Promise<LeaseApi> {
  const dir = o.serviceAccountDir ?? SERVICE_ACCOUNT_DIR;
  const endpoint = cfg.kubeconfig ? kubeconfigEndpoint(cfg.kubeconfig) : inClusterEndpoint(o.env ?? process.env, dir);
  const namespaceFile = o.namespaceFile ?? (o.serviceAccountDir ? path.join(dir, 'namespace') : SERVICE_ACCOUNT_NAMESPACE_FILE);
  let namespace = cfg.namespace ?? endpoint.namespace;
  if (!namespace) {
    try {
      namespace = readFileSync(namespaceFile, 'utf8').trim();
    } catch {
      // reported below
    }
  }
  if (!namespace) {
    throw configError(
      `globals.coordination.namespace: not set, and the pod's namespace is not readable from ${namespaceFile}; set it to the namespace of the Leases`,
    );
  }
  return new KubernetesLeaseApi(endpoint, namespace, o.userAgent, o.requestTimeoutMs ?? DEFAULT_REQUEST_TIMEOUT_MS);
}

/** MicroTime as the API server parses it: exactly six fractional digits, UTC. */
export function microTime(ms: number): string {
  return new Date(ms).toISOString().replace(/Z$/, '000Z');
}

type Json = Record<string, any>;
type Answer = { status: number; text: string };

function leaseOf(l: Json): Lease {
  const time = (v: unknown): number | undefined => {
    if (typeof v !== 'string') return undefined;
    const t = Date.parse(v);
    return Number.isNaN(t) ? undefined : t;
  };
  const spec: Json = l.spec ?? {};
  const acquireTime = time(spec.acquireTime);
  const renewTime = time(spec.renewTime);
  return {
    name: l.metadata?.name ?? '',
    resourceVersion: l.metadata?.resourceVersion ?? '',
    ...(spec.holderIdentity ? { holder: spec.holderIdentity } : {}),
    ...(typeof spec.leaseDurationSeconds === 'number' ? { leaseDurationSeconds: spec.leaseDurationSeconds } : {}),
    ...(acquireTime !== undefined ? { acquireTime } : {}),
    ...(renewTime !== undefined ? { renewTime } : {}),
    leaseTransitions: spec.leaseTransitions ?? 0,
    annotations: { ...(l.metadata?.annotations ?? {}) },
  };
}

export class KubernetesLeaseApi implements LeaseApi {
  readonly namespace: string;
  readonly #endpoint: KubeEndpoint;
  readonly #userAgent: string;
  readonly #timeoutMs: number;
  #agent?: { tls: (Buffer | undefined)[]; agent: http.Agent };

  constructor(endpoint: KubeEndpoint, namespace: string, userAgent: string, requestTimeoutMs = DEFAULT_REQUEST_TIMEOUT_MS) {
    this.#endpoint = endpoint;
    this.namespace = namespace;
    this.#userAgent = userAgent;
    this.#timeoutMs = requestTimeoutMs;
  }

  async get(name: string, signal: AbortSignal): Promise<Lease | undefined> {
    const a = await this.#call('GET', name, undefined, signal, 'read');
    if (a.status === 404) return undefined;
    return this.#lease(a, 'read', name);
  }

  async create(name: string, spec: LeaseSpec, signal: AbortSignal): Promise<Lease> {
    return this.#lease(await this.#call('POST', undefined, this.#body(name, undefined, spec), signal, 'create', name), 'create', name);
  }

  async update(name: string, resourceVersion: string, spec: LeaseSpec, signal: AbortSignal): Promise<Lease> {
    return this.#lease(await this.#call('PUT', name, this.#body(name, resourceVersion, spec), signal, 'update'), 'update', name);
  }

  /** Closes the kept-alive connections. */
  close(): void {
    this.#agent?.agent.destroy();
    this.#agent = undefined;
  }

  #body(name: string, resourceVersion: string | undefined, spec: LeaseSpec): string {
    return JSON.stringify({
      apiVersion: 'coordination.k8s.io/v1',
      kind: 'Lease',
      metadata: {
        name,
        namespace: this.namespace,
        ...(resourceVersion !== undefined ? { resourceVersion } : {}),
        ...(Object.keys(spec.annotations).length ? { annotations: spec.annotations } : {}),
      },
      spec: {
        ...(spec.holder !== undefined ? { holderIdentity: spec.holder } : {}),
        leaseDurationSeconds: spec.leaseDurationSeconds,
        acquireTime: microTime(spec.acquireTime),
        renewTime: microTime(spec.renewTime),
        leaseTransitions: spec.leaseTransitions,
      },
    });
  }

  #lease(a: Answer, what: string, name: string): Lease {
    if (a.status < 200 || a.status > 299) throw this.#refusal(a, what, name);
    try {
      return leaseOf(JSON.parse(a.text) as Json);
    } catch {
      throw new LeaseApiError(a.status, `Kubernetes answered ${a.status} to ${what} of Lease ${this.namespace}/${name} with a body that is not a Lease`);
    }
  }

  /** One request; failures without an answer become LeaseApiError (status 0). */
  async #call(method: string, name: string | undefined, body: string | undefined, signal: AbortSignal, what: string, named = name!): Promise<Answer> {
    const base = this.#endpoint.server.pathname.replace(/\/$/, '');
    const leases = `${base}/apis/coordination.k8s.io/v1/namespaces/${encodeURIComponent(this.namespace)}/leases`;
    const url = name === undefined ? leases : `${leases}/${encodeURIComponent(name)}`;
    const bounded = AbortSignal.any([signal, AbortSignal.timeout(this.#timeoutMs)]);
    try {
      return await this.#send(method, url, body, bounded);
    } catch (err) {
      if (signal.aborted) throw signal.reason instanceof Error ? signal.reason : new LeaseApiError(0, `no answer to ${what} of Lease ${named}`);
      if (bounded.aborted) throw new LeaseApiError(0, `no answer to ${what} of Lease ${this.namespace}/${named} within ${this.#timeoutMs} ms`);
      throw new LeaseApiError(0, this.#masked(`cannot ${what} Lease ${this.namespace}/${named}: ${(err as Error).message}`));
    }
  }

  #send(method: string, url: string, body: string | undefined, signal: AbortSignal): Promise<Answer> {
    const server = this.#endpoint.server;
    const headers: Record<string, string> = { accept: 'application/json', 'user-agent': this.#userAgent };
    const token = this.#endpoint.token?.read().toString('utf8').trim();
    if (token) headers.authorization = `Bearer ${token}`;
    if (body !== undefined) {
      headers['content-type'] = 'application/json';
      headers['content-length'] = String(Buffer.byteLength(body));
    }
    const agent = this.#agentNow();
    const request = server.protocol === 'https:' ? https.request : http.request;
    return new Promise<Answer>((resolve, reject) => {
      signal.throwIfAborted();
      const req = request(
        { hostname: server.hostname.replace(/^\[|\]$/g, ''), port: server.port || undefined, path: url, method, headers, agent },
        (res) => {
          const chunks: Buffer[] = [];
          let size = 0;
          res.on('data', (chunk: Buffer) => {
            size += chunk.length;
            if (size > ANSWER_LIMIT) req.destroy(new Error(`answer larger than ${ANSWER_LIMIT} bytes`));
            else chunks.push(chunk);
          });
          res.on('end', () => resolve({ status: res.statusCode ?? 0, text: Buffer.concat(chunks).toString('utf8') }));
          res.on('error', reject);
        },
      );
      const abort = () => req.destroy(signal.reason instanceof Error ? signal.reason : new Error('aborted'));
      signal.addEventListener('abort', abort, { once: true });
      req.on('close', () => signal.removeEventListener('abort', abort));
      req.on('error', reject);
      req.end(body);
    });
  }

  /** The keep-alive agent for the TLS material of now. */
  #agentNow(): http.Agent {
    const e = this.#endpoint;
    const tls = [e.ca?.read(), e.cert?.read(), e.key?.read()];
    if (!this.#agent || this.#agent.tls.some((b, i) => b !== tls[i])) {
      this.#agent?.agent.destroy();
      const [ca, cert, key] = tls;
      const agent =
        e.server.protocol === 'https:'
          ? new https.Agent({ keepAlive: true, ca, cert, key, rejectUnauthorized: !e.insecure, ...(e.servername ? { servername: e.servername } : {}) })
          : new http.Agent({ keepAlive: true });
      this.#agent = { tls, agent };
    }
    return this.#agent.agent;
  }

  /** Maps a non-2xx answer to ours; the message quotes the Status, never the request. */
  #refusal(a: Answer, what: string, name: string): Error {
    let reason: string | undefined;
    let message: string | undefined;
    try {
      const parsed = JSON.parse(a.text) as { reason?: unknown; message?: unknown };
      reason = typeof parsed?.reason === 'string' ? this.#masked(vendorText(parsed.reason)) : undefined;
      message = typeof parsed?.message === 'string' ? this.#masked(vendorText(parsed.message)) : undefined;
    } catch {
      // not a Status
    }
    const { status } = a;
    if (status === 409 && (reason === 'AlreadyExists' || reason === 'Conflict')) return new LeaseConflictError(reason, message ?? reason);
    if (status === 409) return new LeaseConflictError(what === 'create' ? 'AlreadyExists' : 'Conflict', message ?? 'conflict');
    const hint =
      status === 401
        ? ' (the service account token was not accepted)'
        : status === 403
          ? ` (the ServiceAccount needs get, create and update on leases.coordination.k8s.io in namespace ${this.namespace}: conf/kubernetes/daemonset/rbac.yaml)`
          : '';
    return new LeaseApiError(
      status,
      `Kubernetes answered ${status}${reason ? ` ${reason}` : ''} to ${what} of Lease ${this.namespace}/${name}: ${message ?? (status === 401 ? 'Unauthorized' : 'no message')}${hint}`,
    );
  }

  /** The token, should an answer or a network error echo it, shows as ***. */
  #masked(text: string): string {
    let token: string | undefined;
    try {
      token = this.#endpoint.token?.read().toString('utf8').trim();
    } catch {
      return text;
    }
    return token ? text.split(token).join('***') : text;
  }
}
