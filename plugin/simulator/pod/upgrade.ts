/**
 * How the simulated PoD log stream admits a WebSocket upgrade, as the real service does: the
 * path, method, bearer key, `cid` and `type` checks with the vendor's refusal texts (404, 405,
 * 401, 400), and archive windows (`sinceTime` floored and `toTime` ceiled to the hour in the
 * offset they are written in, at most `archiveMaxAgeMs` back, up to now minus the staleness).
 * Also the pieces of a session the server builds without its own state: the session record, the
 * event log of a scenario, and malformed frames.
 */
import http from 'node:http';
import type net from 'node:net';
import { parseTimestamp } from '../../util/time.ts';
import { PodEventLog, POD_STREAM_TYPES, type GeneratedEvent, type PodStreamType } from './events.ts';
import type { MalformedKind, PodScenario } from './scenario.ts';
import type { SessionRecord } from './server.ts';

const HOUR = 3600_000;
export const CONFLICT_BODY = 'Exceeded maximum number of sessions per token\r\n';
export const AUTH_FAILED_BODY = 'Error: Authentication failed.';

/** An archive window as served, and the key that names it as asked for (for `archiveCut`). */
export interface ArchiveWindow {
  from: number;
  to: number;
  key: string;
}

export function newSessionRecord(id: number, url: URL, req: http.IncomingMessage, now: number): SessionRecord {
  return {
    id,
    type: url.searchParams.get('type') ?? '',
    mode: 'refused',
    status: 0,
    sinceTime: url.searchParams.get('sinceTime') ?? undefined,
    toTime: url.searchParams.get('toTime') ?? undefined,
    startedAt: now,
    userAgent: req.headers['user-agent'],
    concurrent: 0,
    framesSent: 0,
    eventsSent: 0,
    bytesSent: 0,
    duplicatesSent: 0,
    malformedSent: 0,
    emptyFramesSent: 0,
    pingsSent: 0,
    pongsReceived: 0,
  };
}

/** Answers the upgrade request with an HTTP refusal and closes the socket. */
export function writeRefusal(socket: net.Socket, status: number, body: string, contentType = 'text/plain;charset=iso-8859-1'): void {
  const payload = Buffer.from(body, 'latin1');
  socket.end(
    `HTTP/1.1 ${status} ${http.STATUS_CODES[status] ?? ''}\r\nContent-Type: ${contentType}\r\nContent-Length: ${payload.length}\r\nConnection: close\r\n\r\n${body}`,
    'latin1',
  );
}

/** The status and text refusing the request before any session rule applies, if any. */
export function requestRefusal(req: http.IncomingMessage, url: URL, sc: PodScenario): [number, string] | undefined {
  const type = url.searchParams.get('type') ?? '';
  if (url.pathname !== '/v1/stream') return [404, 'Invalid URL or protocol (http/https not supported)'];
  if (req.method !== 'GET') return [405, 'Method Not Allowed'];
  if (req.headers.authorization === undefined || req.headers.authorization !== `Bearer ${sc.apiKey}`) return [401, AUTH_FAILED_BODY];
  const cid = url.searchParams.get('cid');
  if (!cid || !type) return [400, 'Missing or empty cid or type'];
  if (cid !== sc.clusterId) return [401, AUTH_FAILED_BODY];
  if (!(POD_STREAM_TYPES as readonly string[]).includes(type)) return [400, `Invalid type: ${type}`];
  const forced = sc.refuseTypes[type as PodStreamType];
  return forced ? [forced.status, forced.body] : undefined;
}

