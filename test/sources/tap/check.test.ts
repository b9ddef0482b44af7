import { test } from 'node:test';
import assert from 'node:assert/strict';
import { tapInputSchema } from '../../../plugin/sources/tap/config.ts';
import { checkTapConfig } from '../../../plugin/sources/tap/check.ts';
import { StartTimeError } from '../../../plugin/sources/start-time.ts';

const NOW = Date.UTC(2026, 10, 23, 12);
const iso = (ms: number) => new Date(ms).toISOString();
const cfg = (patch: Record<string, unknown>) =>
  tapInputSchema.parse({ id: 'x', credentials: { username: 'u', password: 'p' }, services: { clicksBlocked: {}, messagesDelivered: {} }, ...patch });

test('check: warnings for what the config will really do', () => {
  const cases: Array<{ name: string; cfg: Record<string, unknown>; want: RegExp[]; not?: RegExp[] }> = [
    { name: 'defaults fit the budget', cfg: {}, want: [] },
    {
      name: 'a cadence the 1800/24 h budget cannot fit, with the fix',
      cfg: { services: { clicksBlocked: { request_period_in_seconds: 30 }, messagesDelivered: { request_period_in_seconds: 30 } } },
      want: [/polling every 30 s needs 2880 requests a day plus 96 settle re-queries = 2976, more than the 1800 .* pool shared.*raise request_period_in_seconds to at least 51/],
    },
    {
      name: 'a single clicksPermitted service has its own pool',
      cfg: { services: { clicksPermitted: { request_period_in_seconds: 40 } } },
      want: [/pool clicksPermitted/],
    },
    {
      name: 'a lower budget for a shared credential',
      cfg: { max_requests_per_day: 1000 },
      want: [/1536, more than the 1000/],
    },
    {
      name: 'services with different periods share /all',
      cfg: { services: { clicksBlocked: { request_period_in_seconds: 300 }, messagesDelivered: { request_period_in_seconds: 60 } } },
      want: [/share one \/v2\/siem\/all request per window, so the shortest request_period_in_seconds \(60\) applies/],
    },
    {
      name: 'a start older than 7 days',
      cfg: { services: { clicksBlocked: { start_time_in_utc: iso(NOW - 10 * 86_400_000) } } },
      want: [/services\.clicksBlocked\.start_time_in_utc .* is more than 7 days back: .* data older than 2026-11-16T12:00:00.000Z cannot be fetched/],
    },
    {
      name: 'settle off',
      cfg: { settle_requery_enabled: false },
      want: [/late and events indexed after their window was queried will be missed|up to about 30 minutes late/],
    },
    {
      name: 'plain HTTP to a remote host',
      cfg: { override_url_base: 'http://tap.example.com' },
      want: [/plain HTTP to a non-loopback host/],
    },
    { name: 'plain HTTP on loopback is fine (simulator)', cfg: { override_url_base: 'http://127.0.0.1:8080' }, want: [] },
  ];
  for (const c of cases) {
    const w = checkTapConfig(cfg(c.cfg), NOW);
    if (c.want.length === 0) assert.deepEqual(w, [], c.name);
    for (const re of c.want) assert.ok(w.some((x) => re.test(x)), `${c.name}: ${re} in ${JSON.stringify(w)}`);
  }
});

test('check: a start time in the future is error 101', () => {
  assert.throws(
    () => checkTapConfig(cfg({ services: { clicksBlocked: { start_time_in_utc: iso(NOW + 60_000) } } }), NOW),
    (e: unknown) => e instanceof StartTimeError && e.code === 101,
  );
});
