import { test } from 'node:test';
import assert from 'node:assert/strict';
import { existsSync, readFileSync, writeFileSync } from 'node:fs';
import path from 'node:path';
import { startTapSimulator } from '../../plugin/simulator/tap/index.ts';
import { startPodSimulator } from '../../plugin/simulator/pod/index.ts';
import { runCliAsync } from '../helpers/cli.ts';
import { TEST_SECRETS } from '../helpers/secrets.ts';
import { tmpDir } from '../helpers/tmp.ts';
import { ForwardReceiver } from '../helpers/forward-receiver.ts';
import { freePort } from '../helpers/net.ts';
import { startFluentBit } from '../helpers/fluent-bit.ts';

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
  const { startLeaseServer } = await import('../helpers/lease-server.ts');
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

// check --online checks the output too: a forward connection (handshake included) and the ack of
// a message that carries no record, so nothing reaches the SIEM.

async function withTapSim<T>(fn: (tapUrl: string, dir: string) => Promise<T>): Promise<T> {
  const tap = await startTapSimulator({ credentials: { username: TEST_SECRETS.tapPrincipal, password: TEST_SECRETS.tapSecret } });
  try {
    return await fn(tap.url, tmpDir());
  } finally {
    await tap.close();
  }
}

function outputCheckConfig(dir: string, tapUrl: string, output: Record<string, unknown>): string {
  const file = path.join(dir, `output-${Math.random().toString(36).slice(2)}.json`);
  writeFileSync(
    file,
    JSON.stringify({
      globals: { state_dir: path.join(dir, 'state') },
      output: { type: 'forward', host: '127.0.0.1', connect_timeout_secs: 5, ack_timeout_secs: 5, ...output },
      inputs: {
        proofpoint_tap: {
          id: 't',
          override_url_base: tapUrl,
          credentials: { username: TEST_SECRETS.tapPrincipal, password: TEST_SECRETS.tapSecret },
          services: { clicksBlocked: {} },
        },
      },
    }),
  );
  return file;
}

test('check --online fails when nothing listens on the forward output, naming the target', async () => {
  await withTapSim(async (tapUrl, dir) => {
    const port = await freePort();
    const r = await runCliAsync(['check', '--online', '--config', outputCheckConfig(dir, tapUrl, { port })]);
    assert.equal(r.status, 1, r.stdout + r.stderr);
    assert.match(r.stdout, new RegExp(`^FAIL output/forward: cannot reach Fluent Bit: 127\\.0\\.0\\.1:${port}: .*ECONNREFUSED`, 'm'));
    assert.match(r.stdout, /^OK   proofpoint_tap\/clicksBlocked: credentials accepted/m);
    assert.match(r.stdout, /an output or service check failed/);
  });
});

test('check --online passes against a forward receiver: handshake with shared_key, one ack, no record delivered', async () => {
  await withTapSim(async (tapUrl, dir) => {
    const receiver = new ForwardReceiver({ sharedKey: TEST_SECRETS.forwardSharedKey });
    await receiver.listen(0);
    try {
      const file = outputCheckConfig(dir, tapUrl, { port: receiver.port, shared_key: TEST_SECRETS.forwardSharedKey, self_hostname: 'check-host' });
      const r = await runCliAsync(['check', '--online', '--config', file]);
      assert.equal(r.status, 0, r.stdout + r.stderr);
      assert.match(r.stdout, /^OK   output\/forward: 127\.0\.0\.1:\d+ acknowledged a message without records in \d+ ms, shared_key handshake passed/m);
      assert.match(r.stdout, /the output and every enabled service answered/);
      assert.equal(receiver.established, 1);
      assert.deepEqual(receiver.pings.map((p) => p.hostname), ['check-host']);
      assert.equal(receiver.acked.length, 1);
      assert.deepEqual(receiver.frames.map((f) => [f.mode, f.entries]), [['forward', 0]]);
      assert.equal(receiver.records.length, 0);
      for (const s of Object.values(TEST_SECRETS)) assert.ok(!(r.stdout + r.stderr).includes(s), 'credential in output');

      // A wrong key is a handshake failure, reported like a refused vendor credential.
      const wrong = outputCheckConfig(dir, tapUrl, { port: receiver.port, shared_key: 'not-the-key-of-this-receiver' });
      const bad = await runCliAsync(['check', '--online', '--config', wrong]);
      assert.equal(bad.status, 1, bad.stdout + bad.stderr);
      assert.match(bad.stdout, /^FAIL output\/forward: error \S+: .*shared_key does not match/m);
      assert.equal(receiver.records.length, 0);
    } finally {
      await receiver.close();
    }
  });
});

