/**
 * TAP events in the shapes of ../shared/fixtures/tap/ (field names, order, nulls and types as the
 * Elastic samples have them), generated on demand and deterministically from the scenario's seed.
 *
 * Time is cut into minutes. Minute k of a service holds `rate·(k+1)/60 − rate·k/60` original items
 * (rounded down), each a pure function of (seed, service, k, index): a click with maybe more clicks
 * on the same message (same GUID), or a message with maybe several recipients (one event each,
 * same GUID, sometimes no `id`). Repeats of earlier items (unchanged, or with a new threat status)
 * are drawn into minute k the same way, so nothing is stored and any window can be served or
 * checked again at any time.
 *
 * Each event has an index time (what TAP files it under; a window [start, end) returns the events
 * whose index time is in it) and a time it becomes visible: later than the index time for
 * late-indexed events, so they show only in a later query of an earlier window.
 */
import type { TapServiceName } from '../../sources/tap/config.ts';
import { Rng } from './random.ts';
import type { TapScenario } from './scenario.ts';

export const MINUTE_MS = 60_000;

export interface SimEvent {
  service: TapServiceName;
  /** The time TAP files the event under (windows select on it). */
  indexTime: number;
  /** The first time a query can return it (late indexing). */
  visibleAt: number;
  body: Record<string, unknown>;
  /** Lower-case threat statuses (clicks: one; messages: one per threatsInfoMap entry). */
  statuses: string[];
  threatTypes: string[];
  /** What the event is, independent of how it is written: see logicalKey(). */
  key: string;
  repeat?: 'exact' | 'status';
}

const SERVICE_INDEX: Record<TapServiceName, number> = {
  clicksBlocked: 0,
  clicksPermitted: 1,
  messagesBlocked: 2,
  messagesDelivered: 3,
};

const isClicks = (s: TapServiceName) => s === 'clicksBlocked' || s === 'clicksPermitted';

/**
 * The identity the simulator gives an event version: service, `id`, `GUID`, recipients and threat
 * statuses. Unique per generated event version, so tests can tell "delivered once" from "delivered
 * twice" or "lost" without relying on the collector's own hashing.
 */
export function logicalKey(service: TapServiceName, event: Record<string, unknown> | string): string {
  const body = typeof event === 'string' ? (JSON.parse(event) as Record<string, unknown>) : event;
  const r = body['recipient'];
  const recipients = (typeof r === 'string' ? [r] : Array.isArray(r) ? r.map(String) : []).slice().sort();
  return [service, String(body['id'] ?? ''), String(body['GUID'] ?? ''), recipients.join(','), statusesOf(service, body).join(',')].join('|');
}

function statusesOf(service: TapServiceName, body: Record<string, unknown>): string[] {
  if (isClicks(service)) return [String(body['threatStatus'] ?? '').toLowerCase()];
  const map = body['threatsInfoMap'];
  if (!Array.isArray(map)) return [];
  return map.map((t) => String((t as Record<string, unknown>)['threatStatus'] ?? '').toLowerCase()).sort();
}

function typesOf(service: TapServiceName, body: Record<string, unknown>): string[] {
  if (isClicks(service)) return ['url'];
  const map = body['threatsInfoMap'];
  if (!Array.isArray(map)) return [];
  return map.map((t) => String((t as Record<string, unknown>)['threatType'] ?? ''));
}

/** How many of something fall in minute k at `perHour`, spread evenly and exactly over the hours. */
export function countInMinute(perHour: number, k: number): number {
  if (perHour <= 0) return 0;
  return Math.floor((perHour * (k + 1)) / 60) - Math.floor((perHour * k) / 60);
}

/** The minute holding original item number g (counted from the epoch) at `perHour`. */
function minuteOfItem(perHour: number, g: number): number {
  let m = Math.floor((60 * g) / perHour);
  while (m > 0 && Math.floor((perHour * m) / 60) > g) m--;
  while (Math.floor((perHour * (m + 1)) / 60) <= g) m++;
  return m;
}

const iso = (ms: number) => new Date(ms).toISOString();

