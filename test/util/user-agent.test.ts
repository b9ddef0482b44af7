import { test } from 'node:test';
import assert from 'node:assert/strict';
import { readFileSync } from 'node:fs';
import { SIDECAR_VERSION, USER_AGENT, userAgentFor } from '../../plugin/util/user-agent.ts';
import { replicaIdentity } from '../../plugin/coordination/identity.ts';

test('the User-Agent carries the package version and, with coordination, the replica', () => {
  const pkg = JSON.parse(readFileSync(new URL('../../package.json', import.meta.url), 'utf8')) as { version: string };
  assert.equal(SIDECAR_VERSION, pkg.version, 'plugin/util/user-agent.ts follows package.json');
  assert.equal(USER_AGENT, `proofpoint-sidecar/${pkg.version}`);
  assert.equal(userAgentFor('node-a_1f2e'), `proofpoint-sidecar/${pkg.version} (replica node-a_1f2e)`);
  assert.equal(userAgentFor(undefined), USER_AGENT);
});

test('a replica identity is the pod name plus a suffix that differs per process', () => {
  const a = replicaIdentity({ POD_NAME: 'proofpoint-sidecar-x7k2p' });
  const b = replicaIdentity({ POD_NAME: 'proofpoint-sidecar-x7k2p' });
  assert.match(a, /^proofpoint-sidecar-x7k2p_[0-9a-f]{8}$/);
  assert.notEqual(a, b);
});
