/**
 * TAP-specific errors. They extend the project's coded errors (plugin/errors.ts), so their codes keep
 * the Devo collector's meaning: 300 HTTP error (with status, text and window); the start-time error
 * (101) is both vendors' one, sources/start-time.ts.
 * Messages never carry credentials: the request URL has none and the Authorization header is not
 * echoed; error bodies are cut short.
 */
import { VendorHttpError } from '../../errors.ts';

/**
 * Why the API refused a window with 400, told by its text: "The requested start time is too far into
 * the past" (its 7-day limit, on its clock) and "The requested interval is still current" (an end
 * not yet past, on its clock); any other text is `other`.
 */
export type WindowRefusal = 'too_far_in_past' | 'still_current' | 'other';

/** Code 300 for a 400 answer; `refusal` tells the two recoverable window texts apart. */
export class TapBadRequestError extends VendorHttpError {
  readonly refusal: WindowRefusal;
  constructor(body: string, message: string) {
    super(400, body, message);
    const text = body.toLowerCase();
    this.refusal = text.includes('too far into the past')
      ? 'too_far_in_past'
      : text.includes('still current')
        ? 'still_current'
        : 'other';
  }
}

/** Code 300 for a 429: the pool's 24 h budget is spent on the server's side. */
export class TapThrottledError extends VendorHttpError {
  constructor(body: string, message: string) {
    super(429, body, message);
  }
}

/**
 * Code 300 for a 200 answer that is not the documented one: not JSON, not an object, no
 * `queryEndTime`, or an array key holding something else. The window is retried, never taken as
 * empty: an answer that cannot be read says nothing about the events of its window.
 */
export class TapMalformedAnswerError extends VendorHttpError {
  /** What is wrong, in a few words (the message adds the input, the window and an excerpt). */
  readonly problem: string;
  constructor(problem: string, excerpt: string, message: string) {
    super(200, excerpt, message);
    this.problem = problem;
  }
}
