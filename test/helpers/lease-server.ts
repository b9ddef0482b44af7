/**
 * The Kubernetes Lease API (coordination.k8s.io/v1) on loopback, for tests: bearer tokens, GET, POST
 * and PUT of namespaced Leases with the kube-apiserver's optimistic concurrency, decoding, validation
 * and `Status` bodies (texts as the apiserver writes them), and per-token network partitions. Every
 * request and every successful write is logged.
 *
 * As the apiserver does, and a client may not expect: a PUT of a Lease that does not exist creates it
 * (201), `acquireTime`/`renewTime` must have exactly six fractional digits and are served back in UTC,
 * unknown `spec` fields are dropped with a `Warning` header, and a POST carrying a resourceVersion is a
 * 500. Not simulated: other verbs (PATCH, DELETE, list, watch: 405), namespaces (any one exists),
 * admission, fieldManager/dryRun (ignored), managedFields.
 */
import { randomInt, randomUUID } from 'node:crypto';
import { createServer, type IncomingMessage, type Server, type ServerResponse } from 'node:http';
import { createServer as createTlsServer } from 'node:https';
import type { AddressInfo } from 'node:net';

export interface LeaseServerOptions {
  /** Default 127.0.0.1. */
  host?: string;
  /** Default 0 (any free port). */
  port?: number;
  /** Accepted bearer tokens; default `['lease-sim-token']`. */
  tokens?: string[];
  /** Serve https:// with this key and certificate (as a kube-apiserver in a cluster does). */
  tls?: { key: string | Buffer; cert: string | Buffer };
}

export interface LeaseWrite {
  /** Date.now() when answered. */
  at: number;
  op: 'create' | 'update';
  namespace: string;
  name: string;
  resourceVersion: string;
  holder?: string;
  leaseTransitions?: number;
  renewTime?: string;
  token: string;
  annotations: Record<string, string>;
}

export interface LeaseRequestRecord {
  /** Date.now() at arrival. */
  at: number;
  method: string;
  /** Path without the query. */
  path: string;
  /** 0 while unanswered: held by a partition, reset by heal() or close(). */
  status: number;
  /** The bearer token presented, '' when none. */
  token: string;
}

const GROUP = 'coordination.k8s.io';
const API_VERSION = `${GROUP}/v1`;
const RESOURCE = `leases.${GROUP}`;
const MICRO_LAYOUT = '2006-01-02T15:04:05.000000Z07:00';
const ANNOTATIONS_LIMIT = 262_144;
const BODY_LIMIT = 3 * 1024 * 1024;
const PATH = /^\/apis\/coordination\.k8s\.io\/v1\/namespaces\/([^/]+)\/leases(?:\/([^/]+))?$/;
const NAMESPACE_MISMATCH = 'the namespace of the provided object does not match the namespace sent on the request';
const OPTIMISTIC_LOCK = 'the object has been modified; please apply your changes to the latest version and try again';

