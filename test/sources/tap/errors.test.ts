/**
 * Fatal and per-input errors: 401 stops only its input (error 100) while another input goes on;
 * a start time in the future is error 101 at config time.
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { Pipeline } from '../../../plugin/pipeline/pipeline.ts';
import { StateStore } from '../../../plugin/state/store.ts';
import { tapInputSchema } from '../../../plugin/sources/tap/config.ts';
import { createTapSource, StartTimeError } from '../../../plugin/sources/tap/create.ts';
import { startTapSimulator } from '../../../plugin/simulator/tap/index.ts';
import { FakeClock } from '../../helpers/fake-clock.ts';
import { MemorySink } from '../../helpers/memory-sink.ts';
import { tmpDir } from '../../helpers/tmp.ts';
import { HOUR, T0, TrackingClock, captureLogger, driveUntil, invalidRequests } from './harness.ts';

const iso = (ms: number) => new Date(ms).toISOString();

test('401: error 100 stops that input with a clear message; the other input goes on', async () => {
  const clock = new FakeClock(T0);
  const tracking = new TrackingClock(clock);
  const sim = await startTapSimulator({ clock, ratesPerHour: { clicksBlocked: 20, clicksPermitted: 20, messagesBlocked: 20, messagesDelivered: 20 } });
  const { logger, lines } = captureLogger();
  const store = await StateStore.open(tmpDir(), { clock, logger });
  const sink = new MemorySink();
  const services = { clicksBlocked: { start_time_in_utc: iso(T0 - 3 * HOUR) }, messagesDelivered: { start_time_in_utc: iso(T0 - 3 * HOUR) } };
  const bad = createTapSource(
    tapInputSchema.parse({ id: 'tap-bad', credentials: { username: sim.credentials.username, password: 'not-the-secret-42' }, override_url_base: sim.url, services }),
    { clock },
  );
  const good = createTapSource(tapInputSchema.parse({ id: 'tap-good', credentials: sim.credentials, override_url_base: sim.url, services }), { clock });
  const p = new Pipeline({ store, sink, sources: [bad, good], clock: tracking, logger });
  try {
    await p.start();
    const cursorOf = (input: string, s: string) => p.counters().find((c) => c.input === input && c.service === s)?.cursor as { settled_to: string } | undefined;
    await driveUntil(tracking, sim, () => `${sink.sends.length}`, () =>
      ['clicksBlocked', 'messagesDelivered'].every((s) => Date.parse(cursorOf('tap-good', s)?.settled_to ?? iso(0)) >= T0 - HOUR),
    );
    for (const s of ['clicksBlocked', 'messagesDelivered']) {
      const h = p.health.get('tap-bad', s);
      assert.equal(h?.status, 'failed', `tap-bad ${s} failed`);
      assert.match(h!.reason!, /error 100: TAP API refused the credentials of input tap-bad \(HTTP 401/);
      assert.equal(cursorOf('tap-bad', s), undefined, 'no cursor for the failed input');
      assert.equal(p.health.get('tap-good', s)?.status, 'ok');
    }
    const good401 = sim.requests.filter((r) => r.status === 401);
    assert.equal(good401.length, 1, 'the failed input asked once and stopped');
    assert.ok(sink.records.length > 50 && sink.records.every((r) => r.record['input_id'] === 'tap-good'), 'the good input delivered');
    const err = lines.find((l) => l.level === 'error' && /refused the credentials/.test(l.msg));
    assert.ok(err, 'logged at error level');
    assert.match(err.msg, /input tap-bad is stopped \(error 100\), other inputs go on/);
    assert.ok(!JSON.stringify(lines).includes('not-the-secret-42'), 'the secret is never logged');
    assert.ok(!JSON.stringify(lines).includes(sim.credentials.password), 'nor the good one');
    assert.deepEqual(invalidRequests(sim), []);
  } finally {
    await p.stop(5000);
    await store.close();
    await sim.close();
  }
});

test('start_time_in_utc in the future: error 101 at config time', () => {
  const clock = new FakeClock(T0);
  const cfg = tapInputSchema.parse({
    id: 'x',
    credentials: { username: 'u', password: 'p' },
    services: { clicksBlocked: {}, messagesBlocked: { start_time_in_utc: iso(T0 + HOUR) } },
  });
  assert.throws(
    () => createTapSource(cfg, { clock }),
    (e: unknown) =>
      e instanceof StartTimeError &&
      e.code === 101 &&
      e.exitCode === 2 &&
      /services\.messagesBlocked\.start_time_in_utc: 2026-11-23T13:00:00.000Z is in the future/.test(e.message),
  );
});

test('config: a bad start time and other refusals name the key', () => {
  const base = { id: 'x', credentials: { username: 'u', password: 'p' } };
  const cases: Array<[string, Record<string, unknown>, RegExp]> = [
    ['bad timestamp', { services: { clicksBlocked: { start_time_in_utc: 'last tuesday' } } }, /start_time_in_utc/],
    ['no service', { services: {} }, /at least one service/],
    ['falsePositive without the opt-in', { services: { clicksBlocked: {} }, threat_status: ['falsePositive'] }, /include_false_positives/],
    ['budget above the API\'s', { services: { clicksBlocked: {} }, max_requests_per_day: 2000 }, /max_requests_per_day/],
    ['dedup window shorter than the settle', { services: { clicksBlocked: {} }, dedup_window_secs: 3600 }, /dedup_window_secs/],
    ['window lag of zero', { services: { clicksBlocked: {} }, window_lag_secs: 0 }, /window_lag_secs/],
  ];
  for (const [name, patch, re] of cases) {
    const r = tapInputSchema.safeParse({ ...base, ...patch });
    assert.equal(r.success, false, name);
    assert.match(JSON.stringify(r.error!.issues), re, name);
  }
  const ok = tapInputSchema.parse({ ...base, services: { clicksBlocked: {} } });
  assert.equal(ok.window_lag_secs, 120);
  assert.equal(ok.settle_requery_enabled, true);
  assert.equal(ok.max_requests_per_day, 1800);
  assert.equal(ok.include_false_positives, false);
});
