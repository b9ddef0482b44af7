import { test } from 'node:test';
import assert from 'node:assert/strict';
import { BackfillProgress } from '../../plugin/telemetry/progress.ts';
import { SourceMetricsStore } from '../../plugin/telemetry/source-metrics.ts';
import { formatUtc } from '../../plugin/util/time.ts';
import { FakeClock } from '../helpers/fake-clock.ts';
import { captureLogger } from '../sources/tap/harness.ts';

const HOUR = 3600_000;

test('backfill progress: position, what remains and an ETA from the observed rate, in metrics and a periodic log line', async () => {
  const clock = new FakeClock();
  const store = new SourceMetricsStore();
  const { logger, lines } = captureLogger();
  const p = new BackfillProgress({ metrics: store.forInput('pod-1'), logger, clock, service: 'message', label: 'PoD message archive replay' });
  const value = (name: Parameters<SourceMetricsStore['values']>[0]) => store.values(name).find((v) => v.labels['service'] === 'message')?.value;
  const start = clock.now() - 30 * HOUR;
  const end = clock.now() - HOUR;

  p.update(start, end);
  assert.equal(value('backfill_active'), 1);
  assert.equal(value('backfill_remaining_seconds'), 29 * 3600);
  assert.equal(value('backfill_eta_seconds'), -1, 'unknown before any progress');
  assert.match(lines.at(-1)!.msg, /PoD message archive replay: at .*, 1d 5h of events to go; time to live not known yet/);

  // One hour window per minute: 29 h remain, so 29 minutes to go.
  await clock.advance(60_000);
  p.update(start + HOUR, end);
  assert.equal(value('backfill_position_timestamp_seconds'), Math.floor((start + HOUR) / 1000));
  assert.equal(value('backfill_eta_seconds'), 28 * 60);
  assert.equal(lines.length, 1, 'at most one line per 5 minutes');
  for (let i = 2; i <= 6; i++) {
    await clock.advance(60_000);
    p.update(start + i * HOUR, end);
  }
  assert.equal(lines.length, 2, 'the next line after 5 minutes');
  assert.match(lines.at(-1)!.msg, /1d 0h of events to go; live in about 24m 0s \(at /);
  assert.equal(p.snapshot?.etaMs, 23 * 60_000);

  p.live(end);
  assert.equal(value('backfill_active'), 0);
  assert.equal(value('backfill_remaining_seconds'), 0);
  assert.equal(value('backfill_eta_seconds'), 0);
  assert.match(lines.at(-1)!.msg, new RegExp(`done; live from ${formatUtc(end).replace(/\./g, '\\.')}`));
});

test('a moving target (TAP catching up to now): the ETA counts what now gains meanwhile', async () => {
  const clock = new FakeClock();
  const store = new SourceMetricsStore();
  const p = new BackfillProgress({ metrics: store.forInput('tap-1'), logger: captureLogger().logger, clock, service: 'messagesDelivered', label: 'TAP messagesDelivered backfill' });
  let position = clock.now() - 10 * HOUR;
  p.update(position, clock.now());
  // 2 h of events per wall hour while now moves 1 h: 1 h gained per hour, 10 h behind -> ~9 h more.
  await clock.advance(HOUR);
  position += 2 * HOUR;
  p.update(position, clock.now());
  assert.equal(p.snapshot?.remainingMs, 9 * HOUR);
  assert.equal(p.snapshot?.etaMs, 9 * HOUR);
});
