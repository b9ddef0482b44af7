import { test } from 'node:test';
import assert from 'node:assert/strict';
import { writeFileSync } from 'node:fs';
import path from 'node:path';
import { loadConfigFile, loadConfigObject, loadConfigText, maskSecrets, nearest } from '../../plugin/config/load.ts';
import { ConfigError } from '../../plugin/errors.ts';
import { parseTimestamp, parseTimestampMs } from '../../plugin/util/time.ts';
import { scrub } from '../../plugin/telemetry/secrets.ts';
import { tmpDir } from '../helpers/tmp.ts';
import { TEST_SECRETS } from '../helpers/secrets.ts';

const tap = (extra: Record<string, unknown> = {}) => ({
  id: '100001',
  credentials: { username: TEST_SECRETS.tapPrincipal, password: TEST_SECRETS.tapSecret },
  services: { clicksBlocked: {} },
  ...extra,
});

function problems(fn: () => unknown): string[] {
  try {
    fn();
  } catch (e) {
    assert.ok(e instanceof ConfigError, `expected ConfigError, got ${(e as Error).stack}`);
    assert.equal(e.exitCode, 2);
    for (const p of e.problems) {
      assert.ok(!p.includes(TEST_SECRETS.tapSecret) && !p.includes(TEST_SECRETS.tapPrincipal), `secret in: ${p}`);
    }
    return e.problems;
  }
  assert.fail('expected a ConfigError');
}

test('the reference example loads from YAML with defaults filled in', () => {
  const dir = tmpDir();
  const file = path.join(dir, 'sidecar.yaml');
  writeFileSync(
    file,
    `globals:
  name: proofpoint-sidecar
  log_level: info
  state_dir: ./state
  http: { listen: 127.0.0.1:2021 }
output:
  type: forward
  host: 127.0.0.1
  port: 24224
inputs:
  proofpoint_tap:
    id: "100001"
    enabled: true
    credentials: { username: \${TAP_PRINCIPAL}, password: \${TAP_SECRET} }
    services:
      clicksBlocked:     { start_time_in_utc: "2026-11-20T00:00:00Z" }
      clicksPermitted:   {}
      messagesBlocked:   {}
      messagesDelivered: {}
  proofpoint_on_demand:
    id: 100002
    enabled: true
    credentials: { cluster_id: \${POD_CLUSTER_ID}, api_key: \${POD_API_KEY} }
    services:
      message: { request_period_in_seconds: 60 }
      maillog: {}
      audit:   {}
`,
  );
  const { config, notices, file: abs } = loadConfigFile(file, {
    env: { TAP_PRINCIPAL: TEST_SECRETS.tapPrincipal, TAP_SECRET: TEST_SECRETS.tapSecret, POD_CLUSTER_ID: 'acme_hosted', POD_API_KEY: TEST_SECRETS.podApiKey },
  });
  assert.equal(abs, file);
  assert.deepEqual(notices, []);
  assert.equal(config.globals.http?.listen, '127.0.0.1:2021');
  assert.equal(config.globals.shutdown_timeout_secs, 30);
  assert.equal(config.output.type, 'forward');
  if (config.output.type === 'forward') {
    assert.equal(config.output.ack_timeout_secs, 30);
    assert.equal(config.output.max_frame_bytes, 4_000_000);
  }
  assert.equal(config.inputs.proofpoint_tap?.credentials.password, TEST_SECRETS.tapSecret);
  assert.equal(config.inputs.proofpoint_tap?.services.clicksBlocked?.request_period_in_seconds, 60);
  assert.equal(config.inputs.proofpoint_on_demand?.id, '100002', 'numeric ids become strings');
  assert.equal(config.inputs.proofpoint_on_demand?.credentials.cluster_id, 'acme_hosted');
});

test('JSON is accepted too', () => {
  const { config } = loadConfigText(JSON.stringify({ output: { type: 'stdout' }, inputs: { proofpoint_tap: tap() } }));
  assert.equal(config.output.type, 'stdout');
});

