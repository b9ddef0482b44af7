/**
 * The config.yaml files of Devo's "Proofpoint TAP collector" and "Proofpoint on Demand collector"
 * pages (test/config/devo/*.config.yaml), and the Devo collector server's JSON form of each
 * (*.cloud.json), kept as the pages give them: only their `<placeholders>` are filled here, and an
 * `output:` section is added (step 2 of the migration in docs/operations.md). Each must pass
 * `check`, with every Devo-only key reported as ignored, and `run` must deliver from the simulators.
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { readFileSync, writeFileSync } from 'node:fs';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { startTapSimulator } from '../../plugin/simulator/tap/index.ts';
import { startPodSimulator } from '../../plugin/simulator/pod/index.ts';
import { runCliAsync, startCli } from '../helpers/cli.ts';
import { ForwardReceiver, waitUntil } from '../helpers/forward-receiver.ts';
import { TEST_SECRETS } from '../helpers/secrets.ts';
import { tmpDir } from '../helpers/tmp.ts';

const DEVO = fileURLToPath(new URL('./devo/', import.meta.url));
const HOUR = 3600_000;

/** Fills each `<name>` with `values[name]`: a string for every occurrence, a list for one after the other. */
function fill(text: string, values: Record<string, string | string[]>): string {
  const used = new Map<string, number>();
  const out = text.replace(/<([a-z_]+)>/g, (whole, name: string) => {
    const v = values[name];
    assert.ok(v !== undefined, `no value for placeholder ${whole}`);
    if (typeof v === 'string') return v;
    const i = used.get(name) ?? 0;
    used.set(name, i + 1);
    assert.ok(i < v.length, `too few values for ${whole}`);
    return v[i]!;
  });
  for (const [name, v] of Object.entries(values)) if (Array.isArray(v)) assert.equal(used.get(name), v.length, `values left for <${name}>`);
  return out;
}

const DEVO_OUTPUT = {
  collector_id: 'pp1',
  collector_name: 'proofpoint_collector',
  devo_address: 'collector-us.devo.io',
  chain_filename: 'chain.crt',
  cert_filename: 'acme.crt',
  key_filename: 'acme.key',
  environment: 'prod',
};

function withOutput(file: string, text: string, port: number): string {
  if (file.endsWith('.json')) return JSON.stringify({ ...JSON.parse(text), output: { type: 'forward', host: '127.0.0.1', port } }, null, 2);
  return `${text}output:\n  type: forward\n  host: 127.0.0.1\n  port: ${port}\n`;
}

/** `check` passes, naming every Devo-only key as ignored; `run` delivers every tag; SIGTERM ends it with 0. */
async function checkAndRun(name: string, text: string, receiver: ForwardReceiver, tags: string[], ignored: string[]): Promise<void> {
  const dir = tmpDir();
  const file = path.join(dir, name);
  writeFileSync(file, withOutput(name, text, receiver.port));
  const checked = await runCliAsync(['check', '--config', file], { cwd: dir });
  assert.equal(checked.status, 0, `${name}: ${checked.stdout}${checked.stderr}`);
  assert.match(checked.stdout, /Configuration is valid\./);
  for (const key of ignored) assert.match(checked.stdout, new RegExp(`^note: ${key.replace(/\./g, '\\.')} is a Devo collector key and is ignored: `, 'm'), `${name}: ${key}`);
  assert.doesNotMatch(checked.stdout, /override_url_base:\s*$/m);
  for (const s of Object.values(TEST_SECRETS)) assert.ok(!(checked.stdout + checked.stderr).includes(s), 'credential in check output');

  const child = startCli(['run', '--config', file], { cwd: dir });
  let stderr = '';
  child.stderr!.on('data', (c) => (stderr += c));
  const exited = new Promise<number | null>((resolve) => child.on('exit', (code) => resolve(code)));
  try {
    await waitUntil(() => tags.every((t) => receiver.records.some((r) => r.tag === t)), `${name}: records of ${tags.join(', ')}`, 30_000).catch((err) => {
      throw new Error(`${(err as Error).message}\n${stderr}`);
    });
  } finally {
    child.kill('SIGTERM');
  }
  assert.equal(await exited, 0, stderr);
  for (const s of Object.values(TEST_SECRETS)) assert.ok(!stderr.includes(s), 'credential in run logs');
}