const CLASSIFICATIONS = ['phish', 'malware', 'spam', 'impostor'];
const AGENTS = [
  'Mozilla/5.0 (Windows NT 10.0; Win64; x64) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/99.0.4844.51 Safari/537.36 Edg/99.0.1150.39',
  'Mozilla/5.0 (iPhone; CPU iPhone OS 14_6 like Mac OS X) AppleWebKit/605.1.15 (KHTML, like Gecko) GSA/199.0.427504638 Mobile/15E148 Safari/604.1',
  'Mozilla/5.0 (Linux; Android 12; SM-N976U) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/99.0.4844.88 Mobile Safari/537.36',
];
const SUBJECTS = ['Invoice overdue', 'Re: Delayed Mail (still being retried)', 'Your parcel is waiting', 'Password expiry notice', 'Quarterly report'];
const MODULES = ['av', 'zerohour', 'spf', 'dkimv', 'spam', 'dmarc', 'pdr', 'urldefense'];

export class TapEventGenerator {
  readonly #sc: TapScenario;

  constructor(scenario: TapScenario) {
    this.#sc = scenario;
  }

  /** Every event (originals and repeats) with index time in [from, to), in no particular order. */
  eventsIn(service: TapServiceName, from: number, to: number): SimEvent[] {
    const out: SimEvent[] = [];
    for (let k = Math.floor(from / MINUTE_MS); k * MINUTE_MS < to; k++) {
      for (const e of this.minute(service, k)) if (e.indexTime >= from && e.indexTime < to) out.push(e);
    }
    return out;
  }