test('a missing environment variable is an error naming it and the key', () => {
  const p = problems(() =>
    loadConfigObject({ inputs: { proofpoint_tap: tap({ credentials: { username: '${TAP_USER}', password: '${TAP_PW}' } }) } }, { env: {} }),
  );
  assert.deepEqual(p, [
    'inputs.proofpoint_tap.credentials.username: environment variable TAP_USER is not set (referenced as ${TAP_USER})',
    'inputs.proofpoint_tap.credentials.password: environment variable TAP_PW is not set (referenced as ${TAP_PW})',
  ]);
});

test('loading a config registers the HTTP Basic base64 of the TAP principal:secret, so a server echoing the Authorization header is masked', () => {
  const principal = 'principal-for-basic-echo';
  loadConfigObject({ output: { type: 'stdout' }, inputs: { proofpoint_tap: tap({ credentials: { username: principal, password: TEST_SECRETS.tapQuotedSecret } }) } });
  const b64 = Buffer.from(`${principal}:${TEST_SECRETS.tapQuotedSecret}`, 'utf8').toString('base64');
  assert.equal(scrub(`the proxy saw ${b64} and ${JSON.stringify(TEST_SECRETS.tapQuotedSecret)}`), 'the proxy saw *** and "***"');
});

test('secrets can come from *_file keys, relative to the config file', () => {
  const dir = tmpDir();
  writeFileSync(path.join(dir, 'tap-secret'), `${TEST_SECRETS.tapSecret}\n`);
  writeFileSync(path.join(dir, 'key'), `${TEST_SECRETS.forwardSharedKey}\n`);
  const file = path.join(dir, 'c.yaml');
  writeFileSync(
    file,
    `output: { type: forward, shared_key_file: key }
inputs:
  proofpoint_tap:
    id: x
    credentials: { username: u1234, password_file: ${path.join(dir, 'tap-secret')} }
    services: { clicksBlocked: {} }
`,
  );
  const { config } = loadConfigFile(file);
  assert.equal(config.inputs.proofpoint_tap?.credentials.password, TEST_SECRETS.tapSecret);
  assert.equal(config.output.type === 'forward' && config.output.shared_key, TEST_SECRETS.forwardSharedKey);
  // Registered for scrubbing as soon as they are read.
  assert.equal(scrub(`oops ${TEST_SECRETS.tapSecret}`), 'oops ***');

  const both = problems(() =>
    loadConfigObject({ inputs: { proofpoint_tap: tap({ credentials: { username: 'u', password: 'p', password_file: 'x' } }) } }),
  );
  assert.deepEqual(both, ['inputs.proofpoint_tap.credentials.password_file: give either password or password_file, not both']);
  const missing = problems(() =>
    loadConfigObject({ inputs: { proofpoint_tap: tap({ credentials: { username: 'u', password_file: '/nonexistent/secret' } }) } }),
  );
  assert.deepEqual(missing, ['inputs.proofpoint_tap.credentials.password_file: cannot read /nonexistent/secret: ENOENT']);
});

test('unknown keys are rejected with their path, the nearest valid key and what is allowed', () => {
  const p = problems(() =>
    loadConfigObject({
      globals: { stat_dir: '/x' },
      output: { type: 'stdout', host: 'x' },
      inputs: { proofpoint_tap: tap({ services: { clickBlocked: {} } }), proofpoint_tapp: {} },
      extra: 1,
    }),
  );
  assert.ok(
    p.includes(
      'globals.stat_dir: unknown key; did you mean "state_dir"? Allowed keys in globals: name, log_level, state_dir, http, shutdown_timeout_secs, dedup_sweep_interval_secs, dedup_max_keys, coordination, persistence, debug, id',
    ),
    p.join('\n'),
  );
  assert.ok(p.includes('output.host: unknown key. Allowed keys in output: type, queue_max_bytes, max_frame_bytes'), p.join('\n'));
  assert.ok(p.some((l) => l.startsWith('inputs.proofpoint_tap.services.clickBlocked: unknown key; did you mean "clicksBlocked"?')), p.join('\n'));
  assert.ok(p.some((l) => l.startsWith('inputs.proofpoint_tapp: unknown key; did you mean "proofpoint_tap"?')), p.join('\n'));
  assert.ok(p.some((l) => l.startsWith('extra: unknown key. Allowed keys in the top level: globals, output, inputs, outputs')), p.join('\n'));
});

