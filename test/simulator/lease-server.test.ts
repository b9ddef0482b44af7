import { test, after, before } from 'node:test';
import assert from 'node:assert/strict';
import * as k8s from '@kubernetes/client-node';
import { startLeaseServer, type LeaseSimServer } from '../../plugin/simulator/kubernetes/lease-server.ts';

const NS = 'proofpoint';
const TOKEN_A = 'lease-test-token-a';
const TOKEN_B = 'lease-test-token-b';
const MICRO = /^\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}\.\d{6}Z$/;
let server: LeaseSimServer;

before(async () => {
  server = await startLeaseServer({ tokens: [TOKEN_A, TOKEN_B] });
});
after(async () => server.close());

function client(token: string): k8s.CoordinationV1Api {
  const kc = new k8s.KubeConfig();
  kc.loadFromString(server.kubeconfig(token, { namespace: NS }));
  return kc.makeApiClient(k8s.CoordinationV1Api);
}

/**
 * Per-call options that abort the request after `ms`. The object-style API (what makeApiClient
 * returns) passes these to its Observable layer unwrapped, so `pre`/`post` must return the library's
 * Observable: a Promise-returning middleware fails with "callback(...).toPromise is not a function".
 */
function abortAfter(ms: number): k8s.ConfigurationOptions {
  return {
    middleware: [
      {
        pre: (ctx) => {
          ctx.setSignal(AbortSignal.timeout(ms));
          return new k8s.Observable(Promise.resolve(ctx));
        },
        post: (rsp) => new k8s.Observable(Promise.resolve(rsp)),
      },
    ],
    middlewareMergeStrategy: 'append',
  };
}

/** The ApiException a call rejects with, its body parsed (the client leaves it a string). */
async function apiError(call: Promise<unknown>): Promise<{ code: number; status: any }> {
  try {
    await call;
  } catch (err) {
    if (!(err instanceof k8s.ApiException)) throw err;
    return { code: err.code, status: typeof err.body === 'string' ? JSON.parse(err.body) : err.body };
  }
  return assert.fail('expected an ApiException');
}

function lease(name: string, holder: string, extra: { annotations?: Record<string, string>; resourceVersion?: string } = {}): k8s.V1Lease {
  const now = new k8s.V1MicroTime(Date.now());
  return {
    metadata: { name, annotations: extra.annotations, resourceVersion: extra.resourceVersion },
    spec: { holderIdentity: holder, leaseDurationSeconds: 15, acquireTime: now, renewTime: now, leaseTransitions: 0 },
  };
}

async function raw(method: string, path: string, body?: unknown, token = TOKEN_A) {
  const res = await fetch(`${server.url}${path}`, {
    method,
    headers: { authorization: `Bearer ${token}`, 'content-type': 'application/json' },
    body: body === undefined ? undefined : typeof body === 'string' ? body : JSON.stringify(body),
  });
  return { status: res.status, type: res.headers.get('content-type'), warning: res.headers.get('warning'), json: (await res.json()) as any };
}
const leasesPath = (ns = NS) => `/apis/coordination.k8s.io/v1/namespaces/${ns}/leases`;

test('the client reaches a plain http:// server only with insecure-skip-tls-verify in the kubeconfig', async () => {
  const kc = new k8s.KubeConfig();
  kc.loadFromString(server.kubeconfig(TOKEN_A, { namespace: NS }));
  assert.equal(kc.getCurrentCluster()?.server, server.url);
  assert.equal(kc.getContextObject(kc.getCurrentContext())?.namespace, NS);
  assert.equal(kc.getCurrentUser()?.token, TOKEN_A);

  const strict = new k8s.KubeConfig();
  strict.loadFromString(server.kubeconfig(TOKEN_A).replace(/^.*insecure-skip-tls-verify.*\n/m, ''));
  await assert.rejects(
    strict.makeApiClient(k8s.CoordinationV1Api).readNamespacedLease({ name: 'x', namespace: NS }),
    /HTTP protocol is not allowed when skipTLSVerify is not set or false/,
  );
  assert.equal(new k8s.V1MicroTime(Date.UTC(2026, 10, 23, 7, 0, 0, 123)).toISOString(), '2026-11-23T07:00:00.123000Z');
});

