/**
 * kill -9 of the sidecar mid-stream, then a restart: the real binary (`plugin/main.ts run`) in a
 * child process, the PoD simulator and a forward receiver in this one. Events the dead process
 * held in memory were already sent by the server and are not sent again in live mode; the
 * restart sees the unclean-shutdown marker and replays them from archive mode. Nothing may be
 * lost; delivered twice only what was in flight (delivered, not yet committed) at the kill.
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { spawn, type ChildProcess } from 'node:child_process';
import { writeFileSync } from 'node:fs';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { once } from 'node:events';
import { startPodSimulator } from '../../../plugin/simulator/pod/index.ts';
import { StateStore, scopeOf } from '../../../plugin/state/store.ts';
import { ForwardReceiver } from '../../helpers/forward-receiver.ts';
import { tmpDir } from '../../helpers/tmp.ts';
import { API_KEY, simBase, until } from './harness.ts';

const root = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '../../..');

function startChild(configPath: string, output: string[]): ChildProcess {
  const child = spawn(process.execPath, ['--import', 'tsx', path.join(root, 'plugin/main.ts'), 'run', '--config', configPath], {
    cwd: root,
    env: { ...process.env, POD_API_KEY: API_KEY, FORCE_COLOR: '0' },
    stdio: ['ignore', 'pipe', 'pipe'],
  });
  child.stdout!.on('data', (c: Buffer) => output.push(c.toString()));
  child.stderr!.on('data', (c: Buffer) => output.push(c.toString()));
  return child;
}

test('kill -9 mid-stream and restart: no event lost, repeats at most those in flight at the kill', async (t) => {
  const sim = await startPodSimulator({ ...simBase(), rate: { maillog: 400, message: 0, audit: 0 }, maxEvents: 6_000, historyMs: 5_000, archiveStalenessMs: 1000 });
  t.after(() => sim.close());
  const receiver = new ForwardReceiver();
  await receiver.listen(0);
  t.after(() => receiver.close());
  const stateDir = tmpDir();
  const configPath = path.join(tmpDir(), 'sidecar.json');
  writeFileSync(
    configPath,
    JSON.stringify({
      globals: { state_dir: stateDir, log_level: 'info', shutdown_timeout_secs: 10 },
      output: { type: 'forward', host: '127.0.0.1', port: receiver.port },
      inputs: {
        proofpoint_on_demand: {
          id: '100002',
          credentials: { cluster_id: sim.credentials.cluster_id, api_key: '${POD_API_KEY}' },
          override_url_base: sim.url,
          archive_staleness_secs: 1,
          batch_flush_secs: 0.1,
          services: { maillog: { request_period_in_seconds: 1 } },
        },
      },
    }),
  );
  const output: string[] = [];
  const keyOf = (r: { record: Record<string, unknown> }) => (JSON.parse(r.record.message as string) as { id: string }).id;

  const first = startChild(configPath, output);
  t.after(() => first.kill('SIGKILL'));
  await until(() => receiver.records.length >= 1500, 'events from the first process', 30_000);
  // Fluent Bit has some chunks and has not acknowledged them yet when the process dies.
  receiver.holdAcks();
  await until(() => receiver.heldAcks >= 2, 'chunks awaiting their ack');
  first.kill('SIGKILL');
  await once(first, 'exit');
  receiver.autoAck();
  const fromFirst = receiver.records.map(keyOf);

  // What the dead process had delivered but not committed: the only events allowed twice.
  const store = await StateStore.open(stateDir, { maintenance: true });
  assert.equal(store.uncleanShutdown, true, 'the marker survived the kill');
  const committed = await store.seen.has(scopeOf('100002', 'maillog'), fromFirst);
  await store.close();
  const inFlight = committed.filter((c) => !c).length;

  const second = startChild(configPath, output);
  t.after(() => second.kill('SIGKILL'));
  // Caught up: the live session has sent the last of the 6,000 events, and all of them arrived.
  let checked = 0;
  await until(
    () => {
      if (Date.now() - checked < 1000) return false;
      checked = Date.now();
      const last = sim.sessions.at(-1)!;
      if (sim.sessions.length < 3 || last.mode !== 'live' || last.status !== 101) return false;
      if (last.nextSeq! < 6_000) return false;
      const got = new Set(receiver.records.map(keyOf));
      return [...sim.servedKeys('maillog')].every((k) => got.has(k));
    },
    'the restart to catch up',
    60_000,
  );
  second.kill('SIGTERM');
  const [code] = (await once(second, 'exit')) as [number];
  assert.equal(code, 0, 'clean exit on SIGTERM');

  const all = receiver.records.map(keyOf);
  const got = new Set(all);
  const served = sim.servedKeys('maillog');
  assert.deepEqual([...served].filter((k) => !got.has(k)), [], 'nothing lost');
  const twice = all.length - got.size;
  assert.ok(inFlight > 0, 'some events were in flight at the kill');
  assert.ok(twice <= inFlight, `${twice} delivered twice, ${inFlight} were in flight at the kill`);
  const modes = sim.sessions.filter((s) => s.status === 101).map((s) => s.mode);
  assert.ok(modes.includes('archive'), `the restart replayed from archive mode (${modes.join(',')})`);
  const log = output.join('');
  assert.match(log, /did not shut down cleanly/);
  assert.ok(!log.includes(API_KEY), 'the api_key never reaches the log');
  // The restart's cursor is clean again after SIGTERM.
  const after = await StateStore.open(stateDir, { maintenance: true });
  assert.equal(after.uncleanShutdown, false);
  await after.close();
});
