/**
 * The Lease client (plugin/coordination/kubernetes.ts) against the in-process Lease API server:
 * in-cluster over https with the service account's CA and token (re-read when the kubelet rotates
 * it), kubeconfig forms, error codes, timeouts, and errors that never carry the token.
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { createServer } from 'node:http';
import { readFileSync, renameSync, writeFileSync } from 'node:fs';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import type { AddressInfo } from 'node:net';
import { startLeaseServer } from '../helpers/lease-server.ts';
import { createKubernetesLeaseApi, type KubernetesLeaseApi } from '../../plugin/coordination/kubernetes.ts';
import { LeaseApiError, LeaseConflictError, type LeaseSpec } from '../../plugin/coordination/lease-api.ts';
import { coordinationSchema } from '../../plugin/config/schema.ts';
import { ErrorCode, SidecarError } from '../../plugin/errors.ts';
import { tmpDir } from '../helpers/tmp.ts';

const TLS = fileURLToPath(new URL('../fixtures/tls/', import.meta.url));
const tlsFile = (name: string) => readFileSync(path.join(TLS, name));
const FIRST_TOKEN = 'sa-token-first-Kq81Zw';
const ROTATED_TOKEN = 'sa-token-rotated-Pm27Xc';
const spec = (holder: string): LeaseSpec => ({ holder, leaseDurationSeconds: 15, acquireTime: Date.now(), renewTime: Date.now(), leaseTransitions: 0, annotations: {} });
const soon = () => AbortSignal.timeout(5000);

/** A service account folder as the kubelet mounts it: the token swapped atomically on rotation. */
function serviceAccount(token: string, namespace = 'sidecars'): { dir: string; rotate: (t: string) => void } {
  const dir = tmpDir('pps-sa-');
  writeFileSync(path.join(dir, 'ca.crt'), tlsFile('ca.crt'));
  writeFileSync(path.join(dir, 'namespace'), `${namespace}\n`);
  const write = (t: string) => {
    writeFileSync(path.join(dir, 'token.new'), t);
    renameSync(path.join(dir, 'token.new'), path.join(dir, 'token'));
  };
  write(token);
  return { dir, rotate: write };
}

test('in a pod the client speaks https with the service account CA and token, and reads the token again once it is rotated', async () => {
  const server = await startLeaseServer({ tokens: [FIRST_TOKEN, ROTATED_TOKEN], tls: { key: tlsFile('server.key'), cert: tlsFile('server.crt') } });
  const sa = serviceAccount(FIRST_TOKEN);
  const port = new URL(server.url).port;
  try {
    const api = (await createKubernetesLeaseApi(coordinationSchema.parse({ type: 'kubernetes' }), {
      userAgent: 'kubernetes test',
      env: { KUBERNETES_SERVICE_HOST: '127.0.0.1', KUBERNETES_SERVICE_PORT: port },
      serviceAccountDir: sa.dir,
    })) as KubernetesLeaseApi;
    assert.equal(api.namespace, 'sidecars', 'the namespace comes from the service account folder');
    const created = await api.create('pps-a', spec('pod-a'), soon());
    assert.equal(created.holder, 'pod-a');
    sa.rotate(ROTATED_TOKEN);
    const renewed = await api.update('pps-a', created.resourceVersion, spec('pod-a'), soon());
    assert.ok(Number(renewed.resourceVersion) > Number(created.resourceVersion));
    assert.deepEqual(
      server.writes.map((w) => [w.op, w.token]),
      [
        ['create', FIRST_TOKEN],
        ['update', ROTATED_TOKEN],
      ],
    );
    assert.equal(server.requests.at(-1)!.path, '/apis/coordination.k8s.io/v1/namespaces/sidecars/leases/pps-a');
    assert.ok(server.connections <= 1, `one kept-alive connection for both requests, not ${server.connections}`);
    api.close();
  } finally {
    await server.close();
  }
});

