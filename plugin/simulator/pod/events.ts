/**
 * The simulator's event log: a deterministic, unbounded sequence of PoD events per type, computed
 * on demand from (seed, type, seq) so a 200,000-event benchmark holds nothing in memory and a
 * test can ask which events exist, which time they carry and what their frame is.
 *
 * Event `seq` of a type "happens" at `origin + seq / rate`; its `ts` may be earlier (unsorted
 * delivery: the service sends events in the order it stored them, not by `ts`). Shapes follow
 * the vendor's sample events: message
 * events (~1.5 KB, some with parts ~4 KB, some legacy with `pps` instead of `metadata`), both
 * maillog generations (legacy: `sm.tls`, numeric `pri`, no `metadata`, offset `-07:00`; current:
 * top-level `tls`, string `pri`, `metadata`, offset `-0700`) and audit events (`+0000`).
 */

export type PodStreamType = 'message' | 'maillog' | 'audit';
export const POD_STREAM_TYPES: readonly PodStreamType[] = ['message', 'maillog', 'audit'];

export interface GeneratedEvent {
  type: PodStreamType;
  seq: number;
  /** guid (message, audit) or id (maillog); with `sharedKeyEvery`, not unique. */
  key: string;
  /** When the event happened on the server (ms): it exists from then on. */
  baseMs: number;
  /** The `ts` the event carries, as ms (may be earlier than baseMs) and as text. */
  tsMs: number;
  ts: string;
  text: string;
}

export interface EventLogOptions {
  seed: number;
  /** Time (ms) of event 0. */
  origin: number;
  /** Events per second of clock time, per type. */
  rate: Record<PodStreamType, number>;
  /** Total events per type (undefined: unbounded). */
  maxEvents?: Partial<Record<PodStreamType, number>>;
  /** Fraction of events whose `ts` is earlier than their place in the stream… */
  unsortedFraction: number;
  /** …by up to this many ms. */
  unsortedMs: number;
  /** Every n-th message event (by hash) carries a part padded to `largeFrameBytes` (0: none). */
  largeEvery: number;
  largeFrameBytes: number;
  /** Every n-th event (by hash, never seq 0) carries the key of the event before it (0 or absent: none). */
  sharedKeyEvery?: number;
}

/** 32-bit mix of the seed, a type and a number (murmur3 finaliser over a few rounds). */
export function hash32(seed: number, a: number, b: number, c = 0): number {
  let h = (seed ^ 0x9e3779b9) >>> 0;
  for (const v of [a, b, c]) {
    h = Math.imul(h ^ (v >>> 0), 0x85ebca6b);
    h = Math.imul(h ^ (h >>> 13), 0xc2b2ae35);
    h ^= h >>> 16;
    // Numbers above 2^32 (large seqs) keep their high part.
    h = Math.imul(h ^ Math.floor(v / 4294967296), 0x27d4eb2f) >>> 0;
  }
  return h >>> 0;
}

/** Uniform in [0, 1). */
export function unit(seed: number, a: number, b: number, c = 0): number {
  return hash32(seed, a, b, c) / 4294967296;
}

const ALNUM = 'ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789';
const TYPE_INDEX: Record<PodStreamType, number> = { message: 1, maillog: 2, audit: 3 };

function chars(seed: number, type: number, seq: number, n: number, alphabet = ALNUM): string {
  let s = '';
  for (let i = 0; s.length < n; i++) {
    let h = hash32(seed, type, seq, 1000 + i);
    for (let j = 0; j < 5 && s.length < n; j++) {
      s += alphabet[h % alphabet.length];
      h = Math.floor(h / alphabet.length);
    }
  }
  return s;
}

/** Base-62 digits of n, fixed width: keeps keys unique whatever the hash does. */
function seqDigits(seq: number, width: number): string {
  let s = '';
  let n = seq;
  for (let i = 0; i < width; i++) {
    s = ALNUM[n % 62] + s;
    n = Math.floor(n / 62);
  }
  return s;
}

