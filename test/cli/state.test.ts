import { test } from 'node:test';
import assert from 'node:assert/strict';
import { existsSync, writeFileSync } from 'node:fs';
import path from 'node:path';
import { loadConfigFile } from '../../plugin/config/load.ts';
import { Sidecar } from '../../plugin/sidecar.ts';
import { StateStore } from '../../plugin/state/store.ts';
import { silentLogger } from '../../plugin/telemetry/logger.ts';
import { formatUtc } from '../../plugin/util/time.ts';
import { runCli, runCliAsync, writeStateConfig } from '../helpers/cli.ts';
import { freePort, until } from '../helpers/net.ts';
import { tmpDir } from '../helpers/tmp.ts';

const HOUR = 3600_000;


async function seed(stateDir: string, now: number): Promise<void> {
  const store = await StateStore.open(stateDir);
  for (const svc of ['message', 'maillog']) {
    await store.seen.load(`100002::${svc}`);
    await store.commit({
      input: '100002',
      service: svc,
      cursor: {
        v: 1,
        ts: '2026-11-23T01:00:00.000000-0700',
        sec: 1795420800,
        nsec: 0,
        archivedUntil: now - 10 * HOUR,
        ...(svc === 'message' ? { owed: { reason: 'start_time', from: now - 10 * HOUR, until: now - HOUR, offsetMin: 0 } } : {}),
      },
      keys: ['g1'],
      keysTtlMs: HOUR,
    });
  }
  await store.close();
}

test('state show on a missing state directory says so and does not create it', () => {
  const { file, stateDir } = writeStateConfig(tmpDir());
  const r = runCli(['state', 'show', '--config', file]);
  assert.equal(r.status, 0, r.stderr);
  assert.equal(JSON.parse(r.stdout).exists, false);
  assert.match(r.stderr, /No state in .* yet/);
  assert.equal(existsSync(stateDir), false, 'no directory was created');
});

test('state show prints UTC ISO times and the backfill position, what remains, per service', async () => {
  const { file, stateDir } = writeStateConfig(tmpDir());
  const now = Date.now();
  await seed(stateDir, now);
  const r = runCli(['state', 'show', '--config', file]);
  assert.equal(r.status, 0, r.stderr);
  const shown = JSON.parse(r.stdout);
  const message = shown.services.find((s: { service: string }) => s.service === 'message');
  assert.match(message.committed_at, /^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d(\.\d+)?Z$/);
  assert.equal(message.cursor.archivedUntil, formatUtc(now - 10 * HOUR), 'epoch ms shown as UTC ISO');
  assert.equal(message.cursor.owed.from, formatUtc(now - 10 * HOUR));
  assert.equal(message.cursor.sec, undefined, 'the parsed copy of ts is left out');
  assert.equal(message.backfill.active, true);
  assert.equal(message.backfill.remaining_secs, 9 * 3600);
  assert.equal(message.backfill.position, formatUtc(now - 10 * HOUR));
  assert.match(r.stderr, /100002 message: backfilling: at .*, 9h 0m to go/);
  const maillog = shown.services.find((s: { service: string }) => s.service === 'maillog');
  assert.equal(maillog.backfill.active, false);
});

test('an unknown --input or --service is an error naming what exists', async () => {
  const { file, stateDir } = writeStateConfig(tmpDir());
  await seed(stateDir, Date.now());
  let r = runCli(['state', 'show', '--config', file, '--input', '999']);
  assert.equal(r.status, 2);
  assert.match(r.stderr, /--input 999: no such input .* known: 100002 \(proofpoint_on_demand\)/);
  r = runCli(['state', 'reset', '--yes', '--config', file, '--input', 'proofpoint_on_demand', '--service', 'maillogs']);
  assert.equal(r.status, 2);
  assert.match(r.stderr, /--service maillogs: input 100002 has no such service; known: message, maillog/);
  r = runCli(['state', 'show', '--config', file, '--input', 'proofpoint_tap']);
  assert.equal(r.status, 2, 'an input type that is not configured is unknown too');
});

test('state reset refuses without --yes when it cannot ask, and deletes nothing', async () => {
  const { file, stateDir } = writeStateConfig(tmpDir());
  await seed(stateDir, Date.now());
  let r = runCli(['state', 'reset', '--config', file]);
  assert.equal(r.status, 2);
  assert.match(r.stderr, /would delete the cursors and de-dup keys of 100002 maillog, 100002 message; stdin is not a terminal, so give --yes/);
  let store = await StateStore.open(stateDir, { maintenance: true });
  assert.ok(await store.getCursor('100002', 'message'), 'nothing was reset');
  await store.close();
  r = runCli(['state', 'reset', '--config', file, '--yes']);
  assert.equal(r.status, 0, r.stderr);
  store = await StateStore.open(stateDir, { maintenance: true });
  assert.equal(await store.getCursor('100002', 'message'), undefined);
  await store.close();
});

test('state show works while run holds the state: it asks the running sidecar', async () => {
  const dir = tmpDir();
  const port = await freePort();
  const down = await freePort();
  const stateDir = path.join(dir, 'state');
  const file = path.join(dir, 'c.yaml');
  const start = formatUtc(Date.now() - 5 * HOUR);
  writeFileSync(
    file,
    `globals: { state_dir: ${stateDir}, http: { listen: "127.0.0.1:${port}" }, shutdown_timeout_secs: 1 }
output: { type: forward, host: 127.0.0.1, port: ${down} }
inputs:
  proofpoint_on_demand:
    id: "100002"
    credentials: { cluster_id: c, api_key: k-123456 }
    override_url_base: ws://127.0.0.1:${down}
    services: { message: { start_time: "${start}" } }
`,
  );
  const sc = await Sidecar.start({ config: loadConfigFile(file).config, logger: silentLogger() });
  try {
    await until(() => sc.pipeline.sourceMetrics.values('backfill_active').length === 1, 'the service to start', 10_000);
    const r = await runCliAsync(['state', 'show', '--config', file]);
    assert.equal(r.status, 0, r.stderr);
    const shown = JSON.parse(r.stdout);
    assert.match(shown.read_from, /running sidecar/);
    assert.equal(shown.previous_shutdown, 'running');
    const message = shown.services.find((s: { service: string }) => s.service === 'message');
    assert.equal(message.backfill.from, 'running sidecar');
    assert.equal(message.backfill.active, true);
    assert.ok(message.backfill.remaining_secs >= 3 * 3600, `remaining ${message.backfill.remaining_secs}`);
    const bad = await runCliAsync(['state', 'show', '--config', file, '--input', 'nope']);
    assert.equal(bad.status, 2, 'an unknown input is an error here too');
  } finally {
    await sc.stop();
  }
});
