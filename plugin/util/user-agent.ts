/**
 * The User-Agent sources send to the vendor APIs. With coordination on, it names the replica
 * (`proofpoint-sidecar/0.1.0 (replica <identity>)`), so the vendor's logs (and our simulators)
 * tell which replica pulled what.
 */
export const SIDECAR_VERSION = '0.1.0';
export const USER_AGENT = `proofpoint-sidecar/${SIDECAR_VERSION}`;

export function userAgentFor(replica?: string): string {
  return replica ? `${USER_AGENT} (replica ${replica})` : USER_AGENT;
}