test('in a pod a server whose certificate the service account CA did not sign is refused', async () => {
  const server = await startLeaseServer({ tokens: [FIRST_TOKEN], tls: { key: tlsFile('server.key'), cert: tlsFile('server.crt') } });
  const sa = serviceAccount(FIRST_TOKEN);
  writeFileSync(path.join(sa.dir, 'ca.crt'), tlsFile('server.crt'));
  try {
    const api = await createKubernetesLeaseApi(coordinationSchema.parse({ type: 'kubernetes' }), {
      userAgent: 'kubernetes test',
      env: { KUBERNETES_SERVICE_HOST: '127.0.0.1', KUBERNETES_SERVICE_PORT: new URL(server.url).port },
      serviceAccountDir: sa.dir,
    });
    await assert.rejects(api.get('pps-a', soon()), (err: LeaseApiError) => err instanceof LeaseApiError && err.status === 0 && /cannot read Lease sidecars\/pps-a/.test(err.message));
    assert.equal(server.requests.length, 0, 'nothing was sent to the unverified server');
  } finally {
    await server.close();
  }
});

test('Lease failures carry SIDECAR_ERR codes: 409 is a conflict, a refusal or no answer is an API error', async () => {
  const server = await startLeaseServer({ tokens: ['tok-codes-1234'] });
  const dir = tmpDir('pps-kc-');
  const file = path.join(dir, 'kubeconfig');
  writeFileSync(file, server.kubeconfig('tok-codes-1234', { namespace: 'ns1' }));
  const refusedFile = path.join(dir, 'refused');
  writeFileSync(refusedFile, server.kubeconfig('tok-not-known', { namespace: 'ns1' }));
  try {
    const api = await createKubernetesLeaseApi(coordinationSchema.parse({ type: 'kubernetes', kubeconfig: file }), { userAgent: 't' });
    const first = await api.create('pps-b', spec('pod-a'), soon());
    await assert.rejects(api.create('pps-b', spec('pod-b'), soon()), (err: LeaseConflictError) => {
      assert.ok(err instanceof SidecarError && err instanceof LeaseConflictError);
      assert.equal(err.code, ErrorCode.LEASE_CONFLICT);
      assert.equal(err.reason, 'AlreadyExists');
      return true;
    });
    await api.update('pps-b', first.resourceVersion, spec('pod-a'), soon());
    await assert.rejects(api.update('pps-b', first.resourceVersion, spec('pod-b'), soon()), (err: LeaseConflictError) => err.code === ErrorCode.LEASE_CONFLICT && err.reason === 'Conflict');
    const refused = await createKubernetesLeaseApi(coordinationSchema.parse({ type: 'kubernetes', kubeconfig: refusedFile }), { userAgent: 't' });
    await assert.rejects(refused.get('pps-b', soon()), (err: LeaseApiError) => {
      assert.equal(err.code, ErrorCode.LEASE_API);
      assert.equal(err.status, 401);
      assert.match(err.message, /the service account token was not accepted/);
      return true;
    });
    server.partition('tok-codes-1234');
    const ac = new AbortController();
    setTimeout(() => ac.abort(new LeaseApiError(0, 'no answer within 200 ms')), 200);
    await assert.rejects(api.get('pps-b', ac.signal), (err: LeaseApiError) => err.code === ErrorCode.LEASE_API && err.status === 0);
  } finally {
    await server.close();
  }
});

test('a request is bounded by the client\'s own timeout even when its caller never aborts', async () => {
  const server = await startLeaseServer({ tokens: ['tok-timeout-1234'] });
  const file = path.join(tmpDir('pps-kc-'), 'kubeconfig');
  writeFileSync(file, server.kubeconfig('tok-timeout-1234', { namespace: 'ns1' }));
  server.partition('tok-timeout-1234');
  try {
    const api = await createKubernetesLeaseApi(coordinationSchema.parse({ type: 'kubernetes', kubeconfig: file }), { userAgent: 't', requestTimeoutMs: 200 });
    await assert.rejects(api.get('pps-c', new AbortController().signal), (err: LeaseApiError) => err.status === 0 && /no answer to read of Lease ns1\/pps-c within 200 ms/.test(err.message));
  } finally {
    await server.close();
  }
});

