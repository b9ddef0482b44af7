/**
 * LeaseApi over @kubernetes/client-node (the official client), loaded only when coordination is on.
 *
 * - Credentials: the pod's service account (in-cluster) by default, or `kubeconfig`. The token is
 *   never logged: messages are built from the answer's status and Status.message only.
 * - Lease times are MicroTime: the API server parses exactly six fractional digits, so they are
 *   written as V1MicroTime (Date#toISOString gives three and is refused with 400).
 * - Each call carries an abort signal (the client's per-request middleware), so a partition from
 *   the API server costs a deadline, never a hung renewal.
 * - A kubeconfig with an http:// server needs `insecure-skip-tls-verify: true` (the client refuses
 *   plain HTTP otherwise); a 401 answer has no body in this client.
 * - The client builds a new agent, hence a new TCP and TLS connection, for every request. With a
 *   renewal or a read per feed every retry period that is a handshake every few hundred
 *   milliseconds per replica, so requests go through one keep-alive agent with the same TLS
 *   options, rebuilt when those change (a rotated client certificate).
 * - @kubernetes/client-node 2.x needs Node 22 (undici 8); the 1.x line runs on Node 20.
 */
import http from 'node:http';
import https from 'node:https';
import { readFileSync } from 'node:fs';
import type { CoordinationConfig } from '../config/schema.ts';
import { ErrorCode, SidecarError } from '../errors.ts';
import { vendorText } from '../telemetry/secrets.ts';
import { LeaseApiError, LeaseConflictError, type Lease, type LeaseApi, type LeaseSpec } from './lease-api.ts';

type K8s = typeof import('@kubernetes/client-node');
type V1Lease = import('@kubernetes/client-node').V1Lease;

export const SERVICE_ACCOUNT_NAMESPACE_FILE = '/var/run/secrets/kubernetes.io/serviceaccount/namespace';

export interface KubernetesLeaseApiOptions {
  userAgent: string;
  env?: NodeJS.ProcessEnv;
  /** Where the pod's namespace is read from when `namespace` is not configured. */
  namespaceFile?: string;
}

function configError(message: string): SidecarError {
  return new SidecarError(ErrorCode.CONFIG, message, { exitCode: 2, fatal: true });
}

/** Builds the client from config; a missing namespace or cluster is a config error naming the key. */
export async function createKubernetesLeaseApi(cfg: CoordinationConfig, o: KubernetesLeaseApiOptions): Promise<LeaseApi> {
  const k8s: K8s = await import('@kubernetes/client-node');
  const env = o.env ?? process.env;
  const kc = new k8s.KubeConfig();
  if (cfg.kubeconfig) {
    try {
      kc.loadFromFile(cfg.kubeconfig);
    } catch (err) {
      throw configError(`globals.coordination.kubeconfig: cannot read "${cfg.kubeconfig}": ${(err as Error).message}`);
    }
    if (!kc.getCurrentCluster()) throw configError(`globals.coordination.kubeconfig: "${cfg.kubeconfig}" names no current cluster`);
  } else {
    if (!env.KUBERNETES_SERVICE_HOST || !env.KUBERNETES_SERVICE_PORT) {
      throw configError(
        'globals.coordination: not running in a Kubernetes pod (KUBERNETES_SERVICE_HOST and KUBERNETES_SERVICE_PORT are not set); set globals.coordination.kubeconfig, or remove globals.coordination to pull every feed here',
      );
    }
    kc.loadFromCluster();
  }
  let namespace = cfg.namespace ?? (cfg.kubeconfig ? kc.getContextObject(kc.getCurrentContext())?.namespace : undefined);
  if (!namespace) {
    try {
      namespace = readFileSync(o.namespaceFile ?? SERVICE_ACCOUNT_NAMESPACE_FILE, 'utf8').trim();
    } catch {
      // reported below
    }
  }
  if (!namespace) {
    throw configError(
      `globals.coordination.namespace: not set, and the pod's namespace is not readable from ${o.namespaceFile ?? SERVICE_ACCOUNT_NAMESPACE_FILE}; set it to the namespace of the Leases`,
    );
  }
  return new KubernetesLeaseApi(k8s, kc.makeApiClient(k8s.CoordinationV1Api), namespace, o.userAgent);
}

export class KubernetesLeaseApi implements LeaseApi {
  readonly namespace: string;
  readonly #k8s: K8s;
  readonly #api: import('@kubernetes/client-node').CoordinationV1Api;
  readonly #userAgent: string;
  #agent?: { key: string; agent: http.Agent };

  constructor(k8s: K8s, api: import('@kubernetes/client-node').CoordinationV1Api, namespace: string, userAgent: string) {
    this.#k8s = k8s;
    this.#api = api;
    this.namespace = namespace;
    this.#userAgent = userAgent;
  }

  async get(name: string, signal: AbortSignal): Promise<Lease | undefined> {
    try {
      return this.#read(await this.#api.readNamespacedLease({ name, namespace: this.namespace }, this.#options(signal)));
    } catch (err) {
      if (this.#status(err) === 404) return undefined;
      throw this.#error(err, 'read', name, signal);
    }
  }

  async create(name: string, spec: LeaseSpec, signal: AbortSignal): Promise<Lease> {
    try {
      return this.#read(await this.#api.createNamespacedLease({ namespace: this.namespace, body: this.#body(name, undefined, spec) }, this.#options(signal)));
    } catch (err) {
      throw this.#error(err, 'create', name, signal);
    }
  }

  async update(name: string, resourceVersion: string, spec: LeaseSpec, signal: AbortSignal): Promise<Lease> {
    try {
      return this.#read(
        await this.#api.replaceNamespacedLease({ name, namespace: this.namespace, body: this.#body(name, resourceVersion, spec) }, this.#options(signal)),
      );
    } catch (err) {
      throw this.#error(err, 'update', name, signal);
    }
  }

