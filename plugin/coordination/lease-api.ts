/**
 * What coordination needs from Kubernetes: get, create and update one coordination.k8s.io/v1
 * Lease by name, with optimistic concurrency. The Role grants exactly these three verbs (a release
 * writes an empty holder, as client-go does; nothing deletes a Lease). kubernetes.ts implements it
 * over node:https; tests drive that implementation against the in-process Lease server
 * (test/helpers/lease-server.ts).
 */
import { ErrorCode, SidecarError } from '../errors.ts';


/** A Lease as coordination reads it (times in ms). */
export interface Lease {
  name: string;
  /** metadata.resourceVersion: an update must carry it (a stale one is answered 409 Conflict). */
  resourceVersion: string;
  /** spec.holderIdentity; undefined when empty (released) or absent. */
  holder?: string;
  leaseDurationSeconds?: number;
  acquireTime?: number;
  renewTime?: number;
  leaseTransitions: number;
  annotations: Record<string, string>;
}

/** What coordination writes into a Lease. */
export interface LeaseSpec {
  /** Undefined releases the Lease. */
  holder?: string;
  leaseDurationSeconds: number;
  acquireTime: number;
  renewTime: number;
  leaseTransitions: number;
  annotations: Record<string, string>;
}

export interface LeaseApi {
  /** Namespace of the Leases, for messages. */
  readonly namespace: string;
  /** The Lease, or undefined when it does not exist (404). */
  get(name: string, signal: AbortSignal): Promise<Lease | undefined>;
  /** Creates the Lease; LeaseConflictError when it exists already (409 AlreadyExists). */
  create(name: string, spec: LeaseSpec, signal: AbortSignal): Promise<Lease>;
  /** Replaces the Lease at `resourceVersion`; LeaseConflictError when it changed since (409 Conflict). */
  update(name: string, resourceVersion: string, spec: LeaseSpec, signal: AbortSignal): Promise<Lease>;
}

/** SIDECAR_ERR_LEASE_CONFLICT: another replica wrote the Lease first; it won. Not a failure. */
export class LeaseConflictError extends SidecarError {
  readonly reason: 'AlreadyExists' | 'Conflict';
  constructor(reason: 'AlreadyExists' | 'Conflict', message: string) {
    super(ErrorCode.LEASE_CONFLICT, message);
    this.reason = reason;
  }
}

/**
 * SIDECAR_ERR_LEASE_API: any other failure: no answer in time, refused (401/403), invalid.
 * `status` 0 when no answer. Retried every retry period.
 */
export class LeaseApiError extends SidecarError {
  readonly status: number;
  constructor(status: number, message: string, cause?: unknown) {
    super(ErrorCode.LEASE_API, message, { cause });
    this.status = status;
  }
}