test('wrong values name the key, what was given and what is allowed', () => {
  const p = problems(() =>
    loadConfigObject({
      globals: { log_level: 'verbose' },
      output: { type: 'forward', port: 'x', max_frame_bytes: 6_144_000 },
      inputs: { proofpoint_on_demand: { id: 'a b', credentials: { cluster_id: 'c' }, services: { maillog: { dedup_window_secs: 60 } } } },
    }),
  );
  assert.deepEqual(p.sort(), [
    'globals.log_level: must be one of "debug", "info", "warn", "error" (got "verbose")',
    'inputs.proofpoint_on_demand.credentials.api_key: is required (a string)',
    'inputs.proofpoint_on_demand.id: must be 1 to 64 letters, digits, "_", "." or "-" (got "a b")',
    'inputs.proofpoint_on_demand.services.maillog.dedup_window_secs: must be at least 7200 (two hours) (got 60)',
    "output.max_frame_bytes: must stay well below Fluent Bit's buffer_max_size (6144000) (got 6144000)",
    'output.port: must be a number (got "x")',
  ].sort());
  assert.deepEqual(problems(() => loadConfigObject({ output: { type: 'kafka' }, inputs: { proofpoint_tap: tap() } })), ['output.type: must be one of "forward", "stdout"']);
});

test('Devo-only sections are accepted and reported as ignored', () => {
  const { config, notices } = loadConfigObject({
    globals: { persistence: { type: 'filesystem', config: { directory_name: 'state' } } },
    outputs: { devo_1: { type: 'devo_platform', config: { address: 'collector-us.devo.io' } } },
    inputs: { proofpoint_tap: tap() },
  });
  assert.deepEqual(notices, [
    'outputs is a Devo collector key and is ignored: events go to Fluent Bit (section output); its outputs ship them',
    'globals.persistence is a Devo collector key and is ignored: state is kept in LevelDB under globals.state_dir',
  ]);
  assert.equal((config as Record<string, unknown>).outputs, undefined);
});

test('timestamps: RFC 3339 / ISO 8601 with Z, -0500 or -05:00, and microseconds', () => {
  const z = parseTimestampMs('2026-11-20T05:00:00Z');
  assert.equal(parseTimestampMs('2026-11-20T00:00:00-0500'), z);
  assert.equal(parseTimestampMs('2026-11-20T00:00:00-05:00'), z);
  assert.equal(parseTimestampMs('2026-11-20T10:30:00+05:30'), z);
  assert.deepEqual(parseTimestamp('2024-05-22T12:10:03.058340-0700'), { sec: Date.UTC(2024, 4, 22, 19, 10, 3) / 1000, nsec: 58_340_000 });
  assert.deepEqual(parseTimestamp('2024-05-22T19:10:03.123456789Z'), { sec: Date.UTC(2024, 4, 22, 19, 10, 3) / 1000, nsec: 123_456_789 });
  for (const bad of ['2026-11-20', '2026-11-20T00:00:00', '2026-02-30T00:00:00Z', '2026-11-20T25:00:00Z', 'yesterday', '2026-11-20T00:00:00+5']) {
    assert.equal(parseTimestamp(bad), undefined, bad);
  }
  for (const ok of ['2026-11-20T00:00:00Z', '2026-11-20T00:00:00-0500', '2026-11-20T00:00:00-05:00']) {
    assert.doesNotThrow(() => loadConfigObject({ inputs: { proofpoint_tap: tap({ services: { clicksBlocked: { start_time_in_utc: ok } } }) } }));
  }
  const p = problems(() =>
    loadConfigObject({ inputs: { proofpoint_tap: tap({ services: { clicksBlocked: { start_time_in_utc: '2026-11-20 00:00' } } }) } }),
  );
  assert.equal(p.length, 1);
  assert.match(p[0]!, /^inputs\.proofpoint_tap\.services\.clicksBlocked\.start_time_in_utc: error 101: must be an RFC 3339 \/ ISO 8601 timestamp/);
});