/**
 * `ts` text: local time in `offsetMin` with microseconds, offset written `-0700` or `-07:00`.
 * `micros` is the time in whole microseconds since the epoch.
 */
export function formatTs(micros: number, offsetMin: number, colon: boolean): string {
  const ms = Math.floor(micros / 1000);
  const local = new Date(ms + offsetMin * 60_000);
  const p = (n: number, w = 2) => String(n).padStart(w, '0');
  const abs = Math.abs(offsetMin);
  const frac = p(local.getUTCMilliseconds(), 3) + p(micros - ms * 1000, 3);
  return (
    `${local.getUTCFullYear()}-${p(local.getUTCMonth() + 1)}-${p(local.getUTCDate())}T${p(local.getUTCHours())}:${p(local.getUTCMinutes())}:${p(local.getUTCSeconds())}.${frac}` +
    `${offsetMin < 0 ? '-' : '+'}${p(Math.floor(abs / 60))}${colon ? ':' : ''}${p(abs % 60)}`
  );
}

// Templates: JSON text with placeholders, filled by concatenation (fast enough to feed a
// benchmark without the simulator becoming the bottleneck).
const K = '\u0001KEY\u0001';
const T = '\u0001TS\u0001';
const Q = '\u0001QID\u0001';
const D = '\u0001DATA\u0001';
const P = '\u0001PAD\u0001';

function template(obj: unknown): string[] {
  // Placeholders are JSON strings: "\u0001KEY\u0001" serialises as "\u0001KEY\u0001" escaped.
  const text = JSON.stringify(obj);
  return text.split(/"\\u0001([A-Z]+)\\u0001"/);
}

const messageBase = {
  connection: { country: '**', helo: 'm0000123.ppops.net', host: 'mail-out.example.net', ip: '175.16.199.1', protocol: 'smtp:smtp', resolveStatus: 'ok', sid: '3y8abcd123', tls: { inbound: { cipher: 'ECDHE-RSA-AES256-GCM-SHA384', cipherBits: 256, version: 'TLSv1.2' } } },
  envelope: { from: 'alerts@example.net', rcpts: ['pps@example.com'] },
  filter: {
    actions: [{ action: 'accept', isFinal: true, module: 'access', rule: 'system' }],
    delivered: { rcpts: ['pps@example.com'] },
    disposition: 'accept',
    durationSecs: 0.11872,
    msgSizeBytes: 1127,
    qid: Q,
    routeDirection: 'inbound',
    routes: ['allow_relay', 'firewallsafe'],
    suborgs: { rcpts: ['0'], sender: '0' },
    verified: { rcpts: ['pps@example.com'] },
  },
  guid: K,
  metadata: { origin: { data: { agent: 'm0000123.ppops.net', cid: 'pphosted_prodmgt_hosted', version: '8.21.0.1358' } } },
  msg: {
    header: { from: ['"(Cron Daemon)" <pps@m0000123.ppops.net>'], 'message-id': ['<212345678910.44ACDE123370@m0000123.ppops.net>'], subject: ['Cron <pps@m0000123> /opt/proofpoint/resttimer.pl'], to: ['pps@example.com'] },
    lang: '',
    normalizedHeader: { from: ['"(Cron Daemon)" <pps@m0000123.ppops.net>'], 'message-id': ['212345678910.44BCDE1231370@m0000123.ppops.net'], subject: ['Cron <pps@m0000123> /opt/proofpoint/resttimer.pl'], to: ['pps@example.com'] },
    parsedAddresses: {},
    sizeBytes: 1151,
  },
  msgParts: [],
  ts: T,
};