test('read, create, replace with optimistic concurrency, through the client', async () => {
  const api = client(TOKEN_A);
  const missing = await apiError(api.readNamespacedLease({ name: 'leader', namespace: NS }));
  assert.equal(missing.code, 404);
  assert.equal(missing.status.reason, 'NotFound');
  assert.equal(missing.status.message, 'leases.coordination.k8s.io "leader" not found');
  assert.deepEqual(missing.status.details, { name: 'leader', group: 'coordination.k8s.io', kind: 'leases' });

  const created = await api.createNamespacedLeaseWithHttpInfo({ namespace: NS, body: lease('leader', 'pod-a', { annotations: { 'proofpoint.example/cursor': '{"t":1}' } }) });
  assert.equal(created.httpStatusCode, 201);
  const rv1 = created.data.metadata!.resourceVersion!;
  assert.match(rv1, /^\d+$/);
  assert.match(created.data.metadata!.uid!, /^[0-9a-f-]{36}$/);
  // Typed V1MicroTime / Date, but the client hands back MicroTimes as the server's strings.
  assert.equal(typeof created.data.spec!.renewTime, 'string');
  assert.match(String(created.data.spec!.renewTime), MICRO);
  assert.ok(created.data.metadata!.creationTimestamp instanceof Date);

  const again = await apiError(api.createNamespacedLease({ namespace: NS, body: lease('leader', 'pod-b') }));
  assert.equal(again.code, 409);
  assert.equal(again.status.reason, 'AlreadyExists');
  assert.equal(again.status.message, 'leases.coordination.k8s.io "leader" already exists');

  const read = await api.readNamespacedLease({ name: 'leader', namespace: NS });
  assert.deepEqual(read.metadata!.annotations, { 'proofpoint.example/cursor': '{"t":1}' });
  assert.equal(read.spec!.holderIdentity, 'pod-a');

  const renewed = await api.replaceNamespacedLease({ name: 'leader', namespace: NS, body: { ...read, spec: { ...read.spec, renewTime: new k8s.V1MicroTime(Date.now()) } } });
  const rv2 = renewed.metadata!.resourceVersion!;
  assert.ok(Number(rv2) > Number(rv1));
  assert.equal(renewed.metadata!.uid, created.data.metadata!.uid);
  assert.equal(renewed.metadata!.creationTimestamp!.getTime(), created.data.metadata!.creationTimestamp!.getTime());

  const stale = await apiError(api.replaceNamespacedLease({ name: 'leader', namespace: NS, body: lease('leader', 'pod-b', { resourceVersion: rv1 }) }));
  assert.equal(stale.code, 409);
  assert.equal(stale.status.reason, 'Conflict');
  assert.equal(
    stale.status.message,
    'Operation cannot be fulfilled on leases.coordination.k8s.io "leader": the object has been modified; please apply your changes to the latest version and try again',
  );

  const noRv = await apiError(api.replaceNamespacedLease({ name: 'leader', namespace: NS, body: lease('leader', 'pod-b') }));
  assert.equal(noRv.code, 422);
  assert.equal(noRv.status.reason, 'Invalid');
  assert.equal(noRv.status.message, 'leases.coordination.k8s.io "leader" is invalid: metadata.resourceVersion: Invalid value: 0x0: must be specified for an update');

  // A PUT that omits the annotations removes them; uid and creationTimestamp stay.
  const taken = await api.replaceNamespacedLease({ name: 'leader', namespace: NS, body: lease('leader', 'pod-b', { resourceVersion: rv2 }) });
  assert.equal(taken.metadata!.annotations, undefined);
  assert.equal(server.lease(NS, 'leader').spec.holderIdentity, 'pod-b');
  assert.equal(server.lease(NS, 'leader').metadata.annotations, undefined);
  assert.equal(server.lease(NS, 'leader').metadata.uid, created.data.metadata!.uid);

  const writes = server.writes.filter((w) => w.name === 'leader');
  assert.deepEqual(
    writes.map((w) => [w.op, w.holder, w.token, w.resourceVersion]),
    [
      ['create', 'pod-a', TOKEN_A, rv1],
      ['update', 'pod-a', TOKEN_A, rv2],
      ['update', 'pod-b', TOKEN_A, taken.metadata!.resourceVersion],
    ],
  );
  assert.deepEqual(writes[0]!.annotations, { 'proofpoint.example/cursor': '{"t":1}' });
  assert.deepEqual(writes[2]!.annotations, {});
  assert.equal(writes[0]!.leaseTransitions, 0);
  assert.match(writes[1]!.renewTime!, MICRO);
});

