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
}

export class HealthRegistry {
  readonly #entries = new Map<string, ServiceHealth>();
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

  get(input: string, service: string): ServiceHealth | undefined {
    return this.#entries.get(`${input}::${service}`);
  }

  all(): ServiceHealth[] {
    return [...this.#entries.values()];
  }

  /** True when at least one service is fatally failed. */
  anyFailed(): boolean {
    return this.all().some((h) => h.status === 'failed');
  }
}