const part = (pad: unknown) => ({
  labeledCharset: 'UTF-8',
  md5: '5d41402abc4b2a76b9719d911017c592',
  sha256: '2cf24dba5fb0a30e26e83b2ac5b9e29e1b161e5c1fa7425e73043362938b9824',
  sizeDecodedBytes: 3056,
  isArchive: false,
  isCorrupted: false,
  isTimedOut: false,
  dataBase64: pad,
  metadata: {},
  isVirtual: false,
  detectedMime: 'text/html',
  detectedName: 'text.html',
  urls: [
    { isRewritten: true, url: 'https://admin.example.com/AdminHome#Reports:subtab=manage-alerts', src: ['urldefense'] },
    { isRewritten: true, url: 'https://support.example.com/a/answer/1234567?hl=en', src: ['urldefense'] },
  ],
  disposition: 'inline',
  isProtected: false,
  labeledMime: 'text/html',
  textExtracted: 'U0NBTEFSKDB4ACBDEFGHIJ123456DU4KQ==\n',
  structureId: '0',
});

const messageWithParts = {
  ...messageBase,
  msgParts: [part(P)],
  final_module: 'spam',
  final_action: 'continue',
  final_rule: 'bulk',
  action_spf: [{ rule: 'pass', action: 'continue', module: 'spf' }],
  filter: {
    ...messageBase.filter,
    actions: [
      { rule: 'pass', action: 'continue', isFinal: true, module: 'pdr' },
      { rule: 'pp_external_tag', action: 'audit', module: 'access' },
      { rule: 'clean', action: 'add-header', module: 'av' },
      { rule: 'notspam', action: 'continue', module: 'spam' },
    ],
    modules: { spf: { domain: 'bounces.example.net', result: 'pass' }, dkimv: [{ domain: 'example.net', selector: '20161025', result: 'pass' }], urldefense: { version: { engine: '15' }, counts: { rewritten: 2, unique: 2, total: 2 } } },
  },
};

/** Legacy message: `pps` instead of `metadata`. */
const messageLegacy = (() => {
  const { metadata: _m, ...rest } = messageBase;
  return { ...rest, pps: { agent: 'm0000123.ppops.net', cid: 'pphosted_prodmgt_hosted', version: '8.14.0.396' } };
})();

const maillogCurrent = {
  data: D,
  id: K,
  metadata: { customerId: 'c82abcde-5678-42dd-1234-1234563f9cff', origin: { data: { agent: 'm0000123.ppops.net', cid: 'pphosted_prodmgt_hosted' }, schemaVersion: '20200420' } },
  pps: { agent: 'm0000123.ppops.net', cid: 'pphosted_prodmgt_hosted' },
  sm: { delay: '00:00:00', dsn: '2.0.0', mailer: 'esmtp', pri: '120812', qid: Q, relay: 'abcd.example.net. [IPv6:2a02:cf40::]', stat: 'Sent (Ok: queued)', to: ['<mailive@example.com>'], xdelay: '00:00:00' },
  tls: { cipher: 'ECDHE-RSA-AES256-GCM', verify: 'OK', version: 'TLSv1.2' },
  ts: T,
};

const maillogLegacy = {
  pps: { agent: 'example.proofpoint.com', cid: 'mmg_abcd001' },
  ts: T,
  data: D,
  sm: { tls: { verify: 'NONE' }, stat: 'Sent', qid: Q, dsn: '2.0.0', mailer: '*file*', to: ['jack@example.com'], ctladdr: '<user1@example.com> (8/0)', delay: '00:00:00', xdelay: '00:00:00', pri: 35342 },
  id: K,
};

const auditEvent = {
  audit: {
    action: 'login',
    level: 'INFO',
    resourceType: 'authorization',
    tags: [
      { name: 'eventSubCategory', value: 'authorization' },
      { name: 'eventDetails', value: D },
      { name: 'login.authorization', value: 'true' },
    ],
    user: { email: 'john@example.com', id: 'a7e6abcd-1234-4621-1234-abcdefc3b3e6', ipAddress: '89.160.20.128' },
  },
  guid: K,
  metadata: { customerId: 'c8211234-1234-5678-a327-abcde13f9cff', origin: { data: { agent: '81.2.69.144', cid: 'pphosted_prodmgt_hosted', version: '1.0' }, schemaVersion: '1.0', type: 'cadmin-api-gateway' } },
  ts: T,
};