const FLUENT_BIT = process.env.FLUENT_BIT_BIN;
if (!FLUENT_BIT) {
  test.skip('FLUENT_BIT_BIN not set: skipping check --online against a real Fluent Bit');
} else {
  test('check --online against the real Fluent Bit with shared_key: acknowledged, and nothing is written to its outputs', async () => {
    await withTapSim(async (tapUrl, dir) => {
      const fb = await startFluentBit(FLUENT_BIT, dir, { flush: 1, logLevel: 'info', security: { sharedKey: TEST_SECRETS.forwardSharedKey } });
      try {
        const file = outputCheckConfig(dir, tapUrl, { port: fb.port, shared_key: TEST_SECRETS.forwardSharedKey, self_hostname: fb.selfHostname });
        const r = await runCliAsync(['check', '--online', '--config', file]);
        assert.equal(r.status, 0, r.stdout + r.stderr + fb.log());
        assert.match(r.stdout, /^OK   output\/forward: .* acknowledged a message without records .*shared_key handshake passed/m);
        // Past a flush, out_file has still nothing: the check carried no record.
        await new Promise((res) => setTimeout(res, 1500));
        assert.ok(!existsSync(fb.recordsFile) || readFileSync(fb.recordsFile, 'utf8') === '', 'the output check wrote a record');
        assert.doesNotMatch(fb.log(), /could not append/);
      } finally {
        fb.proc.kill('SIGTERM');
      }
    });
  });
}

// check --online --probe: each PROBE line puts what the server did beside what the sidecar
// assumes. The simulator's profiles stand in for the readings of the real server the probe is
// meant to tell apart; caps are short (--probe-timeout, archive_idle_timeout_secs) so the tests
// check what is reported, not how long it takes.

type ProbeSim = Awaited<ReturnType<typeof startPodSimulator>>;

function probeConfig(dir: string, pod: ProbeSim, extra: Record<string, unknown> = {}, service: Record<string, unknown> = {}): string {
  const file = path.join(dir, `probe-${Math.random().toString(36).slice(2)}.json`);
  writeFileSync(
    file,
    JSON.stringify({
      globals: { state_dir: path.join(dir, 'state') },
      output: { type: 'stdout' },
      inputs: {
        proofpoint_on_demand: {
          id: 'p',
          override_url_base: pod.url,
          credentials: { cluster_id: pod.credentials.cluster_id, api_key: pod.credentials.api_key },
          archive_idle_timeout_secs: 1,
          ...extra,
          services: { maillog: service },
        },
      },
    }),
  );
  return file;
}

/** The PROBE line of one question (maillog), split into its three parts. */
function probeLine(stdout: string, question: string): { observed: string; assumption: string; verdict: string } {
  const line = stdout.split('\n').find((l) => l.startsWith(`PROBE proofpoint_on_demand/maillog ${question}: `));
  assert.ok(line, `no PROBE line for ${question}:\n${stdout}`);
  const m = /^PROBE \S+ [^:]+: (.*) \| sidecar assumes: (.*) \| (MATCHES|DIFFERS|INCONCLUSIVE)$/.exec(line);
  assert.ok(m, `malformed PROBE line: ${line}`);
  return { observed: m[1]!, assumption: m[2]!, verdict: m[3]! };
}

function assertNoSecret(...texts: string[]): void {
  for (const s of Object.values(TEST_SECRETS)) assert.ok(!texts.join('\n').includes(s), 'credential in output');
}

async function withProbeSim<T>(opts: Parameters<typeof startPodSimulator>[0], fn: (pod: ProbeSim, dir: string) => Promise<T>): Promise<T> {
  const pod = await startPodSimulator({ apiKey: TEST_SECRETS.podApiKey, rate: 1, historyMs: 6 * 3600_000, ...opts });
  try {
    return await fn(pod, tmpDir());
  } finally {
    await pod.close();
  }
}

