/**
 * A replica's identity in Lease holderIdentity: the pod name (downward API `POD_NAME`) or the
 * hostname, plus a random suffix per process, as client-go's examples do. Two processes never
 * share one, so a restarted container waits for (or is released) its predecessor's Leases
 * instead of assuming it still holds them.
 */
import { randomBytes } from 'node:crypto';
import { hostname } from 'node:os';

export function replicaIdentity(env: NodeJS.ProcessEnv = process.env): string {
  const base = (env.POD_NAME || hostname() || 'proofpoint-sidecar').slice(0, 200);
  return `${base}_${randomBytes(4).toString('hex')}`;
}
