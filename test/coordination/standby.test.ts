/**
 * A replica holding no feed (coordination on, every Lease held by a live peer) stays small: it
 * loads no source machinery (TAP, PoD) and no simulator until it acquires a feed, and no Kubernetes
 * client library at all.
 * What a process loaded is seen through loader hooks (test/helpers/module-trace.mjs).
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { readFileSync } from 'node:fs';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { standbyHolds, startStandby, stopStandby } from '../helpers/standby.ts';
import { tmpDir } from '../helpers/tmp.ts';

const TRACE_HOOK = fileURLToPath(new URL('../helpers/module-trace.mjs', import.meta.url));
const PLUGIN = fileURLToPath(new URL('../../plugin/', import.meta.url));

/** Source files a standby must not load: the simulators, and the inputs' code but their descriptor (index.ts), config, errors and budget. */
const NOT_FOR_A_STANDBY = /^(simulator\/|sources\/(tap|pod)\/(?!index\.ts$|config\.ts$|errors\.ts$|budget\.ts$))/;

test('a standby replica loads no TAP or PoD source code, no simulator and no Kubernetes client library while it holds no feed', async () => {
  const file = path.join(tmpDir('pps-standby-trace-'), 'modules.txt');
  const s = await startStandby({ nodeArgs: ['--import', 'tsx', '--import', TRACE_HOOK], env: { MODULE_TRACE_FILE: file } });
  try {
    // A few retry periods (2 s) of watching Leases it cannot take.
    await new Promise((r) => setTimeout(r, 3000));
    assert.deepEqual(standbyHolds(s), [], 'the standby holds no feed');
  } finally {
    await stopStandby(s);
  }
  const loaded = readFileSync(file, 'utf8').split('\n').filter(Boolean).map((u) => (u.startsWith('file:') ? fileURLToPath(u) : u));
  const ours = loaded.filter((f) => f.startsWith(PLUGIN)).map((f) => path.relative(PLUGIN, f).split(path.sep).join('/'));
  assert.ok(ours.includes('sidecar.ts') && ours.includes('coordination/coordinator.ts'), `the trace saw the sidecar start: ${ours.join(', ')}`);
  assert.deepEqual(ours.filter((f) => NOT_FOR_A_STANDBY.test(f)), [], 'no source, simulator or demo machinery loaded');
  // Its Leases go through plugin/coordination/kubernetes.ts over node:https: @kubernetes/client-node alone was ~69 MiB of RSS.
  assert.deepEqual(loaded.filter((f) => f.includes(`${path.sep}@kubernetes${path.sep}`)), [], 'no @kubernetes/* package loaded');
});