const DNS1123_SUBDOMAIN = /^[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*$/;
const DNS1123_SUBDOMAIN_TEXT =
  "a lowercase RFC 1123 subdomain must consist of lower case alphanumeric characters, '-' or '.', and must start and end with an alphanumeric character (e.g. 'example.com', regex used for validation is '[a-z0-9]([-a-z0-9]*[a-z0-9])?(\\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*')";
const QUALIFIED_NAME = /^([A-Za-z0-9][-A-Za-z0-9_.]*)?[A-Za-z0-9]$/;
const QUALIFIED_NAME_TEXT =
  "must consist of alphanumeric characters, '-', '_' or '.', and must start and end with an alphanumeric character (e.g. 'MyName',  or 'my.name',  or '123-abc', regex used for validation is '([A-Za-z0-9][-A-Za-z0-9_.]*)?[A-Za-z0-9]')";
const LABEL_VALUE = /^(([A-Za-z0-9][-A-Za-z0-9_.]*)?[A-Za-z0-9])?$/;
const LABEL_VALUE_TEXT =
  "a valid label must be an empty string or consist of alphanumeric characters, '-', '_' or '.', and must start and end with an alphanumeric character (e.g. 'MyValue',  or 'my_value',  or '12345', regex used for validation is '(([A-Za-z0-9][-A-Za-z0-9_.]*)?[A-Za-z0-9])?')";

type Json = Record<string, any>;
type Reply = { status: number; body: Json; warnings?: string[] };
type CauseType = 'FieldValueInvalid' | 'FieldValueRequired' | 'FieldValueTooLong' | 'FieldValueForbidden';
type FieldError = { type: CauseType; field: string; text: string };

/** A decoded request body, as the apiserver's decoder leaves it. */
interface DecodedLease {
  name?: string;
  generateName?: string;
  namespace?: string;
  resourceVersion?: string;
  uid?: string;
  labels?: Record<string, string>;
  annotations?: Record<string, string>;
  spec: Json;
  warnings: string[];
}

/** Go's %q, near enough for the names and values quoted in messages. */
const q = (s: string) => JSON.stringify(s);

function failure(code: number, reason: string, message: string, details?: Json): Reply {
  const body: Json = { kind: 'Status', apiVersion: 'v1', metadata: {}, status: 'Failure', message, reason };
  if (details) body.details = details;
  body.code = code;
  return { status: code, body };
}

const badRequest = (message: string) => failure(400, 'BadRequest', message);
const itemDetails = (name: string) => ({ name, group: GROUP, kind: 'leases' });
const notFound = (name: string) => failure(404, 'NotFound', `${RESOURCE} ${q(name)} not found`, itemDetails(name));
const internalError = (text: string) => failure(500, 'InternalError', `Internal error occurred: ${text}`, { causes: [{ message: text }] });

/** `kind` is 'Lease' for the strategy's validation, 'leases' for the store's resourceVersion check. */
function invalid(kind: 'Lease' | 'leases', name: string, errs: FieldError[]): Reply {
  const texts = errs.map((e) => `${e.field}: ${e.text}`);
  const aggregate = texts.length === 1 ? texts[0] : `[${texts.join(', ')}]`;
  return failure(422, 'Invalid', `${kind}.${GROUP} ${q(name)} is invalid: ${aggregate}`, {
    name,
    group: GROUP,
    kind,
    causes: errs.map((e) => ({ reason: e.type, message: e.text, field: e.field })),
  });
}

class DecodeError extends Error {}

const cannotHandle = (detail: string): never => {
  throw new DecodeError(`Lease in version "v1" cannot be handled as a Lease: ${detail}`);
};

function jsonType(v: unknown): string {
  if (v === null) return 'null';
  if (Array.isArray(v)) return 'array';
  if (typeof v === 'boolean') return 'bool';
  return typeof v === 'object' ? 'object' : typeof v;
}

const isObject = (v: unknown): v is Json => jsonType(v) === 'object';

function unmarshalError(v: unknown, field: string, goType: string): never {
  const what = typeof v === 'number' ? `number ${v}` : jsonType(v);
  return cannotHandle(`json: cannot unmarshal ${what} into Go struct field ${field} of type ${goType}`);
}

function optString(v: unknown, field: string): string | undefined {
  if (v === undefined || v === null) return undefined;
  return typeof v === 'string' ? v : unmarshalError(v, field, 'string');
}

function optInt32(v: unknown, field: string): number | undefined {
  if (v === undefined || v === null) return undefined;
  if (typeof v === 'number' && Number.isInteger(v) && v >= -(2 ** 31) && v < 2 ** 31) return v;
  return unmarshalError(v, field, 'int32');
}

function optStringMap(v: unknown, field: string): Record<string, string> | undefined {
  if (v === undefined || v === null) return undefined;
  if (!isObject(v)) return unmarshalError(v, field, 'map[string]string');
  for (const x of Object.values(v)) if (typeof x !== 'string') unmarshalError(x, field, 'string');
  return { ...(v as Record<string, string>) };
}

/**
 * Go's `time.Parse(RFC3339Micro, value)`, which is how metav1.MicroTime decodes: exactly six
 * fractional digits. The UTC text the apiserver serves back, or its parse error.
 */
function parseMicroTime(value: string): string {
  let rest = value;
  const bad = (elem: string): never => cannotHandle(`parsing time ${q(value)} as ${q(MICRO_LAYOUT)}: cannot parse ${q(rest)} as ${q(elem)}`);
  const outOfRange = (what: string): never => cannotHandle(`parsing time ${q(value)}: ${what} out of range`);
  const digits = (elem: string, re: RegExp): number => {
    const m = re.exec(rest);
    if (!m) return bad(elem);
    rest = rest.slice(m[0].length);
    return Number(m[0]);
  };
  const literal = (c: string) => {
    if (rest[0] !== c) bad(c);
    rest = rest.slice(1);
  };
  const year = digits('2006', /^\d{4}/);
  literal('-');
  const month = digits('01', /^\d{2}/);
  if (month < 1 || month > 12) outOfRange('month');
  literal('-');
  const day = digits('02', /^\d{2}/);
  if (day > 31) outOfRange('day');
  literal('T');
  const hour = digits('15', /^\d\d?/);
  if (hour > 23) outOfRange('hour');
  literal(':');
  const minute = digits('04', /^\d{2}/);
  if (minute > 59) outOfRange('minute');
  literal(':');
  const second = digits('05', /^\d{2}/);
  if (second > 59) outOfRange('second');
  if (!/^[.,]\d{6}/.test(rest)) bad('.000000');
  const micros = rest.slice(1, 7);
  rest = rest.slice(7);
  let offsetMinutes = 0;
  if (rest[0] === 'Z') {
    rest = rest.slice(1);
  } else {
    const m = /^([+-])(\d{2}):(\d{2})/.exec(rest);
    if (!m) return bad('Z07:00');
    offsetMinutes = (m[1] === '-' ? -1 : 1) * (Number(m[2]) * 60 + Number(m[3]));
    rest = rest.slice(6);
  }
  if (rest !== '') cannotHandle(`parsing time ${q(value)}: extra text: ${q(rest)}`);
  const d = new Date(0);
  d.setUTCFullYear(year, month - 1, day);
  if (d.getUTCDate() !== day) outOfRange('day');
  d.setUTCHours(hour, minute - offsetMinutes, second, 0);
  return d.toISOString().replace(/\.\d{3}Z$/, `.${micros}Z`);
}

function optMicroTime(v: unknown): string | undefined {
  if (v === undefined || v === null) return undefined;
  if (typeof v !== 'string') return cannotHandle(`json: cannot unmarshal ${jsonType(v)} into Go value of type string`);
  return parseMicroTime(v);
}

/** Decodes a request body as the apiserver's JSON decoder for Lease does, or throws its 400 text. */
function decodeLease(text: string): DecodedLease {
  let doc: unknown;
  try {
    doc = JSON.parse(text);
  } catch (err) {
    throw new DecodeError(`couldn't get version/kind; json parse error: ${(err as Error).message}`);
  }
  if (!isObject(doc)) return cannotHandle(`json: cannot unmarshal ${jsonType(doc)} into Go value of type v1.Lease`);
  const apiVersion = optString(doc.apiVersion, 'Lease.apiVersion');
  if (apiVersion !== undefined && apiVersion !== '' && apiVersion !== API_VERSION) {
    throw new DecodeError(`the API version in the data (${apiVersion}) does not match the expected API version (${API_VERSION})`);
  }
  const kind = optString(doc.kind, 'Lease.kind');
  if (kind !== undefined && kind !== '' && kind !== 'Lease') {
    throw new DecodeError(`the object provided is unrecognized (must be of type Lease): kind ${q(kind)} in the data`);
  }
  const warnings: string[] = [];
  for (const k of Object.keys(doc)) if (!['apiVersion', 'kind', 'metadata', 'spec'].includes(k)) warnings.push(`unknown field ${q(k)}`);

  const meta = doc.metadata ?? {};
  if (!isObject(meta)) return unmarshalError(meta, 'Lease.metadata', 'v1.ObjectMeta');
  const rawSpec = doc.spec ?? {};
  if (!isObject(rawSpec)) return unmarshalError(rawSpec, 'Lease.spec', 'v1.LeaseSpec');

  const spec: Json = {};
  const fields: Record<string, (v: unknown, f: string) => unknown> = {
    holderIdentity: optString,
    leaseDurationSeconds: optInt32,
    acquireTime: optMicroTime,
    renewTime: optMicroTime,
    leaseTransitions: optInt32,
    strategy: optString,
    preferredHolder: optString,
  };
  for (const [k, check] of Object.entries(fields)) {
    const v = check(rawSpec[k], `LeaseSpec.spec.${k}`);
    if (v !== undefined) spec[k] = v;
  }
  for (const k of Object.keys(rawSpec)) if (!(k in fields)) warnings.push(`unknown field ${q(`spec.${k}`)}`);

  return {
    name: optString(meta.name, 'ObjectMeta.metadata.name'),
    generateName: optString(meta.generateName, 'ObjectMeta.metadata.generateName'),
    namespace: optString(meta.namespace, 'ObjectMeta.metadata.namespace'),
    resourceVersion: optString(meta.resourceVersion, 'ObjectMeta.metadata.resourceVersion'),
    uid: optString(meta.uid, 'ObjectMeta.metadata.uid'),
    labels: optStringMap(meta.labels, 'ObjectMeta.metadata.labels'),
    annotations: optStringMap(meta.annotations, 'ObjectMeta.metadata.annotations'),
    spec,
    warnings,
  };
}

function qualifiedNameErrors(key: string): string[] {
  const parts = key.split('/');
  if (parts.length > 2) return [`a qualified name ${QUALIFIED_NAME_TEXT} with an optional DNS subdomain prefix and '/' (e.g. 'example.com/MyName')`];
  const name = parts.at(-1)!;
  const errs: string[] = [];
  if (parts.length === 2) {
    const prefix = parts[0]!;
    if (prefix === '') errs.push('prefix part must be non-empty');
    else {
      if (prefix.length > 253) errs.push('prefix part must be no more than 253 characters');
      if (!DNS1123_SUBDOMAIN.test(prefix)) errs.push(`prefix part ${DNS1123_SUBDOMAIN_TEXT}`);
    }
  }
  if (name === '') errs.push('name part must be non-empty');
  else {
    if (name.length > 63) errs.push('name part must be no more than 63 characters');
    if (!QUALIFIED_NAME.test(name)) errs.push(`name part ${QUALIFIED_NAME_TEXT}`);
  }
  return errs;
}

/** ValidateObjectMeta's labels and annotations checks, and ValidateLeaseSpec. */
function validateLease(d: DecodedLease): FieldError[] {
  const errs: FieldError[] = [];
  const invalidValue = (field: string, value: string | number, text: string) =>
    errs.push({ type: 'FieldValueInvalid', field, text: `Invalid value: ${typeof value === 'string' ? q(value) : value}: ${text}` });
  for (const [k, v] of Object.entries(d.labels ?? {})) {
    for (const text of qualifiedNameErrors(k)) invalidValue('metadata.labels', k, text);
    if (v.length > 63) invalidValue('metadata.labels', v, 'must be no more than 63 characters');
    if (!LABEL_VALUE.test(v)) invalidValue('metadata.labels', v, LABEL_VALUE_TEXT);
  }
  let size = 0;
  for (const [k, v] of Object.entries(d.annotations ?? {})) {
    for (const text of qualifiedNameErrors(k.toLowerCase())) invalidValue('metadata.annotations', k, text);
    size += Buffer.byteLength(k) + Buffer.byteLength(v);
  }
  if (size > ANNOTATIONS_LIMIT) {
    errs.push({ type: 'FieldValueTooLong', field: 'metadata.annotations', text: `Too long: must have at most ${ANNOTATIONS_LIMIT} bytes` });
  }
  const { leaseDurationSeconds, leaseTransitions, strategy, preferredHolder } = d.spec;
  if (leaseDurationSeconds !== undefined && leaseDurationSeconds <= 0) invalidValue('spec.leaseDurationSeconds', leaseDurationSeconds, 'must be greater than 0');
  if (leaseTransitions !== undefined && leaseTransitions < 0) invalidValue('spec.leaseTransitions', leaseTransitions, 'must be greater than or equal to 0');
  if (preferredHolder && !strategy) {
    errs.push({ type: 'FieldValueForbidden', field: 'spec.preferredHolder', text: 'Forbidden: may only be specified if `strategy` is defined' });
  }
  return errs;
}

function validateName(name: string): FieldError[] {
  if (name === '') return [{ type: 'FieldValueRequired', field: 'metadata.name', text: 'Required value: name or generateName is required' }];
  const errs: FieldError[] = [];
  if (name.length > 253) errs.push({ type: 'FieldValueInvalid', field: 'metadata.name', text: `Invalid value: ${q(name)}: must be no more than 253 characters` });
  if (!DNS1123_SUBDOMAIN.test(name)) errs.push({ type: 'FieldValueInvalid', field: 'metadata.name', text: `Invalid value: ${q(name)}: ${DNS1123_SUBDOMAIN_TEXT}` });
  return errs;
}

/** names.SimpleNameGenerator. */
function generateName(base: string): string {
  const alphabet = 'bcdfghjklmnpqrstvwxz2456789';
  let suffix = '';
  for (let i = 0; i < 5; i++) suffix += alphabet[randomInt(alphabet.length)];
  return base.slice(0, 58) + suffix;
}

function bearerToken(header: string | undefined): string {
  const m = /^bearer\s+(.*)$/i.exec(header?.trim() ?? '');
  return m ? m[1]!.trim() : '';
}

const nonEmpty = (m: Record<string, string> | undefined) => (m && Object.keys(m).length > 0 ? { ...m } : undefined);
const rfc3339 = (ms: number) => new Date(ms).toISOString().replace(/\.\d{3}Z$/, 'Z');

export class LeaseSimServer {
  /** http://127.0.0.1:<port> (https:// with `tls`) */
  readonly url: string;
  /** Every successful create and update, in order. */
  readonly writes: LeaseWrite[] = [];
  /** Every request received, in order of arrival. */
  readonly requests: LeaseRequestRecord[] = [];
  /** TCP connections accepted (clients that keep connections alive open few). */
  connections = 0;
  readonly #server: Server;
  readonly #tokens: ReadonlySet<string>;
  readonly #leases = new Map<string, Json>();
  readonly #partitioned = new Set<string>();
  readonly #held = new Map<string, Set<IncomingMessage>>();
  #resourceVersion = 0;

  /** Use startLeaseServer(). */
  constructor(server: Server, url: string, tokens: readonly string[]) {
    this.#server = server;
    this.url = url;
    this.#tokens = new Set(tokens);
    server.on('request', (req: IncomingMessage, res: ServerResponse) => this.#handle(req, res));
    server.on('connection', () => this.connections++);
  }

  /** The stored object as served (a copy), or undefined. */
  lease(namespace: string, name: string): any | undefined {
    const obj = this.#leases.get(`${namespace}/${name}`);
    return obj === undefined ? undefined : structuredClone(obj);
  }

  /** From now on, requests bearing `token` are read and never answered; held ones stay held. */
  partition(token: string): void {
    this.#partitioned.add(token);
  }

  /** New requests bearing `token` are answered again; the held ones have their connections reset. */
  heal(token: string): void {
    this.#partitioned.delete(token);
    for (const req of this.#held.get(token) ?? []) req.socket.destroy();
    this.#held.delete(token);
  }

  /**
   * A kubeconfig for this server and `token`. `insecure-skip-tls-verify` is set because the
   * sidecar's client (plugin/coordination/kube-config.ts) refuses an http:// server without it.
   */
  kubeconfig(token: string, opts: { namespace?: string } = {}): string {
    const lines = [
      'apiVersion: v1',
      'kind: Config',
      'clusters:',
      '- name: lease-sim',
      '  cluster:',
      `    server: ${q(this.url)}`,
      '    insecure-skip-tls-verify: true',
      'users:',
      '- name: lease-sim-user',
      '  user:',
      `    token: ${q(token)}`,
      'contexts:',
      '- name: lease-sim',
      '  context:',
      '    cluster: lease-sim',
      '    user: lease-sim-user',
      ...(opts.namespace === undefined ? [] : [`    namespace: ${q(opts.namespace)}`]),
      'current-context: lease-sim',
      'preferences: {}',
    ];
    return lines.join('\n') + '\n';
  }

  /** Closes the server and every connection, held ones included. */
  async close(): Promise<void> {
    await new Promise<void>((resolve) => {
      this.#server.close(() => resolve());
      this.#server.closeAllConnections();
    });
    this.#held.clear();
  }

  #handle(req: IncomingMessage, res: ServerResponse): void {
    const url = new URL(req.url ?? '/', 'http://sim');
    const token = bearerToken(req.headers.authorization);
    const rec: LeaseRequestRecord = { at: Date.now(), method: req.method ?? '', path: url.pathname, status: 0, token };
    this.requests.push(rec);
    const chunks: Buffer[] = [];
    let size = 0;
    req.on('error', () => {});
    req.on('data', (chunk: Buffer) => {
      size += chunk.length;
      if (size <= BODY_LIMIT) chunks.push(chunk);
    });
    const held = this.#partitioned.has(token);
    if (held) this.#hold(token, req);
    req.on('end', () => {
      if (held) return;
      if (this.#partitioned.has(token)) return this.#hold(token, req);
      const reply =
        size > BODY_LIMIT
          ? failure(413, 'RequestEntityTooLarge', `Request entity too large: limit is ${BODY_LIMIT}`)
          : this.#answer(req.method ?? '', url.pathname, Buffer.concat(chunks).toString('utf8'), token);
      rec.status = reply.status;
      const text = JSON.stringify(reply.body);
      const headers: Record<string, string | string[]> = { 'content-type': 'application/json', 'content-length': String(Buffer.byteLength(text)) };
      if (reply.warnings?.length) headers['warning'] = reply.warnings.map((w) => `299 - ${q(w)}`);
      res.writeHead(reply.status, headers).end(text);
    });
  }

  #hold(token: string, req: IncomingMessage): void {
    const held = this.#held.get(token) ?? new Set<IncomingMessage>();
    this.#held.set(token, held);
    held.add(req);
    req.socket.once('close', () => held.delete(req));
  }

  #answer(method: string, path: string, body: string, token: string): Reply {
    if (!this.#tokens.has(token)) return failure(401, 'Unauthorized', 'Unauthorized');
    const m = PATH.exec(path);
    if (!m) return failure(404, 'NotFound', 'the server could not find the requested resource', {});
    let namespace: string;
    let name: string | undefined;
    try {
      namespace = decodeURIComponent(m[1]!);
      name = m[2] === undefined ? undefined : decodeURIComponent(m[2]);
    } catch {
      return failure(404, 'NotFound', 'the server could not find the requested resource', {});
    }
    const allowed = name === undefined ? ['POST'] : ['GET', 'PUT'];
    if (!allowed.includes(method)) return failure(405, 'MethodNotAllowed', 'the server does not allow this method on the requested resource', {});
    if (method === 'GET') {
      const obj = this.#leases.get(`${namespace}/${name}`);
      return obj ? { status: 200, body: obj } : notFound(name!);
    }
    let d: DecodedLease;
    try {
      d = decodeLease(body);
    } catch (err) {
      if (err instanceof DecodeError) return badRequest(err.message);
      throw err;
    }
    const reply = name === undefined ? this.#create(namespace, d, token) : this.#replace(namespace, name, d, token);
    return d.warnings.length ? { ...reply, warnings: d.warnings } : reply;
  }

  #create(namespace: string, d: DecodedLease, token: string): Reply {
    if (d.namespace && d.namespace !== namespace) return badRequest(NAMESPACE_MISMATCH);
    const name = d.name || (d.generateName ? generateName(d.generateName) : '');
    const errs = [...validateName(name), ...validateLease(d)];
    if (errs.length) return invalid('Lease', name, errs);
    if (d.resourceVersion) return internalError('resourceVersion should not be set on objects to be created');
    if (this.#leases.has(`${namespace}/${name}`)) {
      return failure(409, 'AlreadyExists', `${RESOURCE} ${q(name)} already exists`, itemDetails(name));
    }
    return { status: 201, body: this.#write('create', namespace, name, d, undefined, token) };
  }

  #replace(namespace: string, name: string, d: DecodedLease, token: string): Reply {
    if ((d.name ?? '') !== name) return badRequest(`the name of the object (${d.name ?? ''}) does not match the name on the URL (${name})`);
    if (d.namespace && d.namespace !== namespace) return badRequest(NAMESPACE_MISMATCH);
    const existing = this.#leases.get(`${namespace}/${name}`);
    if (!existing) {
      // Leases allow create-on-update: the resourceVersion sent is not looked at.
      const errs = [...validateName(name), ...validateLease(d)];
      if (errs.length) return invalid('Lease', name, errs);
      return { status: 201, body: this.#write('create', namespace, name, d, undefined, token) };
    }
    const rv = d.resourceVersion ?? '';
    if (rv !== '' && !/^\d+$/.test(rv)) return internalError(`strconv.ParseUint: parsing ${q(rv)}: invalid syntax`);
    if (rv === '' || BigInt(rv) === 0n) {
      return invalid('leases', name, [{ type: 'FieldValueInvalid', field: 'metadata.resourceVersion', text: 'Invalid value: 0x0: must be specified for an update' }]);
    }
    if (BigInt(rv) !== BigInt(existing.metadata.resourceVersion)) {
      return failure(409, 'Conflict', `Operation cannot be fulfilled on ${RESOURCE} ${q(name)}: ${OPTIMISTIC_LOCK}`, itemDetails(name));
    }
    const errs = validateLease(d);
    if (d.uid && d.uid !== existing.metadata.uid) errs.unshift({ type: 'FieldValueInvalid', field: 'metadata.uid', text: `Invalid value: ${q(d.uid)}: field is immutable` });
    if (errs.length) return invalid('Lease', name, errs);
    return { status: 200, body: this.#write('update', namespace, name, d, existing, token) };
  }

  #write(op: LeaseWrite['op'], namespace: string, name: string, d: DecodedLease, existing: Json | undefined, token: string): Json {
    const resourceVersion = String(++this.#resourceVersion);
    const metadata: Json = {
      name,
      namespace,
      uid: existing?.metadata.uid ?? randomUUID(),
      resourceVersion,
      creationTimestamp: existing?.metadata.creationTimestamp ?? rfc3339(Date.now()),
    };
    const labels = nonEmpty(d.labels);
    const annotations = nonEmpty(d.annotations);
    if (labels) metadata.labels = labels;
    if (annotations) metadata.annotations = annotations;
    const obj: Json = { kind: 'Lease', apiVersion: API_VERSION, metadata, spec: { ...d.spec } };
    this.#leases.set(`${namespace}/${name}`, obj);
    this.writes.push({
      at: Date.now(),
      op,
      namespace,
      name,
      resourceVersion,
      holder: d.spec.holderIdentity,
      leaseTransitions: d.spec.leaseTransitions,
      renewTime: d.spec.renewTime,
      token,
      annotations: { ...annotations },
    });
    return structuredClone(obj);
  }
}

export async function startLeaseServer(opts: LeaseServerOptions = {}): Promise<LeaseSimServer> {
  const server: Server = opts.tls ? createTlsServer({ key: opts.tls.key, cert: opts.tls.cert }) : createServer();
  server.keepAliveTimeout = 5_000;
  await new Promise<void>((resolve, reject) => {
    server.once('error', reject);
    server.listen(opts.port ?? 0, opts.host ?? '127.0.0.1', () => resolve());
  });
  const addr = server.address() as AddressInfo;
  const host = addr.family === 'IPv6' ? `[${addr.address}]` : addr.address;
  return new LeaseSimServer(server, `${opts.tls ? 'https' : 'http'}://${host}:${addr.port}`, opts.tokens ?? ['lease-sim-token']);
}
