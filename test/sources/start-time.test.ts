/**
 * The one start-time check of both inputs (plugin/sources/start-time.ts): a start time in the
 * future, or one that is not a timestamp, is StartTimeError (101, exit code 2) naming the key's
 * full path, for TAP and PoD alike.
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { ErrorCode } from '../../plugin/errors.ts';
import { StartTimeError, assertStartTimes } from '../../plugin/sources/start-time.ts';
import { StartTimeError as TapStartTimeError, createTapSource } from '../../plugin/sources/tap/create.ts';
import { checkTapConfig } from '../../plugin/sources/tap/check.ts';
import { tapInputSchema } from '../../plugin/sources/tap/config.ts';
import { StartTimeError as PodStartTimeError, createPodSource } from '../../plugin/sources/pod/create.ts';
import { checkPodConfig } from '../../plugin/sources/pod/check.ts';
import { podInputSchema } from '../../plugin/sources/pod/config.ts';
import { FakeClock } from '../helpers/fake-clock.ts';

const NOW = Date.UTC(2026, 10, 23, 12);
const FUTURE = '2026-11-23T13:00:00Z';

function isStartTimeError(path: string, wording: RegExp) {
  return (e: unknown) => {
    assert.ok(e instanceof StartTimeError, `a StartTimeError, got ${String(e)}`);
    assert.equal(e.code, ErrorCode.BAD_START_TIME);
    assert.equal(e.code, 101);
    assert.equal(e.exitCode, 2);
    assert.equal(e.fatal, true);
    assert.ok(e.message.startsWith(`${path}: `), e.message);
    assert.match(e.message, wording);
    return true;
  };
}

test('one start-time error class for both vendors: TAP and PoD refuse a future start with the same StartTimeError', () => {
  assert.equal(TapStartTimeError, StartTimeError, 'TAP exports the shared class');
  assert.equal(PodStartTimeError, StartTimeError, 'PoD exports the shared class');
  const clock = new FakeClock(NOW);
  const tap = tapInputSchema.parse({
    id: 'tap',
    credentials: { username: 'u', password: 'p' },
    services: { clicksBlocked: {}, messagesBlocked: { start_time_in_utc: FUTURE } },
  });
  const tapPath = 'inputs.proofpoint_tap.services.messagesBlocked.start_time_in_utc';
  const future = new RegExp(`: ${FUTURE} is in the future \\(now is 2026-11-23T12:00:00.000Z\\)$`);
  assert.throws(() => createTapSource(tap, { clock }), isStartTimeError(tapPath, future));
  assert.throws(() => checkTapConfig(tap, NOW), isStartTimeError(tapPath, future));

  const pod = podInputSchema.parse({
    id: 'pod',
    credentials: { cluster_id: 'c', api_key: 'k-0123456789' },
    services: { message: {}, maillog: { start_time: FUTURE } },
  });
  const podPath = 'inputs.proofpoint_on_demand.services.maillog.start_time';
  assert.throws(() => createPodSource(pod, { clock, env: {} }), isStartTimeError(podPath, future));
  assert.throws(() => checkPodConfig(pod, NOW, {}), isStartTimeError(podPath, future));
});

test('one start-time check: a past start, an omitted one and null pass; the first bad one is named', () => {
  assert.doesNotThrow(() =>
    assertStartTimes(
      [
        { path: 'a', text: '2026-11-23T11:00:00Z' },
        { path: 'b', text: undefined },
        { path: 'c', text: null },
        { path: 'd', text: '2026-11-23T12:00:00Z' },
      ],
      NOW,
    ),
  );
  assert.throws(
    () => assertStartTimes([{ path: 'x.start_time', text: 'yesterday' }, { path: 'y.start_time', text: FUTURE }], NOW),
    isStartTimeError('x.start_time', /: "yesterday" is not a timestamp$/),
  );
  assert.throws(
    () => assertStartTimes([{ path: 'x.start_time', text: '2026-11-20T00:00:00Z' }, { path: 'y.start_time', text: FUTURE }], NOW),
    isStartTimeError('y.start_time', / is in the future /),
  );
});