test('an error never contains the token, even when the server echoes it back', async () => {
  const token = 'echoed-token-Zq93Lm55';
  const echo = createServer((req, res) => {
    const body = JSON.stringify({ kind: 'Status', status: 'Failure', reason: 'Forbidden', code: 403, message: `user with ${req.headers.authorization} may not get leases` });
    res.writeHead(403, { 'content-type': 'application/json' }).end(body);
  });
  await new Promise<void>((r) => echo.listen(0, '127.0.0.1', () => r()));
  const dir = tmpDir('pps-kc-');
  const tokenFile = path.join(dir, 'token');
  writeFileSync(tokenFile, token);
  const file = path.join(dir, 'kubeconfig');
  const port = (echo.address() as AddressInfo).port;
  writeFileSync(
    file,
    [
      'apiVersion: v1',
      'clusters: [{ name: c, cluster: { server: "http://127.0.0.1:' + port + '", insecure-skip-tls-verify: true } }]',
      'users: [{ name: u, user: { tokenFile: token } }]',
      'contexts: [{ name: x, context: { cluster: c, user: u, namespace: ns2 } }]',
      'current-context: x',
    ].join('\n'),
  );
  try {
    const api = await createKubernetesLeaseApi(coordinationSchema.parse({ type: 'kubernetes', kubeconfig: file }), { userAgent: 't' });
    const err = await api.get('pps-d', soon()).then(
      () => assert.fail('expected a refusal'),
      (e: LeaseApiError) => e,
    );
    assert.equal(err.status, 403);
    assert.ok(!err.message.includes(token), err.message);
    assert.match(err.message, /Bearer \*\*\* may not get leases/);
    assert.match(err.message, /conf\/kubernetes\/daemonset\/rbac\.yaml/);
  } finally {
    await new Promise((r) => echo.close(r));
  }
});

test('kubeconfig problems are config errors naming the key and what is allowed', async () => {
  const dir = tmpDir('pps-kc-');
  const write = (name: string, text: string) => {
    const f = path.join(dir, name);
    writeFileSync(f, text);
    return coordinationSchema.parse({ type: 'kubernetes', kubeconfig: f });
  };
  const make = (cfg: ReturnType<typeof write>) => createKubernetesLeaseApi(cfg, { userAgent: 't', namespaceFile: path.join(dir, 'no-namespace') });
  const isConfig = (re: RegExp) => (err: SidecarError) => err.code === ErrorCode.CONFIG && err.exitCode === 2 && re.test(err.message);
  await assert.rejects(make(coordinationSchema.parse({ type: 'kubernetes', kubeconfig: path.join(dir, 'missing') })), isConfig(/^globals\.coordination\.kubeconfig: cannot read /));
  await assert.rejects(make(write('nocluster', 'apiVersion: v1\ncurrent-context: x\n')), isConfig(/names no current cluster/));
  const exec = 'clusters: [{ name: c, cluster: { server: "https://k8s.example:6443" } }]\nusers: [{ name: u, user: { exec: { command: aws } } }]\ncontexts: [{ name: x, context: { cluster: c, user: u } }]\ncurrent-context: x\n';
  await assert.rejects(make(write('exec', exec)), isConfig(/users\[\]\.user\.exec, which is not supported; allowed: token, tokenFile, client-certificate/));
  const noNs = exec.replace('{ exec: { command: aws } }', '{ token: abcdefgh }');
  await assert.rejects(make(write('nons', noNs)), isConfig(/^globals\.coordination\.namespace: not set/));
  await assert.rejects(
    createKubernetesLeaseApi(coordinationSchema.parse({ type: 'kubernetes' }), { userAgent: 't', env: {} }),
    isConfig(/^globals\.coordination: not running in a Kubernetes pod/),
  );
});