test('check --online --probe against the default simulator: close 1000 MATCHES, a future toTime is served, no live session, nothing fails', async () => {
  await withProbeSim({}, async (pod, dir) => {
    const file = probeConfig(dir, pod);
    const r = await runCliAsync(['check', '--online', '--probe', '--probe-timeout', '5', '--config', file]);
    assert.equal(r.status, 0, r.stdout + r.stderr);
    const end = probeLine(r.stdout, 'archive window end');
    assert.equal(end.verdict, 'MATCHES');
    assert.match(end.observed, /closed by the server with 1000 \("end of window"\) [\d.]+ s after the last frame; \d+ frames \(0 empty\), 0 server pings/);
    assert.match(end.assumption, /complete only on close 1000, or after archive_idle_timeout_secs \(1 s\) of silence/);
    // The window asked is one whole hour, hour-aligned, ended at least two hours ago.
    const rec = pod.sessions.find((s) => s.userAgent?.includes('check --probe') && s.mode === 'archive');
    assert.ok(rec && rec.windowFrom !== undefined && rec.windowTo !== undefined);
    assert.equal(rec.windowTo - rec.windowFrom, 3600_000);
    assert.equal(rec.windowFrom % 3600_000, 0);
    assert.ok(rec.windowTo <= Date.now() - 2 * 3600_000);
    assert.match(end.observed, new RegExp(`; ${rec.framesSent} frames`));

    const future = probeLine(r.stdout, 'future toTime');
    assert.equal(future.verdict, 'MATCHES');
    assert.match(future.observed, /rounded up: .*\): served, \d+ frames \(0 empty\), newest ts [\d.]+ min before now; closed by the server with 1000/);
    assert.match(future.assumption, /never made by it; a 400 on an archive request is retried, never fatal/);

    const quiet = probeLine(r.stdout, 'empty frames and pings');
    assert.equal(quiet.verdict, 'INCONCLUSIVE');
    assert.match(quiet.observed, /archive: 0 empty of \d+ frames, 0 server pings .*none seen/);

    assert.match(r.stdout, /^NOTE proofpoint_on_demand: first live session and archive beside live not asked: they need --probe-live/m);
    assert.match(r.stdout, /^PROBE summary: 3 answers, 2 MATCHES, 0 DIFFERS, 1 INCONCLUSIVE \(probes never fail the check/m);
    assert.match(r.stdout, /every enabled service answered/);
    // Without --probe-live the server's live resume point is never touched.
    assert.ok(pod.sessions.every((s) => s.mode !== 'live'), JSON.stringify(pod.sessions.map((s) => s.mode)));
    assertNoSecret(r.stdout, r.stderr);

    const usage = await runCliAsync(['check', '--probe', '--config', file]);
    assert.equal(usage.status, 2);
    assert.match(usage.stderr, /--probe needs --online/);
    const usageLive = await runCliAsync(['check', '--online', '--probe-live', '--config', file]);
    assert.equal(usageLive.status, 2);
    assert.match(usageLive.stderr, /--probe-live needs --probe/);
  });
});

test('check --probe: a server that never closes an archive window is reported as an idle end after the cap', async () => {
  await withProbeSim({ profiles: ['archive-never-close'] }, async (pod, dir) => {
    const r = await runCliAsync(['check', '--online', '--probe', '--probe-timeout', '3', '--config', probeConfig(dir, pod)]);
    assert.equal(r.status, 0, r.stdout + r.stderr);
    const end = probeLine(r.stdout, 'archive window end');
    assert.match(end.observed, /no close within the 3\.0 s cap \(still open; the probe closed it\), silent for the last [\d.]+ s; \d+ frames/);
    assert.match(end.observed, /the sidecar ends such a window after 1 s of silence \(an idle end\)/);
    assert.equal(end.verdict, 'MATCHES');
    const future = probeLine(r.stdout, 'future toTime');
    assert.match(future.observed, /served, .*still open after the 3\.0 s cap/);
    // The probe closed what the server left open.
    assert.equal(pod.openSessions(), 0);
  });
});

test('check --probe: a window the server ends with 1001 DIFFERS from what the sidecar counts as complete', async () => {
  await withProbeSim({ profiles: ['archive-close-1001'] }, async (pod, dir) => {
    const r = await runCliAsync(['check', '--online', '--probe', '--probe-timeout', '5', '--config', probeConfig(dir, pod)]);
    assert.equal(r.status, 0, r.stdout + r.stderr);
    const end = probeLine(r.stdout, 'archive window end');
    assert.match(end.observed, /closed by the server with 1001 \("going away"\)/);
    assert.match(end.observed, /the sidecar asks such a window again/);
    assert.equal(end.verdict, 'DIFFERS');
    assert.match(r.stdout, /^PROBE summary: .* 1 DIFFERS/m);
  });
});