test('invalid YAML and non-mapping documents are config errors', () => {
  assert.match(problems(() => loadConfigText('globals: [\n'))[0]!, /^config: /);
  assert.deepEqual(problems(() => loadConfigText('- a\n- b\n')), ['the configuration must be a mapping with globals, output and inputs']);
  assert.match(problems(() => loadConfigText('a: 1\na: 2\n'))[0]!, /unique/i);
  assert.deepEqual(problems(() => loadConfigFile('/nonexistent/config.yaml')), ['cannot read config file /nonexistent/config.yaml: ENOENT']);
});

test('a credential is never quoted in an error, even when it is the invalid value', () => {
  const p = problems(() =>
    loadConfigObject({ output: { type: 'forward', shared_key: 12345678 }, inputs: { proofpoint_tap: tap({ credentials: { username: 5, password: TEST_SECRETS.tapSecret } }) } }),
  );
  assert.ok(p.includes('output.shared_key: must be a string'), p.join('\n'));
  assert.ok(p.includes('inputs.proofpoint_tap.credentials.username: must be a string'), p.join('\n'));
});

test('maskSecrets replaces every credential for display', () => {
  const { config } = loadConfigObject({
    output: { type: 'forward', shared_key: TEST_SECRETS.forwardSharedKey, username: 'fb', password: TEST_SECRETS.forwardPassword },
    inputs: { proofpoint_tap: tap(), proofpoint_on_demand: { id: 'p', credentials: { cluster_id: 'c', api_key: TEST_SECRETS.podApiKey }, services: { audit: {} } } },
  });
  const shown = JSON.stringify(maskSecrets(config));
  for (const s of Object.values(TEST_SECRETS)) assert.ok(!shown.includes(s), s);
  assert.match(shown, /"api_key":"\*\*\*"/);
  assert.match(shown, /"shared_key":"\*\*\*"/);
});

test('nearest suggests only close keys', () => {
  assert.equal(nearest('servics', ['services', 'id']), 'services');
  assert.equal(nearest('zzzzzz', ['services', 'id']), undefined);
  assert.equal(nearest('Log_Level', ['log_level']), 'log_level');
});

test('a value that is one ${VAR} takes its type, except credentials, which stay strings', () => {
  const { config } = loadConfigText(
    `output: { type: forward, port: \${FB_PORT}, shared_key: \${FB_KEY} }
inputs:
  proofpoint_tap: { id: x, enabled: \${TAP_ON}, credentials: { username: u123, password: \${TAP_PW} }, services: { clicksBlocked: {} } }
# a commented \${NOT_SET} is not an error
`,
    { env: { FB_PORT: '24225', FB_KEY: '12345678', TAP_ON: 'true', TAP_PW: '99999999' } },
  );
  assert.equal(config.output.type === 'forward' && config.output.port, 24225);
  assert.equal(config.output.type === 'forward' && config.output.shared_key, '12345678');
  assert.equal(config.inputs.proofpoint_tap?.enabled, true);
  assert.equal(config.inputs.proofpoint_tap?.credentials.password, '99999999');
});

