/**
 * The health of every (input, service), as sources report it through `ctx.health`. /readyz and
 * metrics read it; `failed` is fatal for that service until restart.
 */
import type { HealthReporter, ServiceStatus } from '../sources/source.ts';
import { scrub } from './secrets.ts';

export interface ServiceHealth {
  input: string;
  service: string;
  status: ServiceStatus;
  reason?: string;
  since: number;
  /** Set while the pipeline cannot commit this service's cursor (the state refuses writes). */
  commitFailing?: string;
}

export class HealthRegistry {
  readonly #entries = new Map<string, ServiceHealth>();
  /** Commit faults per service, kept apart so a source reporting `ok` does not hide one. */
  readonly #commitFaults = new Map<string, { reason: string; since: number }>();
  readonly #now: () => number;

  constructor(now: () => number = Date.now) {
    this.#now = now;
  }

  reporterFor(input: string): HealthReporter {
    return { set: (service, status, reason) => this.set(input, service, status, reason) };
  }

  /** The reason is served on /readyz and logged: it is scrubbed like a log line. */
  set(input: string, service: string, status: ServiceStatus, reason?: string): void {
    if (reason !== undefined) reason = scrub(reason);
    const key = `${input}::${service}`;
    const prev = this.#entries.get(key);
    if (prev && prev.status === status && prev.reason === reason) return;
    this.#entries.set(key, { input, service, status, reason, since: this.#now() });
  }

  /**
   * Marks (reason) or clears (undefined) a service whose commits fail: it reads `degraded` with
   * that reason, whatever its source reports, until cleared. `failed` and `stopped` stay as they are.
   */
  setCommitFailing(input: string, service: string, reason: string | undefined): void {
    const key = `${input}::${service}`;
    if (reason === undefined) this.#commitFaults.delete(key);
    else if (this.#commitFaults.get(key)?.reason !== reason) this.#commitFaults.set(key, { reason, since: this.#now() });
  }

  get(input: string, service: string): ServiceHealth | undefined {
    const key = `${input}::${service}`;
    return this.#effective(this.#entries.get(key), this.#commitFaults.get(key));
  }

  all(): ServiceHealth[] {
    return [...this.#entries].map(([key, h]) => this.#effective(h, this.#commitFaults.get(key))!);
  }

  #effective(h: ServiceHealth | undefined, fault: { reason: string; since: number } | undefined): ServiceHealth | undefined {
    if (!h || !fault) return h;
    const reason = `commits are failing: ${fault.reason}`;
    if (h.status === 'failed' || h.status === 'stopped') return { ...h, commitFailing: fault.reason };
    return { ...h, status: 'degraded', reason, since: fault.since, commitFailing: fault.reason };
  }

  /** True when at least one service cannot commit. */
  anyCommitFailing(): boolean {
    return this.#commitFaults.size > 0;
  }

  /** True when at least one service is fatally failed. */
  anyFailed(): boolean {
    return this.all().some((h) => h.status === 'failed');
  }
}