test("Devo's TAP collector config.yaml and cloud JSON pass check and run unchanged: per-service override_url_base, every start time form, numbers as strings", async () => {
  const tap = await startTapSimulator({ credentials: { username: TEST_SECRETS.tapPrincipal, password: TEST_SECRETS.tapSecret } });
  const receiver = new ForwardReceiver();
  await receiver.listen(0);
  try {
    const iso = new Date(Date.now() - 2 * HOUR).toISOString();
    const values = {
      ...DEVO_OUTPUT,
      short_unique_id: '100001',
      username: TEST_SECRETS.tapPrincipal,
      password: TEST_SECRETS.tapSecret,
      request_period_in_seconds_value: '"60"',
      // With Z and milliseconds, with Z, without a zone (UTC), and empty (from now).
      start_time_in_utc_value: [iso, iso.replace(/\.\d+Z$/, 'Z'), iso.replace(/Z$/, ''), ''],
      override_url_base_value: tap.url,
      override_tag_base_value: [
        'mail.proofpoint.tapsiem_v2.clicksblocked',
        'mail.proofpoint.tapsiem_v2.clickspermitted',
        'mail.proofpoint.tapsiem_v2.messagesblocked',
        'mail.proofpoint.tapsiem_v2.messagesdelivered',
      ],
    };
    const yaml = fill(readFileSync(path.join(DEVO, 'proofpoint-tap.config.yaml'), 'utf8'), values);
    await checkAndRun('proofpoint-tap.config.yaml', yaml, receiver, values.override_tag_base_value.slice(0, 3), [
      'outputs',
      'globals.persistence',
      'globals.debug',
      'globals.id',
      'inputs.proofpoint_tap.environment',
    ]);

    const json = fill(readFileSync(path.join(DEVO, 'proofpoint-tap.cloud.json'), 'utf8'), {
      short_unique_id: '100002',
      username: TEST_SECRETS.tapPrincipal,
      password: TEST_SECRETS.tapSecret,
      request_period_in_seconds_value: '60',
      start_time_in_utc_value: [iso, ''],
      override_url_base_value: tap.url,
    });
    receiver.records.length = 0;
    await checkAndRun('proofpoint-tap.cloud.json', json, receiver, ['mail.proofpoint.tapsiem_v2.clicksblocked'], ['global_overrides']);
  } finally {
    await receiver.close();
    await tap.close();
  }
});

test("Devo's POD collector config.yaml and cloud JSON pass check and run unchanged: empty start_time is live, a past one replays", async () => {
  const pod = await startPodSimulator({ apiKey: TEST_SECRETS.podApiKey, rate: 20, historyMs: 6 * HOUR });
  const receiver = new ForwardReceiver();
  await receiver.listen(0);
  try {
    const past = new Date(Date.now() - 3 * HOUR).toISOString().replace(/\.\d+Z$/, '');
    const values = {
      ...DEVO_OUTPUT,
      short_unique_id: '100003',
      cluster_id: pod.credentials.cluster_id,
      api_key: TEST_SECRETS.podApiKey,
      request_period_in_seconds_value: '"60"',
      // message: empty (Devo's "leave it empty": live, from now); maillog: a past time without a zone (UTC).
      start_time_value: ['', past],
      override_url_base_value: pod.url,
      override_tag_base_value: ['mail.proofpoint.pod.message', 'mail.proofpoint.pod.maillog'],
    };
    const yaml = fill(readFileSync(path.join(DEVO, 'proofpoint-on-demand.config.yaml'), 'utf8'), values);
    await checkAndRun('proofpoint-on-demand.config.yaml', yaml, receiver, values.override_tag_base_value, [
      'outputs',
      'globals.persistence',
      'globals.debug',
      'globals.id',
      'inputs.proofpoint_on_demand.environment',
    ]);
    assert.ok(pod.sessions.some((s) => s.type === 'maillog' && s.mode === 'archive'), 'maillog replayed its start_time in archive mode');
    assert.ok(pod.sessions.filter((s) => s.type === 'message').every((s) => s.mode === 'live'), 'message with an empty start_time went live');

    const json = fill(readFileSync(path.join(DEVO, 'proofpoint-on-demand.cloud.json'), 'utf8'), {
      short_unique_id: '100004',
      cluster_id: pod.credentials.cluster_id,
      api_key: TEST_SECRETS.podApiKey,
      request_period_in_seconds_value: '60',
      start_time_value: ['', ''],
      override_url_base_value: pod.url,
    });
    receiver.records.length = 0;
    await checkAndRun('proofpoint-on-demand.cloud.json', json, receiver, ['mail.proofpoint.pod.message', 'mail.proofpoint.pod.maillog'], ['global_overrides']);
  } finally {
    await receiver.close();
    await pod.close();
  }
});