test('globals.coordination: timings that could let two replicas pull one feed are refused, naming the key', () => {
  const problems = (coordination: Record<string, unknown>) => {
    try {
      loadConfigText(JSON.stringify({ globals: { coordination: { type: 'kubernetes', ...coordination } }, inputs: { proofpoint_tap: tap() } }));
      return [];
    } catch (err) {
      return String((err as Error).message).split('\n');
    }
  };
  assert.deepEqual(problems({}), []);
  assert.ok(
    problems({ lease_duration_secs: 10, renew_deadline_secs: 10 }).some((l) =>
      l.includes('globals.coordination.renew_deadline_secs: must be less than lease_duration_secs'),
    ),
  );
  assert.ok(
    problems({ retry_period_secs: 6 }).some((l) => l.includes('globals.coordination.retry_period_secs: must be at most half of renew_deadline_secs')),
  );
  assert.ok(problems({ type: 'etcd' }).some((l) => l.includes('globals.coordination.type')));
  assert.ok(problems({ lease_prefix: 'Bad_Prefix' }).some((l) => l.includes('globals.coordination.lease_prefix')));
});

test('every config error comes in one round: a future start time is reported beside the schema errors', () => {
  const p = problems(() =>
    loadConfigObject(
      {
        output: { type: 'forward', port: 'x' },
        inputs: {
          proofpoint_tap: tap({ services: { clicksBlocked: { start_time_in_utc: '2026-06-01T00:00:00Z' } } }),
          proofpoint_on_demand: { id: 'p', credentials: { cluster_id: 'c', api_key: TEST_SECRETS.podApiKey }, services: { maillog: { start_time: '2026-06-01T00:00:00' } } },
        },
      },
      { now: Date.parse('2026-05-01T00:00:00Z') },
    ),
  );
  assert.deepEqual(p.sort(), [
    'inputs.proofpoint_on_demand.services.maillog.start_time: error 101: 2026-06-01T00:00:00 is in the future (now is 2026-05-01T00:00:00.000Z)',
    'inputs.proofpoint_tap.services.clicksBlocked.start_time_in_utc: error 101: 2026-06-01T00:00:00Z is in the future (now is 2026-05-01T00:00:00.000Z)',
    'output.port: must be a number (got "x")',
  ]);
});

test('a config with nothing to collect is an error naming what is missing', () => {
  for (const empty of [{}, { globals: { log_level: 'info' } }, { inputs: {} }]) {
    const p = problems(() => loadConfigObject(empty));
    assert.equal(p.length, 1, JSON.stringify(p));
    assert.match(p[0]!, /^inputs: no input is configured, so there is nothing to collect: add inputs\.proofpoint_tap \(id, credentials\.username, credentials\.password, services\)/);
  }
  assert.deepEqual(problems(() => loadConfigText('')).length, 1);
  assert.deepEqual(problems(() => loadConfigObject({ inputs: { proofpoint_tap: tap({ enabled: false }) } })), [
    'inputs: every input has enabled: false (inputs.proofpoint_tap.enabled), so there is nothing to collect: enable at least one',
  ]);
});

test('bounds and types are worded right: "greater than 0" for a positive key, "a mapping" for a required section', () => {
  const p = problems(() =>
    loadConfigObject({ inputs: { proofpoint_tap: { id: 'x', services: { clicksBlocked: { request_period_in_seconds: 0 } } } } }),
  );
  assert.deepEqual(p.sort(), [
    'inputs.proofpoint_tap.credentials: is required (a mapping)',
    'inputs.proofpoint_tap.services.clicksBlocked.request_period_in_seconds: must be greater than 0 (got 0)',
  ]);
  assert.ok(!p.some((l) => /at least 0|a object/.test(l)));
});

test('numbers and booleans written as strings (the Devo cloud form) are taken as numbers and booleans; credentials stay strings', () => {
  const { config } = loadConfigObject({
    output: { type: 'forward', port: '24225' },
    inputs: {
      proofpoint_tap: tap({
        enabled: 'true',
        credentials: { username: '12345678', password: '87654321' },
        services: { clicksBlocked: { request_period_in_seconds: '60' }, messagesBlocked: { request_period_in_seconds: ' 120 ' } },
      }),
    },
  });
  const t = config.inputs.proofpoint_tap!;
  assert.equal(config.output.type === 'forward' && config.output.port, 24225);
  assert.equal(t.enabled, true);
  assert.equal(t.services.clicksBlocked?.request_period_in_seconds, 60);
  assert.equal(t.services.messagesBlocked?.request_period_in_seconds, 120);
  assert.equal(t.credentials.username, '12345678');
  assert.deepEqual(problems(() => loadConfigObject({ inputs: { proofpoint_tap: tap({ services: { clicksBlocked: { request_period_in_seconds: 'soon' } } }) } })), [
    'inputs.proofpoint_tap.services.clicksBlocked.request_period_in_seconds: must be a number (got "soon")',
  ]);
});