test('decoding and validation refusals, with the apiserver\'s Status bodies', async () => {
  const body = (name: string, spec: Record<string, unknown>, metadata: Record<string, unknown> = {}) => ({
    apiVersion: 'coordination.k8s.io/v1',
    kind: 'Lease',
    metadata: { name, ...metadata },
    spec: { holderIdentity: 'pod-a', leaseDurationSeconds: 15, ...spec },
  });
  const millis = await raw('POST', leasesPath(), body('ms', { renewTime: '2026-11-23T07:00:00.123Z' }));
  assert.equal(millis.status, 400);
  assert.equal(millis.type, 'application/json');
  assert.deepEqual(millis.json, {
    kind: 'Status',
    apiVersion: 'v1',
    metadata: {},
    status: 'Failure',
    message:
      'Lease in version "v1" cannot be handled as a Lease: parsing time "2026-11-23T07:00:00.123Z" as "2006-01-02T15:04:05.000000Z07:00": cannot parse ".123Z" as ".000000"',
    reason: 'BadRequest',
    code: 400,
  });
  const noFraction = await raw('POST', leasesPath(), body('s', { acquireTime: '2026-11-23T07:00:00Z' }));
  assert.match(noFraction.json.message, /cannot parse "Z" as "\.000000"$/);
  const nanos = await raw('POST', leasesPath(), body('ns', { renewTime: '2026-11-23T07:00:00.123456789Z' }));
  assert.match(nanos.json.message, /cannot parse "789Z" as "Z07:00"$/);
  assert.equal((await raw('POST', leasesPath(), body('d', { leaseDurationSeconds: '15' }))).status, 400);
  assert.equal((await raw('POST', leasesPath(), body('d', { leaseTransitions: 1.5 }))).status, 400);
  assert.equal((await raw('POST', leasesPath(), '{"metadata":')).status, 400);

  // An offset is accepted and served back in UTC, as the apiserver re-encodes MicroTime.
  const offset = await raw('POST', leasesPath(), body('offset', { renewTime: '2026-11-23T08:00:00.123456+01:00', extra: 1 }));
  assert.equal(offset.status, 201);
  assert.equal(offset.json.spec.renewTime, '2026-11-23T07:00:00.123456Z');
  assert.equal(offset.json.spec.extra, undefined);
  assert.equal(offset.warning, '299 - "unknown field \\"spec.extra\\""');

  const nameMismatch = await raw('PUT', `${leasesPath()}/offset`, body('other', {}, { resourceVersion: offset.json.metadata.resourceVersion }));
  assert.equal(nameMismatch.status, 400);
  assert.equal(nameMismatch.json.message, 'the name of the object (other) does not match the name on the URL (offset)');
  const nsMismatch = await raw('POST', leasesPath(), body('x', {}, { namespace: 'elsewhere' }));
  assert.equal(nsMismatch.status, 400);
  assert.equal(nsMismatch.json.message, 'the namespace of the provided object does not match the namespace sent on the request');

  const badName = await raw('POST', leasesPath(), body('Bad_Name', {}));
  assert.equal(badName.status, 422);
  assert.match(badName.json.message, /^Lease\.coordination\.k8s\.io "Bad_Name" is invalid: metadata\.name: Invalid value: "Bad_Name": a lowercase RFC 1123 subdomain/);

  const api = client(TOKEN_A);
  const big = { 'proofpoint.example/state': 'x'.repeat(262_144) };
  const oversize = await apiError(api.createNamespacedLease({ namespace: NS, body: lease('big', 'pod-a', { annotations: big }) }));
  assert.equal(oversize.code, 422);
  assert.equal(oversize.status.message, 'Lease.coordination.k8s.io "big" is invalid: metadata.annotations: Too long: must have at most 262144 bytes');
  assert.deepEqual(oversize.status.details.causes, [{ reason: 'FieldValueTooLong', message: 'Too long: must have at most 262144 bytes', field: 'metadata.annotations' }]);
  assert.equal(server.lease(NS, 'big'), undefined);

  // Leases allow create-on-update: a PUT of a missing name creates it.
  const put = await raw('PUT', `${leasesPath()}/fresh`, body('fresh', {}));
  assert.equal(put.status, 201);
  assert.equal(server.writes.at(-1)!.op, 'create');

  assert.equal((await raw('GET', '/api/v1/namespaces')).status, 404);
  assert.equal((await raw('DELETE', `${leasesPath()}/fresh`)).json.reason, 'MethodNotAllowed');
  assert.equal((await raw('GET', `${leasesPath()}/fresh`, undefined, '')).json.reason, 'Unauthorized');
});

