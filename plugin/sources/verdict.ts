/** How `check --online` words a failed probe (sources' probes and cli/online.ts alike). */
import { CredentialsError, SidecarError } from '../errors.ts';

export function describeProbeError(err: unknown): string {
  if (err instanceof CredentialsError) return `credentials refused (error ${err.code}): ${err.message}`;
  if (err instanceof SidecarError) return `error ${err.code}: ${err.message}`;
  return `unexpected error: ${(err as Error).message}`;
}
