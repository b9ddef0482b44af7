import { test } from 'node:test';
import assert from 'node:assert/strict';
import { writeFileSync } from 'node:fs';
import path from 'node:path';
import { startTapSimulator } from '../../plugin/simulator/tap/index.ts';
import { startPodSimulator } from '../../plugin/simulator/pod/index.ts';
import { runCliAsync } from '../helpers/cli.ts';
import { TEST_SECRETS } from '../helpers/secrets.ts';
import { tmpDir } from '../helpers/tmp.ts';

test('check --online gives a verdict per service: accepted, refused (error 100), and never prints a credential', async () => {
  const tap = await startTapSimulator({ credentials: { username: TEST_SECRETS.tapPrincipal, password: TEST_SECRETS.tapSecret } });
  const pod = await startPodSimulator({ apiKey: TEST_SECRETS.podApiKey, rate: 0 });
  try {
    const dir = tmpDir();
    const write = (name: string, tapPassword: string, podKey: string) => {
      const file = path.join(dir, name);
      writeFileSync(
        file,
        JSON.stringify({
          globals: { state_dir: path.join(dir, 'state') },
          output: { type: 'stdout' },
          inputs: {
            proofpoint_tap: {
              id: 't',
              override_url_base: tap.url,
              credentials: { username: TEST_SECRETS.tapPrincipal, password: tapPassword },
              services: { clicksBlocked: {}, messagesDelivered: {} },
            },
            proofpoint_on_demand: {
              id: 'p',
              override_url_base: pod.url,
              credentials: { cluster_id: pod.credentials.cluster_id, api_key: podKey },
              services: { maillog: {}, audit: {} },
            },
          },
        }),
      );
      return file;
    };

    const good = await runCliAsync(['check', '--online', '--config', write('good.json', TEST_SECRETS.tapSecret, TEST_SECRETS.podApiKey)]);
    assert.equal(good.status, 0, good.stdout + good.stderr);
    for (const svc of ['proofpoint_tap/clicksBlocked', 'proofpoint_tap/messagesDelivered', 'proofpoint_on_demand/maillog', 'proofpoint_on_demand/audit']) {
      assert.match(good.stdout, new RegExp(`^OK   ${svc}: credentials accepted`, 'm'));
    }
    assert.match(good.stdout, /every enabled service answered/);
    // The POD probe used archive mode, never a live session (which would move the resume point).
    assert.ok(pod.sessions.length >= 2);
    assert.ok(pod.sessions.every((s) => s.mode === 'archive'), JSON.stringify(pod.sessions.map((s) => s.mode)));

    const bad = await runCliAsync(['check', '--online', '--config', write('bad.json', TEST_SECRETS.forwardPassword, TEST_SECRETS.forwardSharedKey)]);
    assert.equal(bad.status, 1);
    assert.match(bad.stdout, /^FAIL proofpoint_tap\/clicksBlocked: credentials refused \(error 100\)/m);
    assert.match(bad.stdout, /^FAIL proofpoint_on_demand\/maillog: credentials refused \(error 100\)/m);
    for (const s of Object.values(TEST_SECRETS)) assert.ok(!(bad.stdout + bad.stderr + good.stdout + good.stderr).includes(s), 'credential in output');
  } finally {
    await tap.close();
    await pod.close();
  }
});

test('check --online with globals.coordination reads every feed Lease: readable, held by whom, or refused with the reason', async () => {
  const { startLeaseServer } = await import('../../plugin/simulator/kubernetes/lease-server.ts');
  const leases = await startLeaseServer({ tokens: ['good-token'] });
  const pod = await startPodSimulator({ apiKey: TEST_SECRETS.podApiKey, rate: 0 });
  try {
    const dir = tmpDir();
    const write = (name: string, token: string) => {
      const kubeconfig = path.join(dir, `${name}.kubeconfig`);
      writeFileSync(kubeconfig, leases.kubeconfig(token, { namespace: 'sidecars' }));
      const file = path.join(dir, `${name}.json`);
      writeFileSync(
        file,
        JSON.stringify({
          globals: { state_dir: path.join(dir, 'state'), coordination: { type: 'kubernetes', kubeconfig } },
          output: { type: 'stdout' },
          inputs: {
            proofpoint_on_demand: {
              id: 'p',
              override_url_base: pod.url,
              credentials: { cluster_id: pod.credentials.cluster_id, api_key: TEST_SECRETS.podApiKey },
              services: { maillog: {} },
            },
          },
        }),
      );
      return file;
    };
    const good = await runCliAsync(['check', '--online', '--config', write('good', 'good-token')]);
    assert.equal(good.status, 0, good.stdout + good.stderr);
    assert.match(good.stdout, /^OK   coordination\/p\/maillog: Lease sidecars\/proofpoint-sidecar-p-maillog readable \(it does not exist yet/m);
    const bad = await runCliAsync(['check', '--online', '--config', write('bad', 'wrong-token')]);
    assert.equal(bad.status, 1);
    assert.match(bad.stdout, /^FAIL coordination\/p\/maillog: Kubernetes answered 401 .*the service account token was not accepted/m);
    assert.ok(!(good.stdout + bad.stdout + bad.stderr).includes('good-token'), 'the token is never printed');
  } finally {
    await leases.close();
    await pod.close();
  }
});
