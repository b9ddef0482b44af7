/**
 * Event identity for de-duplication (proofpoint-tap.md §2.8).
 *
 * `GUID` is the PPS message id, not the event's: every click on a message shares it, and a message
 * to N recipients gives N events with the same GUID that differ only by `recipient` (and an `id`
 * that is not always there). Elastic lost events keying on GUID (elastic/integrations #9966) and
 * moved to a hash of the raw event. So the key is a hash of the event's canonical content:
 *
 *  - object keys sorted, at every depth;
 *  - arrays whose order the API does not keep (`messageParts`, `threatsInfoMap`, the recipient and
 *    address lists, the routing lists) sorted by their canonical text: rapid7 sorts messageParts
 *    "to ensure that the same hash is generated with each request";
 *  - representations the API varies normalised: a lone string where an array is usual (`recipient`,
 *    `fromAddress`), `"true"`/`"false"` for `completelyRewritten`, the case of enum values
 *    (`MALWARE`/`malware`, `falsePositive`/`falsepositive`).
 *
 * An exact repeat (same event in another window, or the settle re-query) therefore gets the same key
 * and is dropped, while a real change (a new `threatStatus`, another recipient, a campaign linked
 * later) gets a new key and is delivered. The raw JSON is never altered: this only feeds the hash.
 */
import { createHash } from 'node:crypto';

/** Arrays that are sets: their order carries no meaning and changes between responses. */
const UNORDERED = new Set([
  'messageParts',
  'threatsInfoMap',
  'recipient',
  'toAddresses',
  'ccAddresses',
  'fromAddress',
  'replyToAddress',
  'policyRoutes',
  'modulesRun',
]);

/** Fields that hold a list but sometimes arrive as one string. */
const LIST_OR_STRING = new Set(['recipient', 'toAddresses', 'ccAddresses', 'fromAddress', 'replyToAddress']);

/** Enum fields whose case varies (`classification`: MALWARE, malware; `threatStatus`: falsepositive). */
const CASE_INSENSITIVE = new Set(['classification', 'threatStatus', 'threatType', 'sandboxStatus', 'disposition']);

/** Canonical JSON text of a TAP event: equal for the same event however the API wrote it. */
export function canonicalJson(value: unknown): string {
  return canon(value, undefined);
}

function canon(value: unknown, field: string | undefined): string {
  if (value === null || value === undefined) return 'null';
  if (Array.isArray(value)) {
    const items = value.map((v) => canon(v, undefined));
    if (field !== undefined && UNORDERED.has(field)) items.sort();
    return `[${items.join(',')}]`;
  }
  switch (typeof value) {
    case 'object': {
      const obj = value as Record<string, unknown>;
      const keys = Object.keys(obj).sort();
      const parts: string[] = [];
      for (const k of keys) {
        if (obj[k] === undefined) continue;
        parts.push(`${JSON.stringify(k)}:${canon(normalise(k, obj[k]), k)}`);
      }
      return `{${parts.join(',')}}`;
    }
    case 'number':
      return Number.isFinite(value) ? JSON.stringify(value) : 'null';
    default:
      return JSON.stringify(value);
  }
}

function normalise(field: string, v: unknown): unknown {
  if (typeof v === 'string') {
    if (LIST_OR_STRING.has(field)) return [v];
    if (CASE_INSENSITIVE.has(field)) return v.toLowerCase();
    if (field === 'completelyRewritten' && (v === 'true' || v === 'false')) return v === 'true';
  }
  return v;
}

/** The de-dup key: sha256 of the canonical JSON, base64url (43 characters). */
export function contentKey(event: unknown): string {
  return createHash('sha256').update(canonicalJson(event)).digest('base64url');
}