  /** The events of minute k: its original items, then the repeats drawn into it. */
  minute(service: TapServiceName, k: number): SimEvent[] {
    const { ratesPerHour, quirks } = this.#sc;
    const rate = ratesPerHour[service];
    const out: SimEvent[] = [];
    const n = countInMinute(rate, k);
    for (let i = 0; i < n; i++) out.push(...this.#item(service, k, i));
    const repeatShare = quirks.exactRepeats + quirks.statusChanges;
    const m = countInMinute(rate * repeatShare, k);
    for (let j = 0; j < m; j++) {
      const e = this.#repeat(service, k, j, repeatShare);
      if (e) out.push(e);
    }
    return out;
  }

  /** One original item: one event, or several sharing a GUID. */
  #item(service: TapServiceName, k: number, i: number): SimEvent[] {
    const q = this.#sc.quirks;
    const rng = Rng.of(this.#sc.seed, SERVICE_INDEX[service], k, i);
    const indexTime = k * MINUTE_MS + rng.int(0, MINUTE_MS - 1000);
    const late = rng.chance(q.lateIndexed) ? rng.int(q.lateMinMs, q.lateMaxMs) : 0;
    const bodies = isClicks(service) ? this.#clicks(service, rng, indexTime) : this.#messages(service, rng, indexTime);
    return bodies.map((body, j) => this.#event(service, body, indexTime + j, late));
  }

  #event(service: TapServiceName, body: Record<string, unknown>, indexTime: number, late: number, repeat?: 'exact' | 'status'): SimEvent {
    return {
      service,
      indexTime,
      visibleAt: indexTime + late,
      body,
      statuses: statusesOf(service, body),
      threatTypes: typesOf(service, body),
      key: logicalKey(service, body),
      ...(repeat ? { repeat } : {}),
    };
  }

  /** An earlier item coming back in minute k: unchanged, or with a new threat status. */
  #repeat(service: TapServiceName, k: number, j: number, share: number): SimEvent | undefined {
    const q = this.#sc.quirks;
    const rng = Rng.of(this.#sc.seed, SERVICE_INDEX[service], 'repeat', k, j);
    const exact = rng.next() < q.exactRepeats / share;
    // Pick an earlier original item by its global index (items before minute k: rate·k/60), so
    // a low rate with mostly empty minutes still has repeats.
    const rate = this.#sc.ratesPerHour[service];
    const reach = Math.floor((rate * q.repeatMaxAgeMs) / 3600_000);
    if (reach < 1) return undefined;
    const g = Math.floor((rate * k) / 60) - rng.int(1, reach);
    if (g < 0) return undefined;
    const src = minuteOfItem(rate, g);
    const group = this.#item(service, src, g - Math.floor((rate * src) / 60));
    const orig = group[rng.int(0, group.length - 1)]!;
    let body = structuredClone(orig.body);
    if (!exact) {
      const from = orig.statuses[0] ?? 'active';
      const to = rng.chance(0.25) ? 'falsePositive' : from === 'active' ? 'cleared' : 'active';
      if (isClicks(service)) body['threatStatus'] = to;
      else if (Array.isArray(body['threatsInfoMap'])) {
        for (const t of body['threatsInfoMap'] as Array<Record<string, unknown>>) t['threatStatus'] = to;
      }
    }
    if (q.reorderRepeats) body = reorder(body, rng);
    const indexTime = k * MINUTE_MS + rng.int(0, MINUTE_MS - 1000);
    const late = rng.chance(q.lateIndexed) ? rng.int(q.lateMinMs, q.lateMaxMs) : 0;
    return this.#event(service, body, indexTime, late, exact ? 'exact' : 'status');
  }

  #clicks(service: TapServiceName, rng: Rng, indexTime: number): Array<Record<string, unknown>> {
    const q = this.#sc.quirks;
    const guid = rng.guid();
    const messageID = `<${rng.hex(12)}.${rng.int(10000, 99999)}.mail@example.com>`;
    const sender = `${rng.hex(32)}@example.net`;
    const threatID = rng.hex(64);
    const classification = rng.pick(CLASSIFICATIONS);
    const threatTime = iso(indexTime - rng.int(60_000, 3 * 24 * 3600_000));
    const campaignId = rng.chance(0.5) ? rng.uuid() : null;
    const url = `https://${rng.hex(8)}.example.org/${rng.hex(10)}?q=${rng.int(0, 999)}`;
    const extra = rng.chance(q.sharedGuidClicks) ? rng.int(1, 3) : 0;
    const out: Array<Record<string, unknown>> = [];
    for (let j = 0; j <= extra; j++) {
      const recipientAddr = `${rng.hex(16)}@example.com`;
      out.push({
        url,
        classification: rng.chance(q.typeVariants) ? classification.toUpperCase() : classification,
        clickTime: iso(indexTime - rng.int(1000, 5 * 60_000)),
        threatTime,
        userAgent: rng.pick(AGENTS),
        campaignId,
        id: rng.uuid(),
        clickIP: `89.160.${rng.int(0, 255)}.${rng.int(1, 254)}`,
        sender,
        recipient: rng.chance(q.typeVariants) ? [recipientAddr] : recipientAddr,
        senderIP: `81.2.${rng.int(0, 255)}.${rng.int(1, 254)}`,
        GUID: guid,
        threatID,
        threatURL: `https://threatinsight.proofpoint.com/a2abc123-1234-1234-1234-babcded1234/threat/email/${threatID}`,
        threatStatus: rng.chance(0.1) ? 'cleared' : 'active',
        messageID,
      });
      if (service === 'clicksBlocked' && rng.chance(0.02)) out[out.length - 1]!['campaignId'] = null;
    }
    return out;
  }

