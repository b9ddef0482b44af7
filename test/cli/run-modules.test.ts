/**
 * The production path carries no test or demo code: `run`, collecting from both inputs, loads no
 * simulator and none of the demo's machinery (plugin/cli/demo-run.ts is loaded only by `demo`).
 * The simulators serve this test from its own process; the CLI child records every module it
 * loads through loader hooks (test/helpers/module-trace.mjs).
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import { readFileSync, writeFileSync } from 'node:fs';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { startTapSimulator } from '../../plugin/simulator/tap/index.ts';
import { startPodSimulator } from '../../plugin/simulator/pod/index.ts';
import { MAIN } from '../helpers/cli.ts';
import { tmpDir } from '../helpers/tmp.ts';
import { until } from '../helpers/net.ts';

const TRACE_HOOK = fileURLToPath(new URL('../helpers/module-trace.mjs', import.meta.url));
const PLUGIN = fileURLToPath(new URL('../../plugin/', import.meta.url));
const TEST_OR_DEMO_CODE = /^(simulator\/|cli\/demo-run\.ts$)/;

test('run loads no simulator and no demo code while it collects from TAP and PoD', async () => {
  const tap = await startTapSimulator({ ratesPerHour: { messagesDelivered: 600 } });
  const pod = await startPodSimulator({ rate: { maillog: 5 } });
  const dir = tmpDir('pps-run-modules-');
  const trace = path.join(dir, 'modules.txt');
  const config = path.join(dir, 'c.json');
  writeFileSync(
    config,
    JSON.stringify({
      globals: { state_dir: path.join(dir, 'state'), shutdown_timeout_secs: 5 },
      output: { type: 'stdout' },
      inputs: {
        proofpoint_tap: {
          id: 't',
          override_url_base: tap.url,
          credentials: tap.credentials,
          window_lag_secs: 30,
          services: { messagesDelivered: { start_time_in_utc: new Date(Date.now() - 2 * 3600_000).toISOString(), request_period_in_seconds: 10 } },
        },
        proofpoint_on_demand: { id: 'p', override_url_base: pod.url, credentials: pod.credentials, services: { maillog: {} } },
      },
    }),
  );
  const child = spawn(process.execPath, ['--import', 'tsx', '--import', TRACE_HOOK, MAIN, 'run', '--config', config], {
    env: { ...process.env, MODULE_TRACE_FILE: trace },
    stdio: ['ignore', 'pipe', 'pipe'],
  });
  let stdout = '';
  let stderr = '';
  child.stdout.on('data', (c) => (stdout += c));
  child.stderr.on('data', (c) => (stderr += c));
  const exited = new Promise<number | null>((r) => child.on('close', r));
  try {
    await until(
      () => stdout.includes('"source":"proofpoint_tap"') && stdout.includes('"source":"proofpoint_on_demand"'),
      'records from both inputs on stdout',
      30_000,
    ).catch((err) => {
      throw new Error(`${(err as Error).message}\n${stderr}`);
    });
    child.kill('SIGTERM');
    assert.equal(await exited, 0, stderr);
  } finally {
    child.kill('SIGKILL');
    await Promise.all([tap.close(), pod.close()]);
  }
  const loaded = readFileSync(trace, 'utf8').split('\n').filter(Boolean).map((u) => (u.startsWith('file:') ? fileURLToPath(u) : u));
  const ours = loaded.filter((f) => f.startsWith(PLUGIN)).map((f) => path.relative(PLUGIN, f).split(path.sep).join('/'));
  for (const f of ['cli/run.ts', 'sidecar.ts', 'sources/tap/source.ts', 'sources/pod/source.ts', 'output/stdout.ts']) {
    assert.ok(ours.includes(f), `the trace saw ${f} load: ${ours.join(', ')}`);
  }
  assert.deepEqual(ours.filter((f) => TEST_OR_DEMO_CODE.test(f)), [], 'no simulator or demo code loaded by run');
});
