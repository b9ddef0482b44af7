/**
 * Incremental reader of a TAP 200 answer, `{"queryEndTime": "...", "<service>": [ {...}, ... ]}`,
 * fed the body in chunks as they arrive, so a window's answer is never whole in memory: only the
 * element being read and the elements not yet taken by the caller are.
 *
 * It frames the answer (the top-level object, its keys, each element of a service's array) with
 * a resumable byte scanner, and parses every framed value with `JSON.parse`: the scanner looks at
 * a byte once, the parse is V8's. The guarantees are parseArrays' (sources/tap/client.ts): a body
 * that is not an object, a known key holding anything but an array, no `queryEndTime`, or text
 * that is not JSON throw MalformedAnswer (an error for the window, never an empty window). Keys
 * are matched without trailing punctuation (`"messagesDelivered:"`). Elements are not looked at
 * (a bad element is the event builder's business). The scanner keeps no stack, only a depth count,
 * so nesting depth costs nothing; `JSON.parse` is not recursive on the native stack.
 *
 * A known key given twice has both arrays delivered (JSON.parse would keep the last one only:
 * delivering both loses nothing, and de-duplication drops repeats).
 */
import { TAP_SERVICES, type TapServiceName } from './config.ts';
import { parseTimestamp } from '../../util/time.ts';

/** Why a 200 body is not the documented answer. */
export class MalformedAnswer extends Error {}

const enum B {
  QUOTE = 0x22,
  BACKSLASH = 0x5c,
  COMMA = 0x2c,
  COLON = 0x3a,
  LBRACE = 0x7b,
  RBRACE = 0x7d,
  LBRACKET = 0x5b,
  RBRACKET = 0x5d,
}

function isWs(c: number): boolean {
  return c === 0x20 || c === 0x0a || c === 0x0d || c === 0x09;
}

/** Where the framing is: what the next significant byte may be. */
const enum At {
  ROOT,
  KEY_OR_END, // after '{'
  KEY, // after ','
  COLON,
  VALUE,
  AFTER_VALUE,
  ELEMENT_OR_END, // after '['
  ELEMENT, // after ',' in an array
  AFTER_ELEMENT,
  END,
}

/** What a value being framed is. */
const enum V {
  NONE,
  STRING,
  CONTAINER,
  PRIMITIVE,
}

const SERVICES = TAP_SERVICES as readonly string[];

export interface AnswerSink {
  /** One element of a service's array, in body order. */
  element(service: TapServiceName, value: unknown): void;
}

export class AnswerScanner {
  readonly #sink: AnswerSink;
  #at: At = At.ROOT;
  /** The value being framed: its kind, container depth, string state, and its bytes so far. */
  #v: V = V.NONE;
  #depth = 0;
  #inString = false;
  #escape = false;
  #parts: Buffer[] = [];
  /** What the value being framed is: a key, a top-level value, or an array element. */
  #role: 'key' | 'value' | 'element' = 'key';
  #key = '';
  #service: TapServiceName | undefined;
  #queryEndTime: string | undefined;
  /** Services whose array the answer carried. */
  readonly services = new Set<TapServiceName>();

  constructor(sink: AnswerSink) {
    this.#sink = sink;
  }

  /** Feeds the next chunk of the body; throws MalformedAnswer. */
  write(chunk: Buffer): void {
    let i = 0;
    const n = chunk.length;
    while (i < n) {
      if (this.#v !== V.NONE) {
        const end = this.#scanValue(chunk, i);
        if (end < 0) {
          this.#parts.push(i === 0 ? chunk : chunk.subarray(i));
          return;
        }
        this.#parts.push(chunk.subarray(i, end));
        i = end;
        this.#valueDone();
        continue;
      }
      const c = chunk[i]!;
      if (!isWs(c)) this.#structural(c);
      i++;
    }
  }