const TEMPLATES = {
  message: template(messageBase),
  messageWithParts: template(messageWithParts),
  messageLegacy: template(messageLegacy),
  maillogCurrent: template(maillogCurrent),
  maillogLegacy: template(maillogLegacy),
  audit: template(auditEvent),
};

function fill(parts: string[], values: Record<string, string>): string {
  let out = parts[0]!;
  for (let i = 1; i < parts.length; i += 2) out += JSON.stringify(values[parts[i]!] ?? '') + parts[i + 1]!;
  return out;
}

/** Base64-looking filler of exactly n characters (deterministic, cheap). */
function filler(n: number, salt: number): string {
  const block = 'QUJDREVGR0hJSktMTU5PUFFSU1RVVldYWVphYmNkZWZnaGlqa2xtbm9wcXJzdHV2d3h5ejAxMjM0NTY3ODk=';
  const start = salt % block.length;
  const rot = block.slice(start) + block.slice(0, start);
  return rot.repeat(Math.ceil(n / rot.length)).slice(0, n);
}

export class PodEventLog {
  readonly #o: EventLogOptions;

  constructor(o: EventLogOptions) {
    this.#o = o;
  }

  get options(): Readonly<EventLogOptions> {
    return this.#o;
  }

  periodMs(type: PodStreamType): number {
    const r = this.#o.rate[type];
    return r > 0 ? 1000 / r : Infinity;
  }

  max(type: PodStreamType): number {
    return this.#o.maxEvents?.[type] ?? Number.MAX_SAFE_INTEGER;
  }

  /** When event `seq` happens. */
  baseTime(type: PodStreamType, seq: number): number {
    return this.#o.origin + seq * this.periodMs(type);
  }