test('check --probe: a refused future toTime is reported with the status and the server text', async () => {
  await withProbeSim({ profiles: ['reject-future-totime'] }, async (pod, dir) => {
    const r = await runCliAsync(['check', '--online', '--probe', '--probe-timeout', '5', '--config', probeConfig(dir, pod)]);
    assert.equal(r.status, 0, r.stdout + r.stderr);
    const future = probeLine(r.stdout, 'future toTime');
    assert.match(future.observed, /refused: HTTP 400 "Invalid toTime: .*rounded up to the hour it is in the future"/);
    assert.equal(future.verdict, 'MATCHES');
    // The whole past hour is not affected.
    assert.equal(probeLine(r.stdout, 'archive window end').verdict, 'MATCHES');
  });
});

test('check --probe counts empty frames and server pings and reports them as contact', async () => {
  await withProbeSim({ profiles: ['empty-frames', 'server-pings', 'archive-never-close'], serverPingMs: 100 }, async (pod, dir) => {
    const r = await runCliAsync(['check', '--online', '--probe', '--probe-timeout', '2', '--config', probeConfig(dir, pod)]);
    assert.equal(r.status, 0, r.stdout + r.stderr);
    const rec = pod.sessions.find((s) => s.userAgent?.includes('check --probe') && s.mode === 'archive')!;
    assert.ok(rec.emptyFramesSent > 0 && rec.pingsSent > 0);
    const end = probeLine(r.stdout, 'archive window end');
    assert.match(end.observed, new RegExp(`; ${rec.framesSent} frames \\(${rec.emptyFramesSent} empty\\)`));
    const pings = Number(/, (\d+) server pings,/.exec(end.observed)?.[1]);
    assert.ok(pings > 0 && pings <= rec.pingsSent, `${pings} of ${rec.pingsSent}`);
    const contact = probeLine(r.stdout, 'empty frames and pings');
    assert.match(contact.observed, new RegExp(`^archive: ${rec.emptyFramesSent} empty of ${rec.framesSent} frames, ${pings} server pings in [\\d.]+ s`));
    assert.equal(contact.verdict, 'MATCHES');
  });
});

test('check --probe --probe-live is skipped while the state is locked (a sidecar is running): no live session is opened', async () => {
  const { StateStore } = await import('../../plugin/state/store.ts');
  await withProbeSim({}, async (pod, dir) => {
    const file = probeConfig(dir, pod);
    const store = await StateStore.open(path.join(dir, 'state'));
    try {
      const r = await runCliAsync(['check', '--online', '--probe', '--probe-live', '--probe-timeout', '3', '--config', file]);
      assert.equal(r.status, 0, r.stdout + r.stderr);
      assert.match(r.stdout, /^NOTE proofpoint_on_demand: --probe-live skipped .*in use by another proofpoint-sidecar process.*: stop the sidecar first/m);
      assert.doesNotMatch(r.stdout, /first live session: /);
      // The archive questions are still asked.
      assert.equal(probeLine(r.stdout, 'archive window end').verdict, 'MATCHES');
      assert.ok(pod.sessions.every((s) => s.mode !== 'live'));
    } finally {
      await store.close();
    }
  });
});