/** The archive window a session asks for, its refusal, or undefined for a live session (no times). */
export function archiveWindow(
  rec: SessionRecord,
  type: PodStreamType,
  now: number,
  sc: PodScenario,
): { window: ArchiveWindow } | { refusal: [number, string] } | undefined {
  if (rec.sinceTime === undefined && rec.toTime === undefined) return undefined;
  const since = rec.sinceTime === undefined ? undefined : parseTimestamp(rec.sinceTime);
  const to = rec.toTime === undefined ? undefined : parseTimestamp(rec.toTime);
  if (rec.sinceTime === undefined) return { refusal: [400, 'toTime requires sinceTime'] };
  if (!since) return { refusal: [400, `Invalid sinceTime: ${rec.sinceTime}`] };
  if (rec.toTime !== undefined && !to) return { refusal: [400, `Invalid toTime: ${rec.toTime}`] };
  const sinceMs = since.sec * 1000 + since.nsec / 1e6;
  const toMs = to ? to.sec * 1000 + to.nsec / 1e6 : undefined;
  if (toMs !== undefined && toMs <= sinceMs) return { refusal: [400, 'Invalid toTime: not after sinceTime'] };
  const toCeil = toMs === undefined ? undefined : ceilHour(toMs, offsetOf(rec.toTime!));
  if (sc.rejectFutureToTime && toCeil !== undefined && toCeil > now) {
    return { refusal: [400, `Invalid toTime: ${rec.toTime}: rounded up to the hour it is in the future`] };
  }
  const from = Math.max(floorHour(sinceMs, offsetOf(rec.sinceTime)), floorHour(now - sc.archiveMaxAgeMs, 0) + HOUR);
  const end = Math.min(toCeil ?? Infinity, now - sc.archiveStalenessMs);
  // The window as asked for (rounded), not as cut by staleness: a retry a moment later asks
  // for the same window although now has moved.
  return { window: { from, to: Math.max(from, end), key: `${type}\u0000${from}\u0000${toCeil ?? 'open'}` } };
}

/** The scenario's event log: rates and caps per type, origin `historyMs` before now unless given. */
export function eventLogOf(sc: PodScenario): PodEventLog {
  const rate = Object.fromEntries(POD_STREAM_TYPES.map((t) => [t, typeof sc.rate === 'number' ? sc.rate : sc.rate[t] ?? 0])) as Record<PodStreamType, number>;
  const maxEvents =
    sc.maxEvents === undefined
      ? undefined
      : typeof sc.maxEvents === 'number'
        ? Object.fromEntries(POD_STREAM_TYPES.map((t) => [t, sc.maxEvents as number]))
        : sc.maxEvents;
  return new PodEventLog({
    seed: sc.seed,
    origin: sc.origin ?? sc.clock.now() - sc.historyMs,
    rate,
    maxEvents,
    unsortedFraction: sc.unsortedFraction,
    unsortedMs: sc.unsortedMs,
    largeEvery: sc.largeEvery,
    largeFrameBytes: sc.largeFrameBytes,
    sharedKeyEvery: sc.sharedKeyEvery,
  });
}

/** Calls `each` for every event a type's accepted sessions sent; archive sessions only within their window. */
export function forEachServed(sessions: readonly SessionRecord[], log: PodEventLog, type: PodStreamType, each: (e: GeneratedEvent) => void): void {
  for (const r of sessions) {
    if (r.type !== type || r.status !== 101 || r.firstSeq === undefined || r.nextSeq === undefined) continue;
    for (let seq = r.firstSeq; seq < r.nextSeq; seq++) {
      const e = log.event(type, seq);
      if (r.mode === 'archive' && (e.tsMs < r.windowFrom! || e.tsMs >= r.windowTo!)) continue;
      each(e);
    }
  }
}

/** A frame of the given malformed kind in place of event `e`. */
export function malformedFrame(kind: MalformedKind, type: PodStreamType, e: GeneratedEvent): string {
  const idField = type === 'maillog' ? 'id' : 'guid';
  switch (kind) {
    case 'not_json':
      return `<html>502 Bad Gateway ${e.seq}</html>`;
    case 'array':
      return JSON.stringify([{ [idField]: `bad-${e.key}`, ts: e.ts }]);
    case 'no_id':
      return JSON.stringify({ ts: e.ts, note: 'no identity' });
    case 'bad_ts':
      return JSON.stringify({ [idField]: `bad-${e.key}`, ts: 'yesterday at noon' });
    case 'no_ts':
      return JSON.stringify({ [idField]: `bad-${e.key}` });
    case 'truncated':
      return e.text.slice(0, Math.floor(e.text.length / 2));
  }
}

export function floorHour(ms: number, offsetMin: number): number {
  const off = offsetMin * 60_000;
  return Math.floor((ms + off) / HOUR) * HOUR - off;
}

export function ceilHour(ms: number, offsetMin: number): number {
  const off = offsetMin * 60_000;
  return Math.ceil((ms + off) / HOUR) * HOUR - off;
}

function offsetOf(text: string): number {
  const m = /([+-])(\d{2}):?(\d{2})$/.exec(text.trim());
  return m ? (m[1] === '-' ? -1 : 1) * (Number(m[2]) * 60 + Number(m[3])) : 0;
}
