import { test } from 'node:test';
import assert from 'node:assert/strict';
import { writeFileSync, readdirSync, readFileSync } from 'node:fs';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { StateStore } from '../../plugin/state/store.ts';
import { createLogger } from '../../plugin/telemetry/logger.ts';
import { runCli, writeStateConfig } from '../helpers/cli.ts';
import { TEST_SECRETS } from '../helpers/secrets.ts';
import { tmpDir } from '../helpers/tmp.ts';

const CONF = fileURLToPath(new URL('../../conf/', import.meta.url));
const ENV = {
  TAP_PRINCIPAL: TEST_SECRETS.tapPrincipal,
  TAP_SECRET: TEST_SECRETS.tapSecret,
  POD_CLUSTER_ID: 'acme_hosted',
  POD_API_KEY: TEST_SECRETS.podApiKey,
  FORWARD_SHARED_KEY: TEST_SECRETS.forwardSharedKey,
};

function assertNoSecrets(text: string): void {
  for (const s of Object.values(TEST_SECRETS)) assert.ok(!text.includes(s), `a credential leaked into: ${text}`);
}

test('check passes on every example config under conf/, printing it with credentials masked', () => {
  const examples = readdirSync(CONF).filter((f) => f.endsWith('.example.yaml'));
  assert.ok(examples.length >= 2);
  for (const f of examples) {
    const r = runCli(['check', '--config', path.join(CONF, f)], { env: ENV });
    assert.equal(r.status, 0, `${f}: ${r.stderr}`);
    assert.match(r.stdout, /Configuration is valid\./);
    assert.match(r.stdout, /state_dir:/);
    assertNoSecrets(r.stdout + r.stderr);
  }
});

test('check on a broken config exits 2 and names the key, its path and what is allowed', () => {
  const dir = tmpDir();
  const file = path.join(dir, 'broken.yaml');
  writeFileSync(
    file,
    `output: { type: forward, prot: 24224 }
inputs:
  proofpoint_tap:
    id: x
    credentials: { username: u, password: "${TEST_SECRETS.tapSecret}" }
    services: { clicksBlocked: { start_time_in_utc: "last tuesday" } }
`,
  );
  const r = runCli(['check', '--config', file]);
  assert.equal(r.status, 2, r.stderr);
  assert.match(r.stderr, /output\.prot: unknown key; did you mean "port"\?/);
  assert.match(r.stderr, /inputs\.proofpoint_tap\.services\.clicksBlocked\.start_time_in_utc: error 101: must be an RFC 3339/);
  assertNoSecrets(r.stdout + r.stderr);
});

test('a missing environment variable exits 2 naming it', () => {
  const r = runCli(['check', '--config', path.join(CONF, 'sidecar.example.yaml')], { env: { ...ENV, TAP_SECRET: undefined } });
  assert.equal(r.status, 2);
  assert.match(r.stderr, /inputs\.proofpoint_tap\.credentials\.password: environment variable TAP_SECRET is not set/);
});

test('usage errors exit 2', () => {
  assert.equal(runCli([]).status, 2);
  assert.equal(runCli(['nonsense']).status, 2);
  const r = runCli(['check']);
  assert.equal(r.status, 2);
  assert.match(r.stderr, /--config/);
});

test("the README's example config passes check without a warning (no example date that ages into one)", () => {
  const readme = readFileSync(new URL('../../README.md', import.meta.url), 'utf8');
  const block = /```yaml\n(globals:[\s\S]*?)```/.exec(readme);
  assert.ok(block, 'README has no yaml example starting with globals:');
  const dir = tmpDir();
  const file = path.join(dir, 'readme.yaml');
  writeFileSync(file, block[1]!);
  const r = runCli(['check', '--config', file], { env: ENV, cwd: dir });
  assert.equal(r.status, 0, r.stdout + r.stderr);
  assert.doesNotMatch(r.stdout, /^warning:/m);
  assertNoSecrets(r.stdout + r.stderr);
});

test('--version prints the version of package.json and exits 0', () => {
  const pkg = JSON.parse(readFileSync(new URL('../../package.json', import.meta.url), 'utf8')) as { version: string };
  const r = runCli(['--version']);
  assert.equal(r.status, 0, r.stderr);
  assert.equal(r.stdout.trim(), pkg.version);
  assert.match(runCli(['--help']).stdout, /--version\s+Print the version and exit/);
});

