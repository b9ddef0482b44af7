/**
 * The state that travels with a feed's Lease: on every renewal the holder writes what it
 * has committed, so the replica that takes the feed over starts from there instead of from its own
 * older cursor or the start time, and keeps the TAP request budget.
 *
 * One annotation, `proofpoint-sidecar/state`, holds compact JSON:
 *   { v: 1, at, cursors: { <service>: <cursor> }, start_times: { <service>: <start time|null> },
 *     requests?: { <pool>: "<first ms>,<delta>,<delta>..." (base 36) }, released? }
 * Request times are exact (ms), so a replica that inherits its own earlier requests back counts
 * each once. 1,800 requests per pool take about 9 KB, far below the 256 KiB annotation limit.
 *
 * `keys` carries the de-dup keys committed recently (the span a takeover re-reads: TAP's settle
 * re-query, PoD's hour-rounded archive replay) as 11-character fingerprints (66 bits of sha256),
 * so the next holder drops what was delivered already; without them a takeover would deliver that
 * whole span again. Two distinct events share a fingerprint with a chance of about 1e-11 per
 * takeover at 10,000 carried keys and 100,000 replayed events. The fingerprint belongs to the
 * de-dup decision (pipeline/dedupe.ts), which reads the keys this file decodes.
 */
import { FINGERPRINT_CHARS } from '../pipeline/dedupe.ts';

export const STATE_ANNOTATION = 'proofpoint-sidecar/state';

export interface CarriedState {
  v: 1;
  /** When the holder wrote it (its clock, ms). */
  at: number;
  /** Committed cursor per service of the feed. */
  cursors: Record<string, unknown>;
  /** The start time each service's cursor was collected under (null: none configured). */
  start_times: Record<string, string | null>;
  /** Request times per rate-limit pool within the budget window (TAP). */
  requests?: Record<string, number[]>;
  /** Fingerprints of recently committed de-dup keys, per service. */
  keys?: Record<string, string[]>;
  /** Written by a holder that released the Lease after committing everything it sent. */
  released?: boolean;
}

export function encodeTimes(times: readonly number[]): string {
  const sorted = [...times].sort((a, b) => a - b);
  const out: string[] = [];
  let prev = 0;
  for (const t of sorted) {
    out.push(Math.round(t - prev).toString(36));
    prev = Math.round(t);
  }
  return out.join(',');
}

export function decodeTimes(text: string): number[] | undefined {
  if (text === '') return [];
  const out: number[] = [];
  let prev = 0;
  for (const part of text.split(',')) {
    if (!/^[0-9a-z]+$/.test(part)) return undefined;
    prev += parseInt(part, 36);
    out.push(prev);
  }
  return out;
}

export function encodeState(s: CarriedState): string {
  const requests = s.requests ? Object.fromEntries(Object.entries(s.requests).map(([pool, t]) => [pool, encodeTimes(t)])) : undefined;
  const keys = s.keys ? Object.fromEntries(Object.entries(s.keys).map(([svc, fps]) => [svc, fps.join('')])) : undefined;
  return JSON.stringify({ ...s, ...(requests ? { requests } : {}), ...(keys ? { keys } : {}) });
}

/** Reads the annotation; a missing one is no state, an unreadable one is reported, never trusted. */
export function decodeState(annotations: Record<string, string>): { state?: CarriedState; problem?: string } {
  const text = annotations[STATE_ANNOTATION];
  if (text === undefined) return {};
  let raw: unknown;
  try {
    raw = JSON.parse(text);
  } catch {
    return { problem: `annotation ${STATE_ANNOTATION} is not JSON` };
  }
  const o = raw as Record<string, unknown>;
  if (typeof o !== 'object' || o === null || o.v !== 1) return { problem: `annotation ${STATE_ANNOTATION} has an unknown layout` };
  if (typeof o.cursors !== 'object' || o.cursors === null || typeof o.at !== 'number') {
    return { problem: `annotation ${STATE_ANNOTATION} lacks cursors or at` };
  }
  let requests: Record<string, number[]> | undefined;
  if (o.requests !== undefined) {
    if (typeof o.requests !== 'object' || o.requests === null) return { problem: `annotation ${STATE_ANNOTATION}: requests is not an object` };
    requests = {};
    for (const [pool, enc] of Object.entries(o.requests as Record<string, unknown>)) {
      const times = typeof enc === 'string' ? decodeTimes(enc) : undefined;
      if (!times) return { problem: `annotation ${STATE_ANNOTATION}: request times of pool ${pool} are unreadable` };
      requests[pool] = times;
    }
  }
  let keys: Record<string, string[]> | undefined;
  if (o.keys !== undefined) {
    if (typeof o.keys !== 'object' || o.keys === null) return { problem: `annotation ${STATE_ANNOTATION}: keys is not an object` };
    keys = {};
    for (const [svc, enc] of Object.entries(o.keys as Record<string, unknown>)) {
      if (typeof enc !== 'string' || enc.length % FINGERPRINT_CHARS !== 0 || !/^[A-Za-z0-9_-]*$/.test(enc)) {
        return { problem: `annotation ${STATE_ANNOTATION}: de-dup fingerprints of ${svc} are unreadable` };
      }
      const fps: string[] = [];
      for (let i = 0; i < enc.length; i += FINGERPRINT_CHARS) fps.push(enc.slice(i, i + FINGERPRINT_CHARS));
      keys[svc] = fps;
    }
  }
  return {
    state: {
      v: 1,
      at: o.at,
      cursors: o.cursors as Record<string, unknown>,
      start_times: (typeof o.start_times === 'object' && o.start_times !== null ? o.start_times : {}) as Record<string, string | null>,
      ...(requests ? { requests } : {}),
      ...(keys ? { keys } : {}),
      ...(o.released === true ? { released: true } : {}),
    },
  };
}