test('start times: empty or null is "from now" (TAP: null, POD: live), a zone-less time is UTC, fractions are kept', () => {
  const { config } = loadConfigObject({
    inputs: {
      proofpoint_tap: tap({
        services: {
          clicksBlocked: { start_time_in_utc: null },
          clicksPermitted: { start_time_in_utc: '' },
          messagesBlocked: { start_time_in_utc: '2026-11-20T00:00:00' },
          messagesDelivered: { start_time_in_utc: '2026-11-20T00:00:00.000Z' },
        },
      }),
      proofpoint_on_demand: {
        id: 'p',
        credentials: { cluster_id: 'c', api_key: TEST_SECRETS.podApiKey },
        services: { message: { start_time: null }, maillog: { start_time: '' }, audit: { start_time: '2026-11-20 00:00:00' } },
      },
    },
  }, { now: Date.parse('2026-11-21T00:00:00Z') });
  const s = config.inputs.proofpoint_tap!.services;
  assert.equal(s.clicksBlocked?.start_time_in_utc, null);
  assert.equal(s.clicksPermitted?.start_time_in_utc, null);
  assert.equal(s.messagesBlocked?.start_time_in_utc, '2026-11-20T00:00:00Z');
  assert.equal(s.messagesDelivered?.start_time_in_utc, '2026-11-20T00:00:00.000Z');
  const p = config.inputs.proofpoint_on_demand!.services;
  assert.equal(p.message?.start_time, undefined);
  assert.equal(p.maillog?.start_time, undefined);
  assert.equal(parseTimestampMs(p.audit!.start_time!), Date.parse('2026-11-20T00:00:00Z'));
});

test('override_url_base under each service (where Devo puts it) is used for the input; services that disagree are an error', () => {
  const { config } = loadConfigObject({
    inputs: {
      proofpoint_tap: tap({ services: { clicksBlocked: { override_url_base: 'https://tap.example.net/' }, messagesBlocked: { override_url_base: 'https://tap.example.net' } } }),
      proofpoint_on_demand: { id: 'p', credentials: { cluster_id: 'c', api_key: TEST_SECRETS.podApiKey }, services: { maillog: { override_url_base: 'wss://pod.example.net' } } },
    },
  });
  assert.equal(config.inputs.proofpoint_tap!.override_url_base, 'https://tap.example.net');
  assert.equal(config.inputs.proofpoint_on_demand!.override_url_base, 'wss://pod.example.net');
  assert.equal((config.inputs.proofpoint_tap!.services.clicksBlocked as Record<string, unknown>).override_url_base, undefined);
  const p = problems(() =>
    loadConfigObject({
      inputs: { proofpoint_tap: tap({ override_url_base: 'https://a.example.net', services: { clicksBlocked: { override_url_base: 'https://b.example.net' } } }) },
    }),
  );
  assert.deepEqual(p, [
    'inputs.proofpoint_tap.override_url_base: must be one URL for the whole input (one API serves every service); got https://a.example.net in override_url_base; https://b.example.net in services.clicksBlocked.override_url_base (got "https://a.example.net")',
  ]);
});