test('an empty config fails check and run with exit 2 naming what is missing, instead of run exiting 0 at once', () => {
  const dir = tmpDir();
  const file = path.join(dir, 'empty.yaml');
  writeFileSync(file, '# nothing yet\n');
  for (const cmd of ['check', 'run']) {
    const r = runCli([cmd, '--config', file]);
    assert.equal(r.status, 2, `${cmd}: ${r.stdout}${r.stderr}`);
    assert.match(r.stderr, /inputs: no input is configured, so there is nothing to collect: add inputs\.proofpoint_tap/);
  }
});

test('check says when a TAP request_period_in_seconds is below the API\'s 30 s floor', () => {
  const dir = tmpDir();
  const file = path.join(dir, 'fast.yaml');
  writeFileSync(
    file,
    `output: { type: stdout }
inputs:
  proofpoint_tap:
    id: x
    credentials: { username: u123, password: p123 }
    services: { clicksBlocked: { request_period_in_seconds: 10 } }
`,
  );
  const r = runCli(['check', '--config', file]);
  assert.equal(r.status, 0, r.stderr);
  assert.match(r.stdout, /^warning: inputs\.proofpoint_tap: services\.clicksBlocked\.request_period_in_seconds \(10\) is below 30, the smallest window the TAP API serves: it polls every 30 s$/m);
});

test('errors logged with a plain { code, message } keep them, without pino\'s "type":"Object","stack":""', () => {
  const lines: string[] = [];
  const logger = createLogger({ pretty: false, destination: { write: (l: string) => void lines.push(l) } });
  logger.error({ err: { code: 'SIDECAR_ERR_X', message: 'went wrong' } }, 'failed');
  logger.error({ err: new TypeError('real error') }, 'failed');
  const [plain, real] = lines.map((l) => JSON.parse(l) as { err: Record<string, unknown> });
  assert.deepEqual(plain!.err, { code: 'SIDECAR_ERR_X', message: 'went wrong' });
  assert.equal(real!.err.type, 'TypeError');
  assert.match(String(real!.err.stack), /^TypeError: real error/);
});

test('state show prints cursors and de-dup counts; state reset deletes one service', async () => {
  const { file, stateDir } = writeStateConfig(tmpDir());
  const store = await StateStore.open(stateDir);
  for (const svc of ['message', 'maillog']) {
    await store.seen.load(`100002::${svc}`);
    await store.commit({ input: '100002', service: svc, cursor: { ts: `2026-11-23T01:00:00.000000-0700` }, keys: ['g1', 'g2'], keysTtlMs: 3_600_000 });
  }
  await store.close();

  let r = runCli(['state', 'show', '--config', file]);
  assert.equal(r.status, 0, r.stderr);
  const shown = JSON.parse(r.stdout);
  assert.equal(shown.services.length, 2);
  assert.deepEqual(shown.services.find((s: { service: string }) => s.service === 'maillog').cursor, { ts: '2026-11-23T01:00:00.000000-0700' });
  assert.equal(shown.services[0].dedup_keys, 2);
  assert.equal(shown.previous_shutdown, 'clean');

  r = runCli(['state', 'reset', '--config', file, '--input', 'proofpoint_on_demand', '--service', 'maillog', '--yes']);
  assert.equal(r.status, 0, r.stderr);
  assert.match(r.stdout, /reset 100002 maillog/);
  const after = await StateStore.open(stateDir);
  assert.equal(await after.getCursor('100002', 'maillog'), undefined);
  assert.ok(await after.getCursor('100002', 'message'));
  await after.close();

  assert.equal(runCli(['state', 'show', '--config', file, '--service', 'maillog']).status, 2, '--service needs --input');
});

test('check warns about a former key name with its path and its new name, and shows the value converted', () => {
  const dir = tmpDir();
  const file = path.join(dir, 'c.yaml');
  writeFileSync(
    file,
    `output: { type: forward, reconnect_initial_ms: 250 }
inputs:
  proofpoint_tap:
    id: x
    credentials: { username: u, password: "${TEST_SECRETS.tapSecret}" }
    services: { clicksBlocked: {} }
`,
  );
  const r = runCli(['check', '--config', file]);
  assert.equal(r.status, 0, r.stderr);
  assert.match(r.stdout, /warning: output\.reconnect_initial_ms is a former name: rename it to output\.reconnect_initial_secs/);
  assert.match(r.stdout, /reconnect_initial_secs: 0\.25\n/);
  assert.doesNotMatch(r.stdout, /reconnect_initial_ms: 250/);
  assertNoSecrets(r.stdout + r.stderr);
});
