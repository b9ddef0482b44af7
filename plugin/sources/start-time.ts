/**
 * The start-time check both vendors' inputs run when a source is built, checked or leased: a
 * configured start time must be a timestamp and not after now. The Devo collectors refuse a
 * future start time at config time with code 101; so does this sidecar, as a configuration error
 * (exit code 2). A value of `null` or an omitted key is not checked: it means "from now" or the
 * vendor's default start (each input's config.ts says which).
 */
import { ErrorCode, SidecarError } from '../errors.ts';
import { formatUtc, parseTimestampMs } from '../util/time.ts';

/** Code 101: a start time that is not a timestamp or is in the future. Exit code 2. */
export class StartTimeError extends SidecarError {
  constructor(message: string) {
    super(ErrorCode.BAD_START_TIME, message, { exitCode: 2, fatal: true });
  }
}

/** One service's configured start time, with the full config path of its key. */
export interface StartTimeSetting {
  /** e.g. `inputs.proofpoint_tap.services.clicksBlocked.start_time_in_utc`. */
  path: string;
  text: string | null | undefined;
}

/** Throws StartTimeError (101) for the first setting that is not a timestamp or is after `now`. */
export function assertStartTimes(settings: Iterable<StartTimeSetting>, now: number): void {
  for (const { path, text } of settings) {
    if (text === undefined || text === null) continue;
    const at = parseTimestampMs(text);
    if (at === undefined) throw new StartTimeError(`${path}: "${text}" is not a timestamp`);
    if (at > now) throw new StartTimeError(`${path}: ${text} is in the future (now is ${formatUtc(now)})`);
  }
}