  /** How many events of `type` exist at `ms` (those that happened at or before it). */
  count(type: PodStreamType, ms: number): number {
    const period = this.periodMs(type);
    if (ms < this.#o.origin || !Number.isFinite(period)) return 0;
    return Math.min(this.max(type), Math.floor((ms - this.#o.origin) / period) + 1);
  }

  /** First seq that happens at or after `ms`. */
  firstAtOrAfter(type: PodStreamType, ms: number): number {
    const period = this.periodMs(type);
    if (ms <= this.#o.origin) return 0;
    if (!Number.isFinite(period)) return this.max(type);
    return Math.min(this.max(type), Math.ceil((ms - this.#o.origin) / period));
  }

  /** The `ts` of event `seq` in whole microseconds since the epoch (cheap: no text is built). */
  tsMicros(type: PodStreamType, seq: number): number {
    const o = this.#o;
    const ti = TYPE_INDEX[type];
    const baseMs = this.baseTime(type, seq);
    const jitter = unit(o.seed, ti, seq, 1) < o.unsortedFraction ? Math.floor(unit(o.seed, ti, seq, 2) * o.unsortedMs) : 0;
    // Whole microseconds, as the server writes them.
    return Math.floor((baseMs - jitter) * 1000) + (hash32(o.seed, ti, seq, 4) % 1000);
  }

  /**
   * How many seqs in [first, last) carry a `ts` in [fromMs, toMs). Only the edges are looked
   * at: an event whose place is more than `unsortedMs` + 2 ms inside the range has its ts in it.
   */
  countTsIn(type: PodStreamType, first: number, last: number, fromMs: number, toMs: number): number {
    if (last <= first) return 0;
    const lowEnd = Math.min(last, Math.max(first, this.firstAtOrAfter(type, fromMs + this.#o.unsortedMs + 2)));
    const highStart = Math.max(lowEnd, Math.min(last, this.firstAtOrAfter(type, toMs - 2)));
    let n = highStart - lowEnd;
    const inRange = (seq: number) => {
      const t = this.tsMicros(type, seq) / 1000;
      return t >= fromMs && t < toMs;
    };
    for (let seq = first; seq < lowEnd; seq++) if (inRange(seq)) n++;
    for (let seq = highStart; seq < last; seq++) if (inRange(seq)) n++;
    return n;
  }

  /** Whether event `seq` carries the key of event `seq - 1` (`sharedKeyEvery`). */
  sharesKey(type: PodStreamType, seq: number): boolean {
    const every = this.#o.sharedKeyEvery ?? 0;
    return every > 0 && seq > 0 && hash32(this.#o.seed, TYPE_INDEX[type], seq, 6) % every === 0;
  }

  /** The key event `seq` carries: its own, or that of the first event of its run of shared keys. */
  #key(type: PodStreamType, seq: number): string {
    let owner = seq;
    if ((this.#o.sharedKeyEvery ?? 0) === 1) owner = 0;
    else while (this.sharesKey(type, owner)) owner--;
    const o = this.#o;
    const ti = TYPE_INDEX[type];
    if (type === 'message') return `${chars(o.seed, ti, owner, 22)}${seqDigits(owner, 10)}`;
    if (type === 'maillog') return `${chars(o.seed, ti, owner, 14, `${ALNUM}/`)}${seqDigits(owner, 8)}`;
    const h = chars(o.seed, ti, owner, 20, '0123456789abcdef') + owner.toString(16).padStart(12, '0');
    return `${h.slice(0, 8)}-${h.slice(8, 12)}-4${h.slice(13, 16)}-a${h.slice(17, 20)}-${h.slice(20, 32)}`;
  }

  event(type: PodStreamType, seq: number): GeneratedEvent {
    const o = this.#o;
    const ti = TYPE_INDEX[type];
    const baseMs = this.baseTime(type, seq);
    const micros = this.tsMicros(type, seq);
    const tsMs = micros / 1000;
    const qid = `${chars(o.seed, ti, seq, 6).toUpperCase()}${seqDigits(seq, 8)}`;
    const key = this.#key(type, seq);
    let ts: string;
    let text: string;
    const variant = hash32(o.seed, ti, seq, 3);
    if (type === 'message') {
      // Clusters write -0700 (PDT) or -0800 (PST); both without a colon.
      ts = formatTs(micros, variant % 7 === 0 ? -480 : -420, false);
      const large = o.largeEvery > 0 && o.largeFrameBytes > 0 && variant % o.largeEvery === 0;
      if (large) {
        const skeleton = fill(TEMPLATES.messageWithParts, { KEY: key, TS: ts, QID: qid, PAD: '' });
        text = fill(TEMPLATES.messageWithParts, { KEY: key, TS: ts, QID: qid, PAD: filler(Math.max(0, o.largeFrameBytes - skeleton.length), seq) });
      } else if (variant % 10 < 3) {
        text = fill(TEMPLATES.messageWithParts, { KEY: key, TS: ts, QID: qid, PAD: filler(2048, seq) });
      } else if (variant % 10 === 3) {
        text = fill(TEMPLATES.messageLegacy, { KEY: key, TS: ts, QID: qid });
      } else {
        text = fill(TEMPLATES.message, { KEY: key, TS: ts, QID: qid });
      }
    } else if (type === 'maillog') {
      const legacy = variant % 4 === 0;
      ts = formatTs(micros, -420, legacy);
      const data = `${ts} m0000123 sendmail[17965]: ${qid}: to=<mailive@example.com>, delay=00:00:00, xdelay=00:00:00, mailer=esmtp, tls_verify=OK, tls_version=TLSv1.2, cipher=ECDHE-RSA-AES256-GCM, pri=120812, relay=abcd.example.net. [IPv6:2a02:cf40::], dsn=2.0.0, stat=Sent (Ok: queued)`;
      text = fill(legacy ? TEMPLATES.maillogLegacy : TEMPLATES.maillogCurrent, { KEY: key, TS: ts, QID: qid, DATA: data });
    } else {
      ts = formatTs(micros, 0, false);
      // Audit events have no qid: one that shares its guid names its own seq, so that no two
      // events ever have the same text (their ts may coincide at high rates).
      const details = this.sharesKey(type, seq) ? `event ${seqDigits(seq, 8)}` : '';
      text = fill(TEMPLATES.audit, { KEY: key, TS: ts, DATA: details });
    }
    return { type, seq, key, baseMs, tsMs, ts, text };
  }
}