  /** Per-request options: the abort signal and our User-Agent, added to the client's middleware. */
  #options(signal: AbortSignal): import('@kubernetes/client-node').ConfigurationOptions {
    const userAgent = this.#userAgent;
    const { Observable } = this.#k8s;
    // The object-parameter API hands these to its observable layer as they are: they must return
    // the library's Observable (a Promise fails with "toPromise is not a function").
    return {
      middleware: [
        {
          pre: (ctx) => {
            ctx.setSignal(signal);
            ctx.setHeaderParam('User-Agent', userAgent);
            const agent = this.#keepAlive(ctx.getAgent());
            if (agent) ctx.setAgent(agent);
            return new Observable(Promise.resolve(ctx));
          },
          post: (res) => new Observable(Promise.resolve(res)),
        },
      ],
      middlewareMergeStrategy: 'append',
    };
  }

  /**
   * A keep-alive agent with the TLS options of the one the client made for this request (a plain
   * http or https agent; proxy agents are left alone).
   */
  #keepAlive(fresh: http.Agent | https.Agent | undefined): http.Agent | undefined {
    if (!fresh || (fresh.constructor !== http.Agent && fresh.constructor !== https.Agent)) return undefined;
    const o = (fresh as http.Agent & { options: Record<string, unknown> }).options;
    const tls = ['ca', 'cert', 'key', 'pfx', 'passphrase', 'rejectUnauthorized', 'servername'].map((k) => String(o[k] ?? ''));
    const key = `${fresh.constructor === https.Agent ? 'https' : 'http'}|${tls.join('|')}`;
    if (this.#agent?.key !== key) {
      this.#agent?.agent.destroy();
      const options = { ...o, keepAlive: true };
      this.#agent = { key, agent: fresh.constructor === https.Agent ? new https.Agent(options) : new http.Agent(options) };
    }
    fresh.destroy();
    return this.#agent.agent;
  }

  #body(name: string, resourceVersion: string | undefined, spec: LeaseSpec): V1Lease {
    const micro = (ms: number) => new this.#k8s.V1MicroTime(ms);
    return {
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
        acquireTime: micro(spec.acquireTime),
        renewTime: micro(spec.renewTime),
        leaseTransitions: spec.leaseTransitions,
      },
    };
  }

  #read(l: V1Lease): Lease {
    const time = (v: unknown): number | undefined => {
      if (v instanceof Date) return v.getTime();
      if (typeof v === 'string') {
        const t = Date.parse(v);
        return Number.isNaN(t) ? undefined : t;
      }
      return undefined;
    };
    const holder = l.spec?.holderIdentity;
    return {
      name: l.metadata?.name ?? '',
      resourceVersion: l.metadata?.resourceVersion ?? '',
      ...(holder ? { holder } : {}),
      ...(l.spec?.leaseDurationSeconds !== undefined ? { leaseDurationSeconds: l.spec.leaseDurationSeconds } : {}),
      ...(time(l.spec?.acquireTime) !== undefined ? { acquireTime: time(l.spec?.acquireTime) } : {}),
      ...(time(l.spec?.renewTime) !== undefined ? { renewTime: time(l.spec?.renewTime) } : {}),
      leaseTransitions: l.spec?.leaseTransitions ?? 0,
      annotations: { ...(l.metadata?.annotations ?? {}) },
    };
  }

  #status(err: unknown): number | undefined {
    return err instanceof this.#k8s.ApiException ? err.code : undefined;
  }

  /** Maps the client's errors to ours; the message quotes the Status, never the request. */
  #error(err: unknown, what: string, name: string, signal: AbortSignal): Error {
    if (signal.aborted) return signal.reason instanceof Error ? signal.reason : new LeaseApiError(0, `no answer to ${what} of Lease ${name}`);
    const status = this.#status(err);
    if (status === undefined) return new LeaseApiError(0, `cannot ${what} Lease ${this.namespace}/${name}: ${(err as Error).message}`);
    let reason: string | undefined;
    let message: string | undefined;
    try {
      const body = (err as { body?: unknown }).body;
      const parsed = (typeof body === 'string' ? JSON.parse(body) : body) as { reason?: string; message?: string };
      reason = typeof parsed?.reason === 'string' ? vendorText(parsed.reason) : undefined;
      message = typeof parsed?.message === 'string' ? vendorText(parsed.message) : undefined;
    } catch {
      // not a Status
    }
    if (status === 409 && (reason === 'AlreadyExists' || reason === 'Conflict')) return new LeaseConflictError(reason, message ?? reason);
    if (status === 409) return new LeaseConflictError(what === 'create' ? 'AlreadyExists' : 'Conflict', message ?? 'conflict');
    const hint =
      status === 401
        ? ' (the service account token was not accepted)'
        : status === 403
          ? ` (the ServiceAccount needs get, create and update on leases.coordination.k8s.io in namespace ${this.namespace}: conf/kubernetes/daemonset/rbac.yaml)`
          : '';
    return new LeaseApiError(status, `Kubernetes answered ${status}${reason ? ` ${reason}` : ''} to ${what} of Lease ${this.namespace}/${name}: ${message ?? (status === 401 ? 'Unauthorized' : 'no message')}${hint}`);
  }
}
