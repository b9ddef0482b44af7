/**
 * Event identity for de-duplication: the key each event is remembered by in the de-dup state.
 *
 * `GUID` is the PPS message id, not the event's: every click on a message shares it, and a message
 * to N recipients gives N events with the same GUID that differ only by `recipient` (and an `id`
 * that is not always there). Integrations that keyed on GUID lost events that way and
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
 *
 * The walk is recursive, so its depth is bounded: a value nested deeper than MAX_EVENT_DEPTH
 * containers throws NestingTooDeepError instead of overflowing the stack (JSON.parse builds such
 * values without complaint; JSON.stringify and this walk would not survive them).
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

/** Containers an event may nest, itself included; real events nest four or five. */
export const MAX_EVENT_DEPTH = 512;

/** A value nests more containers than MAX_EVENT_DEPTH. */
export class NestingTooDeepError extends Error {
  constructor() {
    super(`nested deeper than ${MAX_EVENT_DEPTH} levels`);
  }
}

/**
 * Canonical JSON text of a TAP event: equal for the same event however the API wrote it. Throws
 * NestingTooDeepError for a value nested deeper than MAX_EVENT_DEPTH.
 */
export function canonicalJson(value: unknown): string {
  // A normalised copy (sorted keys, sorted set-like arrays) serialised once by the native
  // JSON.stringify: several times faster than assembling the text piece by piece. The copy is at
  // most MAX_EVENT_DEPTH deep, which JSON.stringify's own recursion handles.
  return JSON.stringify(canon(value, undefined, 1)) ?? 'null';
}

/** Sorted key lists by the key list as it came: events of one shape share one sort. */
const sortedKeys = new Map<string, string[]>();
const MAX_SHAPES = 1000;
/** Objects with more keys are sorted each time: the cache holds event-sized shapes only. */
const MAX_SHAPE_KEYS = 100;

function keysOf(obj: Record<string, unknown>): string[] {
  const keys = Object.keys(obj);
  if (keys.length > MAX_SHAPE_KEYS) return keys.sort();
  const shape = keys.join('\u0000');
  let sorted = sortedKeys.get(shape);
  if (sorted === undefined) {
    sorted = keys.slice().sort();
    if (sortedKeys.size >= MAX_SHAPES) sortedKeys.clear();
    sortedKeys.set(shape, sorted);
  }
  return sorted;
}

/** `depth`: containers from the event down to `value`, `value` included. */
function canon(value: unknown, field: string | undefined, depth: number): unknown {
  if (value === null || typeof value !== 'object') return value;
  if (depth > MAX_EVENT_DEPTH) throw new NestingTooDeepError();
  if (Array.isArray(value)) {
    const items = new Array<unknown>(value.length);
    let allStrings = true;
    for (let i = 0; i < value.length; i++) {
      const v = canon(value[i], undefined, depth + 1);
      if (typeof v !== 'string') allStrings = false;
      items[i] = v;
    }
    if (field === undefined || !UNORDERED.has(field) || items.length < 2) return items;
    if (allStrings) return (items as string[]).sort();
    return items
      .map((v) => [JSON.stringify(v) ?? 'null', v] as const)
      .sort((a, b) => (a[0] < b[0] ? -1 : a[0] > b[0] ? 1 : 0))
      .map(([, v]) => v);
  }
  const obj = value as Record<string, unknown>;
  const out: Record<string, unknown> = {};
  for (const k of keysOf(obj)) {
    const v = obj[k];
    if (v !== undefined) out[k] = canon(typeof v === 'string' ? normalise(k, v) : v, k, depth + 1);
  }
  return out;
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
