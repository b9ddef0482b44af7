import { test, after, before } from 'node:test';
import assert from 'node:assert/strict';
import { readFileSync, readdirSync, statSync, writeFileSync } from 'node:fs';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { startLeaseServer, type LeaseSimServer } from './lease-server.ts';
import { KubernetesLeaseApi, microTime } from '../../plugin/coordination/kubernetes.ts';
import { kubeconfigEndpoint } from '../../plugin/coordination/kube-config.ts';
import { tmpDir } from './tmp.ts';

const NS = 'proofpoint';
const TOKEN_A = 'lease-test-token-a';
const TOKEN_B = 'lease-test-token-b';
const MICRO = /^\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}\.\d{6}Z$/;
let server: LeaseSimServer;

before(async () => {
  server = await startLeaseServer({ tokens: [TOKEN_A, TOKEN_B] });
});
after(async () => server.close());

/** The sidecar's own Lease client, configured from the server's kubeconfig. */
function client(token: string): KubernetesLeaseApi {
  const file = path.join(tmpDir('pps-lease-sim-'), 'kubeconfig');
  writeFileSync(file, server.kubeconfig(token, { namespace: NS }));
  return new KubernetesLeaseApi(kubeconfigEndpoint(file), NS, 'lease-server test');
}

function lease(name: string, holder: string, extra: { annotations?: Record<string, string>; resourceVersion?: string } = {}) {
  const now = microTime(Date.now());
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

test('the sidecar\'s client reaches the plain http:// server only with insecure-skip-tls-verify in the kubeconfig', async () => {
  const dir = tmpDir('pps-lease-sim-');
  const file = path.join(dir, 'kubeconfig');
  writeFileSync(file, server.kubeconfig(TOKEN_A, { namespace: NS }));
  const endpoint = kubeconfigEndpoint(file);
  assert.equal(endpoint.server.origin, server.url);
  assert.equal(endpoint.namespace, NS);
  assert.equal(endpoint.token?.read().toString(), TOKEN_A);

  const strict = path.join(dir, 'strict');
  writeFileSync(strict, server.kubeconfig(TOKEN_A).replace(/^.*insecure-skip-tls-verify.*\n/m, ''));
  assert.throws(() => kubeconfigEndpoint(strict), /is not https:\/\/; allowed: https:\/\/, or http:\/\/ with insecure-skip-tls-verify: true/);
  assert.equal(microTime(Date.UTC(2026, 10, 23, 7, 0, 0, 123)), '2026-11-23T07:00:00.123000Z');
  assert.equal((await client(TOKEN_A).get('nothing-here', AbortSignal.timeout(5000))), undefined);
});

test('read, create, replace with optimistic concurrency', async () => {
  const missing = await raw('GET', `${leasesPath()}/leader`);
  assert.equal(missing.status, 404);
  assert.equal(missing.json.reason, 'NotFound');
  assert.equal(missing.json.message, 'leases.coordination.k8s.io "leader" not found');
  assert.deepEqual(missing.json.details, { name: 'leader', group: 'coordination.k8s.io', kind: 'leases' });

  const created = await raw('POST', leasesPath(), lease('leader', 'pod-a', { annotations: { 'proofpoint.example/cursor': '{"t":1}' } }));
  assert.equal(created.status, 201);
  const rv1 = created.json.metadata.resourceVersion as string;
  assert.match(rv1, /^\d+$/);
  assert.match(created.json.metadata.uid, /^[0-9a-f-]{36}$/);
  assert.equal(typeof created.json.spec.renewTime, 'string');
  assert.match(String(created.json.spec.renewTime), MICRO);
  assert.match(created.json.metadata.creationTimestamp, /^\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}Z$/);

  const again = await raw('POST', leasesPath(), lease('leader', 'pod-b'));
  assert.equal(again.status, 409);
  assert.equal(again.json.reason, 'AlreadyExists');
  assert.equal(again.json.message, 'leases.coordination.k8s.io "leader" already exists');

  const read = (await raw('GET', `${leasesPath()}/leader`)).json;
  assert.deepEqual(read.metadata.annotations, { 'proofpoint.example/cursor': '{"t":1}' });
  assert.equal(read.spec.holderIdentity, 'pod-a');

  const renewed = (await raw('PUT', `${leasesPath()}/leader`, { ...read, spec: { ...read.spec, renewTime: microTime(Date.now()) } })).json;
  const rv2 = renewed.metadata.resourceVersion as string;
  assert.ok(Number(rv2) > Number(rv1));
  assert.equal(renewed.metadata.uid, created.json.metadata.uid);
  assert.equal(renewed.metadata.creationTimestamp, created.json.metadata.creationTimestamp);

  const stale = await raw('PUT', `${leasesPath()}/leader`, lease('leader', 'pod-b', { resourceVersion: rv1 }));
  assert.equal(stale.status, 409);
  assert.equal(stale.json.reason, 'Conflict');
  assert.equal(
    stale.json.message,
    'Operation cannot be fulfilled on leases.coordination.k8s.io "leader": the object has been modified; please apply your changes to the latest version and try again',
  );

  const noRv = await raw('PUT', `${leasesPath()}/leader`, lease('leader', 'pod-b'));
  assert.equal(noRv.status, 422);
  assert.equal(noRv.json.reason, 'Invalid');
  assert.equal(noRv.json.message, 'leases.coordination.k8s.io "leader" is invalid: metadata.resourceVersion: Invalid value: 0x0: must be specified for an update');

  // A PUT that omits the annotations removes them; uid and creationTimestamp stay.
  const taken = (await raw('PUT', `${leasesPath()}/leader`, lease('leader', 'pod-b', { resourceVersion: rv2 }))).json;
  assert.equal(taken.metadata.annotations, undefined);
  assert.equal(server.lease(NS, 'leader').spec.holderIdentity, 'pod-b');
  assert.equal(server.lease(NS, 'leader').metadata.annotations, undefined);
  assert.equal(server.lease(NS, 'leader').metadata.uid, created.json.metadata.uid);

  const writes = server.writes.filter((w) => w.name === 'leader');
  assert.deepEqual(
    writes.map((w) => [w.op, w.holder, w.token, w.resourceVersion]),
    [
      ['create', 'pod-a', TOKEN_A, rv1],
      ['update', 'pod-a', TOKEN_A, rv2],
      ['update', 'pod-b', TOKEN_A, taken.metadata.resourceVersion],
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

  const big = { 'proofpoint.example/state': 'x'.repeat(262_144) };
  const oversize = await raw('POST', leasesPath(), lease('big', 'pod-a', { annotations: big }));
  assert.equal(oversize.status, 422);
  assert.equal(oversize.json.message, 'Lease.coordination.k8s.io "big" is invalid: metadata.annotations: Too long: must have at most 262144 bytes');
  assert.deepEqual(oversize.json.details.causes, [{ reason: 'FieldValueTooLong', message: 'Too long: must have at most 262144 bytes', field: 'metadata.annotations' }]);
  assert.equal(server.lease(NS, 'big'), undefined);

  // Leases allow create-on-update: a PUT of a missing name creates it.
  const put = await raw('PUT', `${leasesPath()}/fresh`, body('fresh', {}));
  assert.equal(put.status, 201);
  assert.equal(server.writes.at(-1)!.op, 'create');

  assert.equal((await raw('GET', '/api/v1/namespaces')).status, 404);
  assert.equal((await raw('DELETE', `${leasesPath()}/fresh`)).json.reason, 'MethodNotAllowed');
  assert.equal((await raw('GET', `${leasesPath()}/fresh`, undefined, '')).json.reason, 'Unauthorized');
});

test('an unknown token is refused with 401 and a Status body', async () => {
  await assert.rejects(client('not-a-token').get('leader', AbortSignal.timeout(5000)), (err: Error & { status?: number }) => {
    assert.equal(err.status, 401);
    assert.match(err.message, /^Kubernetes answered 401 Unauthorized to read of Lease proofpoint\/leader: Unauthorized/);
    return true;
  });
  const rawRefusal = await raw('GET', `${leasesPath()}/leader`, undefined, 'not-a-token');
  assert.deepEqual(rawRefusal.json, { kind: 'Status', apiVersion: 'v1', metadata: {}, status: 'Failure', message: 'Unauthorized', reason: 'Unauthorized', code: 401 });
  assert.equal(server.requests.at(-1)!.token, 'not-a-token');
});

test('a partition holds one token\'s requests unanswered until heal', async () => {
  const a = client(TOKEN_A);
  const b = client(TOKEN_B);
  await a.create('partitioned', { holder: 'pod-a', leaseDurationSeconds: 15, acquireTime: Date.now(), renewTime: Date.now(), leaseTransitions: 0, annotations: {} }, AbortSignal.timeout(5000));
  server.partition(TOKEN_B);
  const before = server.requests.length;
  const [held, answered] = await Promise.allSettled([a, b].reverse().map((c) => c.get('partitioned', AbortSignal.timeout(300))));
  assert.equal(held.status, 'rejected');
  assert.equal((held.reason as Error).name, 'TimeoutError', String(held.reason));
  assert.equal(answered.status, 'fulfilled');
  const during = server.requests.slice(before);
  assert.deepEqual(during.map((r) => [r.token, r.status]).sort(), [[TOKEN_A, 200], [TOKEN_B, 0]]);

  // A request that is still waiting when the partition heals has its connection reset.
  const waiting = fetch(`${server.url}${leasesPath()}/partitioned`, { headers: { authorization: `Bearer ${TOKEN_B}` } });
  while (server.requests.length < before + 3) await new Promise((r) => setImmediate(r));
  server.heal(TOKEN_B);
  await assert.rejects(waiting);
  assert.equal(server.requests.at(-1)!.status, 0);

  const healed = await b.get('partitioned', AbortSignal.timeout(300));
  assert.equal(healed?.holder, 'pod-a');
  assert.equal(server.requests.at(-1)!.status, 200);
  a.close();
  b.close();
});

const PLUGIN = fileURLToPath(new URL('../../plugin/', import.meta.url));

test('the Lease API server is a test helper: nothing under plugin/ (what the image ships) holds or imports it', () => {
  const files = readdirSync(PLUGIN, { recursive: true }).map(String).filter((f) => statSync(path.join(PLUGIN, f)).isFile());
  assert.ok(files.includes(path.join('coordination', 'kubernetes.ts')), 'the plugin tree was listed');
  const offenders = files.filter(
    (f) => /lease-server/.test(f) || /(import|from)\s*\(?\s*['"][^'"]*lease-server|class LeaseSimServer|function startLeaseServer/.test(readFileSync(path.join(PLUGIN, f), 'utf8')),
  );
  assert.deepEqual(offenders, []);
});