test('check --probe --probe-live on a stopped sidecar: first live session, 409 beside it, and an owed replay written into a new cursor', async () => {
  const { StateStore } = await import('../../plugin/state/store.ts');
  const { readCursor } = await import('../../plugin/sources/pod/cursor.ts');
  const { replayAtStart } = await import('../../plugin/sources/pod/mode.ts');
  const { podLimits } = await import('../../plugin/sources/pod/source.ts');
  const { podInputSchema } = await import('../../plugin/sources/pod/config.ts');
  // The token's first session serves the last hour here (history of exactly one hour from event 0).
  await withProbeSim({ firstSessionFrom: 'origin', historyMs: 3600_000 }, async (pod, dir) => {
    const file = probeConfig(dir, pod);
    const r = await runCliAsync(['check', '--online', '--probe', '--probe-live', '--probe-timeout', '3', '--config', file]);
    assert.equal(r.status, 0, r.stdout + r.stderr);
    const first = probeLine(r.stdout, 'first live session');
    assert.match(first.observed, /^served from the last hour: first frame's ts [\d.]+ min before opening/);
    assert.match(first.assumption, /serves the last hour/);
    assert.equal(first.verdict, 'MATCHES');
    const beside = probeLine(r.stdout, 'archive beside live');
    assert.match(beside.observed, /refused: HTTP 409 "Exceeded maximum number of sessions per token": the probe's own live session/);
    assert.equal(beside.verdict, 'MATCHES');
    assert.match(r.stdout, /^NOTE proofpoint_on_demand\/maillog: .*recorded an owed archive replay in the stored cursor, \S+ to \S+ \(reason probe\)/m);
    assert.match(r.stdout, /^PROBE summary: 5 answers/m);

    const live = pod.sessions.filter((s) => s.mode === 'live');
    assert.equal(live.length, 1);
    const store = await StateStore.open(path.join(dir, 'state'), { maintenance: true });
    try {
      const stored = await store.getCursor('p', 'maillog');
      const { cursor } = readCursor(stored?.cursor);
      assert.ok(cursor?.owed, JSON.stringify(stored));
      assert.equal(cursor.owed.reason, 'probe');
      assert.equal(cursor.owed.from % 3600_000, 0);
      assert.ok(cursor.owed.from <= live[0]!.startedAt && live[0]!.startedAt - cursor.owed.from < 3600_000);
      assert.ok(cursor.owed.until >= live[0]!.endedAt! - 1000, `${cursor.owed.until} vs ${live[0]!.endedAt}`);
      // The start time the next start compares with is recorded, so the cursor is not reset...
      assert.equal(await store.getStartTime('p', 'maillog'), null);
      assert.equal(store.uncleanShutdown, false);
      // ...and the next start replays what the probe read.
      const cfg = podInputSchema.parse(JSON.parse(readFileSync(file, 'utf8')).inputs.proofpoint_on_demand);
      const replay = replayAtStart({ now: Date.now(), cursor, uncleanShutdown: false }, podLimits(cfg));
      assert.ok(replay);
      assert.equal(replay.from, cursor.owed.from);
      assert.equal(replay.until, cursor.owed.until);
    } finally {
      await store.close();
    }
    assertNoSecret(r.stdout, r.stderr);
  });
});

test('check --probe --probe-live merges its owed replay with the one already in the cursor and keeps the rest', async () => {
  const { StateStore } = await import('../../plugin/state/store.ts');
  await withProbeSim({}, async (pod, dir) => {
    const file = probeConfig(dir, pod);
    const now = Date.now();
    const hour = 3600_000;
    const before = {
      v: 1,
      ts: '2020-01-01T00:00:00.000000+0000',
      sec: Math.floor((now - 40 * 60_000) / 1000),
      nsec: 0,
      liveAt: now - 30 * 60_000,
      owed: { reason: 'unclean_shutdown', from: Math.floor(now / hour) * hour - 5 * hour, until: now - 4 * hour, offsetMin: 0 },
    };
    let store = await StateStore.open(path.join(dir, 'state'), { maintenance: true });
    await store.adoptCursor('p', 'maillog', before, null);
    await store.close();

    const r = await runCliAsync(['check', '--online', '--probe', '--probe-live', '--probe-timeout', '3', '--config', file]);
    assert.equal(r.status, 0, r.stdout + r.stderr);
    // The sidecar's last live contact was 30 minutes ago, so a resume from there is expected;
    // this simulator has no such session and serves from now.
    const first = probeLine(r.stdout, 'first live session');
    assert.match(first.assumption, /resumes where that one ended \(the sidecar's last live contact: 30\.\d min before\)/);
    assert.equal(first.verdict, 'DIFFERS');
    assert.match(r.stdout, /reason probe, merged with the replay already owed/);

    const live = pod.sessions.find((s) => s.mode === 'live')!;
    store = await StateStore.open(path.join(dir, 'state'), { maintenance: true });
    try {
      const after = (await store.getCursor<typeof before>('p', 'maillog'))!.cursor;
      assert.deepEqual({ ...after, owed: undefined }, { ...before, owed: undefined });
      assert.equal(after.owed.reason, 'probe');
      assert.equal(after.owed.from, before.owed.from);
      assert.ok(after.owed.until >= live.endedAt! - 1000);
      assert.equal(await store.getStartTime('p', 'maillog'), null);
    } finally {
      await store.close();
    }
  });
});