  /** Takes one significant byte `c` outside any value being framed; throws MalformedAnswer. */
  #structural(c: number): void {
    switch (this.#at) {
      case At.ROOT:
        if (c !== B.LBRACE) throw new MalformedAnswer(`the body is ${describeFirst(c)}, not an object`);
        this.#at = At.KEY_OR_END;
        break;
      case At.KEY_OR_END:
      case At.KEY:
        if (c === B.RBRACE && this.#at === At.KEY_OR_END) {
          this.#at = At.END;
          break;
        }
        if (c !== B.QUOTE) throw notJson();
        this.#role = 'key';
        this.#begin(c);
        break;
      case At.COLON:
        if (c !== B.COLON) throw notJson();
        this.#at = At.VALUE;
        break;
      case At.VALUE: {
        const key = this.#key.trim().replace(/[^A-Za-z]+$/, '');
        const service = SERVICES.includes(key) ? (key as TapServiceName) : undefined;
        if (service !== undefined && c === B.LBRACKET) {
          this.#service = service;
          this.services.add(service);
          this.#at = At.ELEMENT_OR_END;
          break;
        }
        this.#service = service;
        this.#role = 'value';
        this.#begin(c);
        break;
      }
      case At.AFTER_VALUE:
        if (c === B.COMMA) this.#at = At.KEY;
        else if (c === B.RBRACE) this.#at = At.END;
        else throw notJson();
        break;
      case At.ELEMENT_OR_END:
      case At.ELEMENT:
        if (c === B.RBRACKET && this.#at === At.ELEMENT_OR_END) {
          this.#at = At.AFTER_VALUE;
          break;
        }
        this.#role = 'element';
        this.#begin(c);
        break;
      case At.AFTER_ELEMENT:
        if (c === B.COMMA) this.#at = At.ELEMENT;
        else if (c === B.RBRACKET) this.#at = At.AFTER_VALUE;
        else throw notJson();
        break;
      case At.END:
        throw notJson();
    }
  }

  /** The body ended: checks it was a whole answer; returns its queryEndTime. */
  end(): { queryEndTime: string } {
    if (this.#at === At.ROOT) throw new MalformedAnswer('empty body');
    if (this.#at !== At.END || this.#v !== V.NONE) throw notJson();
    if (this.#queryEndTime === undefined) throw new MalformedAnswer('no queryEndTime');
    return { queryEndTime: this.#queryEndTime };
  }

  /** Starts framing a value whose first byte `c` was just read (the byte is kept). */
  #begin(c: number): void {
    this.#parts = [Buffer.of(c)];
    this.#depth = 0;
    this.#inString = false;
    this.#escape = false;
    if (c === B.QUOTE) {
      this.#v = V.STRING;
      this.#inString = true;
    } else if (c === B.LBRACE || c === B.LBRACKET) {
      this.#v = V.CONTAINER;
      this.#depth = 1;
    } else if (c === B.RBRACE || c === B.RBRACKET || c === B.COMMA || c === B.COLON) {
      throw notJson();
    } else {
      this.#v = V.PRIMITIVE;
    }
  }

  /** Scans `chunk` from `i` for the end of the value being framed: the index after it, or -1. */
  #scanValue(chunk: Buffer, i: number): number {
    const n = chunk.length;
    if (this.#v === V.PRIMITIVE) {
      for (; i < n; i++) {
        const c = chunk[i]!;
        if (c === B.COMMA || c === B.RBRACE || c === B.RBRACKET || isWs(c)) return i;
      }
      return -1;
    }
    for (; i < n; i++) {
      const c = chunk[i]!;
      if (this.#inString) {
        if (this.#escape) this.#escape = false;
        else if (c === B.BACKSLASH) this.#escape = true;
        else if (c === B.QUOTE) {
          this.#inString = false;
          if (this.#v === V.STRING) return i + 1;
        } else {
          // Long runs of plain string bytes: jump to the next quote, or to a backslash before it.
          // The backslash is looked for only up to that quote: searching the rest of the chunk
          // for every string made the scan quadratic in the chunk's size.
          const q = chunk.indexOf(B.QUOTE, i);
          const lim = q < 0 ? n : q;
          let j = i;
          while (j < lim && chunk[j] !== B.BACKSLASH) j++;
          if (j === n) return -1;
          i = j - 1;
        }
        continue;
      }
      if (c === B.QUOTE) this.#inString = true;
      else if (c === B.LBRACE || c === B.LBRACKET) this.#depth++;
      else if (c === B.RBRACE || c === B.RBRACKET) {
        if (--this.#depth === 0) return i + 1;
      }
    }
    return -1;
  }

  #valueDone(): void {
    const bytes = this.#parts.length === 1 ? this.#parts[0]! : Buffer.concat(this.#parts);
    this.#parts = [];
    this.#v = V.NONE;
    let value: unknown;
    try {
      value = JSON.parse(bytes.toString('utf8'));
    } catch {
      throw notJson();
    }
    if (this.#role === 'key') {
      this.#key = value as string;
      this.#at = At.COLON;
      return;
    }
    if (this.#role === 'element') {
      this.#sink.element(this.#service!, value);
      this.#at = At.AFTER_ELEMENT;
      return;
    }
    // A top-level value that is not a service's array.
    const key = this.#key.trim().replace(/[^A-Za-z]+$/, '');
    if (key === 'queryEndTime') {
      if (typeof value !== 'string' || parseTimestamp(value) === undefined) {
        throw new MalformedAnswer(`queryEndTime is ${typeof value === 'string' ? `"${value.slice(0, 40)}"` : describe(value)}, not a timestamp`);
      }
      this.#queryEndTime = value;
    } else if (this.#service !== undefined) {
      throw new MalformedAnswer(`"${this.#key.slice(0, 40)}" is ${describe(value)}, not an array`);
    }
    this.#at = At.AFTER_VALUE;
  }
}

function notJson(): MalformedAnswer {
  return new MalformedAnswer('not JSON');
}

function describeFirst(c: number): string {
  if (c === B.LBRACKET) return 'an array';
  if (c === B.QUOTE) return 'a string';
  if (c === 0x6e) return 'null';
  if (c === 0x74 || c === 0x66) return 'a boolean';
  if (c === 0x2d || (c >= 0x30 && c <= 0x39)) return 'a number';
  throw notJson();
}

function describe(v: unknown): string {
  if (v === null) return 'null';
  if (Array.isArray(v)) return 'an array';
  return typeof v === 'object' ? 'an object' : `a ${typeof v}`;
}