  #messages(service: TapServiceName, rng: Rng, indexTime: number): Array<Record<string, unknown>> {
    const q = this.#sc.quirks;
    const blocked = service === 'messagesBlocked';
    const nulls = rng.chance(q.nulls);
    const variant = rng.chance(q.typeVariants);
    const guid = rng.guid();
    const messageTime = iso(indexTime - rng.int(1000, 5 * 60_000));
    const threats = Array.from({ length: rng.int(1, 3) }, () => {
      const threatID = rng.hex(64);
      const classification = rng.pick(CLASSIFICATIONS);
      return {
        threatID,
        threatStatus: rng.chance(0.1) ? 'cleared' : 'active',
        classification: variant ? classification.toUpperCase() : classification,
        threatUrl: `https://threatinsight.proofpoint.com/aaabcdef-1234-b1abcdefghe/threat/email/${threatID}`,
        threatTime: iso(indexTime - rng.int(60_000, 3 * 24 * 3600_000)),
        threat: `https://${rng.hex(8)}.example.com/${rng.hex(6)}`,
        campaignID: rng.chance(0.3) ? rng.uuid() : null,
        threatType: rng.pick(['url', 'url', 'attachment', 'messageText']),
      };
    });
    const parts = Array.from({ length: rng.int(1, 3) }, (_, p) => ({
      disposition: p === 0 ? 'inline' : 'attached',
      sha256: rng.hex(64),
      md5: rng.hex(32),
      filename: p === 0 ? 'text.html' : `attachment-${p}.pdf`,
      sandboxStatus: p === 0 ? null : variant ? 'NOT_SUPPORTED' : rng.pick(['clean', 'threat', 'unsupported']),
      oContentType: p === 0 ? 'text/html' : 'application/pdf',
      contentType: p === 0 ? 'text/html' : 'application/pdf',
    }));
    const from = `${rng.hex(8)}@example.com`;
    const recipients = Array.from({ length: rng.chance(q.multiRecipient) ? rng.int(2, 5) : 1 }, () => `${rng.hex(20)}@example.com`);
    const withoutId = recipients.length > 1 && rng.chance(q.multiRecipientWithoutId);
    const senderIP = `175.16.${rng.int(0, 255)}.${rng.int(1, 254)}`;
    const qid = `3${rng.hex(9).toUpperCase()}-1`;
    const sender = nulls ? '' : `${rng.hex(32)}@example.net`;
    const messageID = nulls ? '' : `<${rng.hex(10)}-1@m${rng.int(1000000, 9999999)}.example.com>`;
    const base = {
      spamScore: rng.int(0, 100),
      phishScore: rng.int(0, 100),
      threatsInfoMap: threats,
      messageTime,
      impostorScore: 0.0,
      malwareScore: rng.int(0, 100),
      cluster: 'pharmtech_hosted',
      subject: nulls ? null : rng.pick(SUBJECTS),
      quarantineFolder: blocked ? rng.pick(['Phish', 'Malware', 'Spam']) : null,
      quarantineRule: blocked ? rng.pick(['module.spam.phish', 'module.av.malware']) : null,
      policyRoutes: nulls ? null : ['default_inbound'],
      modulesRun: nulls ? null : rng.shuffle(MODULES.slice()).slice(0, rng.int(3, MODULES.length)),
      messageSize: nulls ? 0 : rng.int(1000, 200_000),
      headerFrom: nulls ? null : `<${from}>`,
      headerReplyTo: null,
      fromAddress: nulls ? null : variant ? from : [from],
      ccAddresses: nulls ? null : [],
      replyToAddress: nulls ? null : [],
      toAddresses: nulls ? null : recipients.slice(),
      xmailer: nulls ? null : 'Microsoft Outlook 16.0',
      messageParts: nulls ? null : parts,
      completelyRewritten: variant ? rng.pick(['true', 'na']) : rng.chance(0.5),
    };
    // One event per recipient: they differ only by `recipient` and `id` (when there is one).
    return recipients.map((r) => {
      const ev: Record<string, unknown> = { ...structuredClone(base) };
      if (!withoutId) ev['id'] = rng.uuid();
      ev['QID'] = nulls ? null : qid;
      ev['GUID'] = guid;
      ev['sender'] = sender;
      ev['recipient'] = [r];
      ev['senderIP'] = senderIP;
      ev['messageID'] = messageID;
      return ev;
    });
  }
}

/** The same content written differently: keys reversed, set-like arrays shuffled. */
function reorder(body: Record<string, unknown>, rng: Rng): Record<string, unknown> {
  const out: Record<string, unknown> = {};
  for (const k of Object.keys(body).reverse()) {
    const v = body[k];
    out[k] = Array.isArray(v) && (k === 'messageParts' || k === 'threatsInfoMap' || k === 'modulesRun') ? rng.shuffle(v.slice()) : v;
  }
  return out;
}