test('Devo-only keys globals.debug, globals.id and inputs.*.environment are reported as ignored with why, and dropped', () => {
  const { config, notices } = loadConfigObject({
    globals: { debug: true, id: 'not_used' },
    inputs: { proofpoint_tap: tap({ environment: 'prod' }) },
  });
  assert.deepEqual(notices, [
    'globals.debug is a Devo collector key and is ignored: set globals.log_level (debug, info, warn or error) instead',
    'globals.id is a Devo collector key and is ignored: the sidecar has no collector id; each input keeps its own id, and globals.name names the process',
    "inputs.proofpoint_tap.environment is a Devo collector key and is ignored: it only labels the Devo collector's deployment",
  ]);
  assert.equal((config.globals as Record<string, unknown>).debug, undefined);
  assert.equal((config.inputs.proofpoint_tap as Record<string, unknown>).environment, undefined);
});

test('durations are _secs: a former _ms or _seconds name still loads, converted to seconds, and is reported with its new name', () => {
  const pod = { id: '100002', credentials: { cluster_id: 'c1', api_key: TEST_SECRETS.podApiKey }, services: { maillog: {} }, batch_flush_ms: 250 };
  const loaded = loadConfigText(
    JSON.stringify({
      globals: { coordination: { type: 'kubernetes', lease_duration_seconds: 20, renew_deadline_seconds: 12, retry_period_seconds: 1.5 } },
      output: { type: 'forward', reconnect_initial_ms: 250, reconnect_max_ms: '45000' },
      inputs: { proofpoint_tap: tap({ retry_initial_ms: 1500 }), proofpoint_on_demand: pod },
    }),
  );
  const { config } = loaded;
  assert.equal(config.output.type === 'forward' && config.output.reconnect_initial_secs, 0.25);
  assert.equal(config.output.type === 'forward' && config.output.reconnect_max_secs, 45, 'a number written as a string converts too');
  assert.equal(config.inputs.proofpoint_tap?.retry_initial_secs, 1.5);
  assert.equal(config.inputs.proofpoint_on_demand?.batch_flush_secs, 0.25);
  assert.deepEqual(
    [config.globals.coordination?.lease_duration_secs, config.globals.coordination?.renew_deadline_secs, config.globals.coordination?.retry_period_secs],
    [20, 12, 1.5],
  );
  assert.deepEqual(loaded.renamed.map((r) => `${r.from} -> ${r.to}`).sort(), [
    'globals.coordination.lease_duration_seconds -> globals.coordination.lease_duration_secs',
    'globals.coordination.renew_deadline_seconds -> globals.coordination.renew_deadline_secs',
    'globals.coordination.retry_period_seconds -> globals.coordination.retry_period_secs',
    'inputs.proofpoint_on_demand.batch_flush_ms -> inputs.proofpoint_on_demand.batch_flush_secs',
    'inputs.proofpoint_tap.retry_initial_ms -> inputs.proofpoint_tap.retry_initial_secs',
    'output.reconnect_initial_ms -> output.reconnect_initial_secs',
    'output.reconnect_max_ms -> output.reconnect_max_secs',
  ]);
  const current = loadConfigText(JSON.stringify({ inputs: { proofpoint_tap: tap({ retry_initial_secs: 0.5 }) } }));
  assert.deepEqual(current.renamed, [], 'the new names raise no warning');
  assert.equal(current.config.inputs.proofpoint_tap?.retry_initial_secs, 0.5, 'fractional seconds are allowed');
  assert.equal(current.config.output.type === 'forward' && current.config.output.reconnect_initial_secs, 0.5, 'defaults are unchanged: 500 ms');
});

test('a duration given under both its former and its new name is a config error naming both', () => {
  const found = problems(() =>
    loadConfigText(JSON.stringify({ output: { type: 'forward', reconnect_max_ms: 1000, reconnect_max_secs: 1 }, inputs: { proofpoint_tap: tap({ retry_initial_ms: 10, retry_initial_secs: 1 }) } })),
  );
  assert.ok(found.includes('output.reconnect_max_ms: given together with its new name output.reconnect_max_secs; keep output.reconnect_max_secs only'), found.join('\n'));
  assert.ok(found.some((l) => l.startsWith('inputs.proofpoint_tap.retry_initial_ms:') && l.includes('inputs.proofpoint_tap.retry_initial_secs')), found.join('\n'));
});