test('an unknown token is refused with 401, which the client reports without a body', async () => {
  const refused = await apiError(client('not-a-token').readNamespacedLease({ name: 'leader', namespace: NS }));
  assert.equal(refused.code, 401);
  assert.equal(refused.status, undefined);
  const rawRefusal = await raw('GET', `${leasesPath()}/leader`, undefined, 'not-a-token');
  assert.deepEqual(rawRefusal.json, { kind: 'Status', apiVersion: 'v1', metadata: {}, status: 'Failure', message: 'Unauthorized', reason: 'Unauthorized', code: 401 });
  assert.equal(server.requests.at(-1)!.token, 'not-a-token');
});

test('a partition holds one token\'s requests unanswered until heal', async () => {
  const a = client(TOKEN_A);
  const b = client(TOKEN_B);
  await a.createNamespacedLease({ namespace: NS, body: lease('partitioned', 'pod-a') });
  server.partition(TOKEN_B);
  const before = server.requests.length;
  const [held, answered] = await Promise.allSettled([
    b.readNamespacedLease({ name: 'partitioned', namespace: NS }, abortAfter(300)),
    a.readNamespacedLease({ name: 'partitioned', namespace: NS }, abortAfter(300)),
  ]);
  assert.equal(held.status, 'rejected');
  assert.ok(held.reason instanceof k8s.AbortError, String(held.reason));
  assert.equal(answered.status, 'fulfilled');
  const during = server.requests.slice(before);
  assert.deepEqual(during.map((r) => [r.token, r.status]).sort(), [[TOKEN_A, 200], [TOKEN_B, 0]]);

  // A request that is still waiting when the partition heals has its connection reset.
  const waiting = fetch(`${server.url}${leasesPath()}/partitioned`, { headers: { authorization: `Bearer ${TOKEN_B}` } });
  while (server.requests.length < before + 3) await new Promise((r) => setImmediate(r));
  server.heal(TOKEN_B);
  await assert.rejects(waiting);
  assert.equal(server.requests.at(-1)!.status, 0);

  const healed = await b.readNamespacedLease({ name: 'partitioned', namespace: NS }, abortAfter(300));
  assert.equal(healed.spec!.holderIdentity, 'pod-a');
  assert.equal(server.requests.at(-1)!.status, 200);
});
