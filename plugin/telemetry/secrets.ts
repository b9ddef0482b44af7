/**
 * Credentials never leave the process in clear. Every credential the config loader reads (and
 * every Authorization value a client builds) is registered here; `scrub()` masks it in any text,
 * in every form it may take on the way: as is, URL-encoded, JSON-escaped up to three times (a
 * vendor's JSON body, quoted into a message, in a JSON log line), HTML-escaped, base64-encoded,
 * and the HTTP Basic base64 of a `principal:secret` pair. On top of the registered values, the
 * value of any Authorization, Proxy-Authorization, Cookie or Set-Cookie header written out in
 * text is masked by pattern, and so is any Basic or Bearer credential, registered or not.
 *
 * Text a vendor (or a proxy in between) wrote, quoted into an error or a log line, goes through
 * `vendorText()`: scrubbed first, then cut to a bounded length, so a cut never leaves a
 * recognisable part of a secret behind. The logger's last step, `scrubLogLine()`, masks the line
 * as finally written and keeps it valid JSON.
 */

/** Shorter values are too likely to match ordinary text to be masked usefully. */
const MIN_SECRET_LENGTH = 4;

/** The most characters of vendor text kept in a message or a log line. */
export const MAX_VENDOR_TEXT = 512;

const MASK = '***';

/** How many JSON escapings of a value are masked (a body in a quoted message in a JSON log line). */
const JSON_DEPTH = 3;

const forms = new Set<string>();
let formsPattern: RegExp | undefined;

/** Registers one credential (password, API key, shared key, ...) in all its forms. */
export function registerSecret(value: string | undefined | null): void {
  if (!usable(value)) return;
  addForms(value);
  // Some servers echo what they decoded, others what they were sent: the secret alone may show base64-encoded.
  addBase64Forms(Buffer.from(value, 'utf8'));
}

/**
 * Registers a principal and its secret as HTTP Basic sends them, `base64(principal:secret)`: a
 * server that echoes the Authorization header shows neither value in clear, only this.
 */
export function registerCredentialPair(principal: string | undefined | null, secret: string | undefined | null): void {
  if (typeof principal !== 'string' || !usable(secret)) return;
  registerSecret(secret);
  addBase64Forms(Buffer.from(`${principal}:${secret}`, 'utf8'));
}

/** Padded (longest first, so it is masked whole), unpadded and URL-safe. */
function addBase64Forms(bytes: Buffer): void {
  const b64 = bytes.toString('base64');
  addForms(b64);
  addForms(b64.replace(/=+$/, ''));
  addForms(bytes.toString('base64url'));
}

function usable(value: string | undefined | null): value is string {
  return typeof value === 'string' && value.length >= MIN_SECRET_LENGTH;
}

function addForms(value: string): void {
  const before = forms.size;
  const encoded = [value, encodeURIComponent(value), new URLSearchParams({ v: value }).toString().slice(2)];
  for (const e of encoded) {
    forms.add(htmlEscaped(e));
    // A vendor's JSON body, quoted in a message, in a JSON log line: escaped up to three times.
    for (let f = e, depth = 0; depth <= JSON_DEPTH; f = jsonEscaped(f), depth++) {
      forms.add(f);
      forms.add(f.replaceAll('/', '\\/'));
    }
  }
  if (forms.size !== before) formsPattern = undefined;
}

function jsonEscaped(s: string): string {
  return JSON.stringify(s).slice(1, -1);
}

function htmlEscaped(s: string): string {
  return s.replace(/[&<>"']/g, (c) => `&${{ '&': 'amp', '<': 'lt', '>': 'gt', '"': 'quot', "'": '#39' }[c]};`);
}

/** One alternation, longest form first: at any position the longest registered form is masked whole. */
function registeredPattern(): RegExp | undefined {
  if (forms.size === 0) return undefined;
  formsPattern ??= new RegExp(
    [...forms]
      .sort((a, b) => b.length - a.length)
      .map((f) => f.replace(/[.*+?^${}()|[\]\\/]/g, '\\$&'))
      .join('|'),
    'g',
  );
  return formsPattern;
}

/**
 * A header name with its separator as it shows in text: `Authorization: ...` (an HTTP echo),
 * `"authorization":"..."` (JSON, at any escaping depth), `authorization: '...'` (inspect),
 * `authorization=...` (logfmt, query strings). Group 4 is the value's opening quote, if any.
 */
const HEADER = /(?<![A-Za-z0-9_])((?:proxy-)?authorization|set-cookie|cookie)((?:\\*["'])?)([ \t]*[:=][ \t]*)((?:\\*["'])?)/gi;
/** An authentication scheme kept in clear before the masked value, so a message still says what was sent. */
const SCHEME = /^(?:Basic|Bearer|Digest|Negotiate|NTLM|Token|ApiKey|AWS4-HMAC-SHA256)[ \t]+/i;
/** Where an unquoted header value ends: the line's end (a real one, or an escaped one inside JSON) or a quote. */
const UNQUOTED_END = /[\r\n"'<>]|\\[rnt"'\\]/;
/** An unquoted Basic or Bearer value is one token; anything else (cookies, Digest) runs to the line's end. */
const TOKEN_VALUE = /^(?:Basic|Bearer)[ \t]+(?:[A-Za-z0-9._~+/-]+=*|\*\*\*)/i;
/** A Basic or Bearer credential anywhere in text. */
const SCHEME_TOKEN = /(?<![A-Za-z0-9_])(Basic|Bearer)([ \t]+)([A-Za-z0-9._~+/-]{4,}=*)/gi;

function maskHeaders(text: string): string {
  if (!/authorization|cookie/i.test(text)) return text;
  let out = '';
  let from = 0;
  HEADER.lastIndex = 0;
  for (let m = HEADER.exec(text); m; m = HEADER.exec(text)) {
    const valueStart = m.index + m[0].length;
    const open = m[4] ?? '';
    let valueEnd: number;
    let resumeAt: number;
    if (open) {
      const close = closingQuote(text, valueStart, open);
      valueEnd = close ?? lineEnd(text, valueStart);
      resumeAt = close === undefined ? valueEnd : valueEnd + open.length;
    } else {
      const rest = text.slice(valueStart);
      const token = TOKEN_VALUE.exec(rest);
      const end = UNQUOTED_END.exec(rest);
      valueEnd = valueStart + (token ? token[0].length : end ? end.index : rest.length);
      resumeAt = valueEnd;
    }
    HEADER.lastIndex = Math.max(resumeAt, valueStart + 1);
    const value = text.slice(valueStart, valueEnd);
    const scheme = SCHEME.exec(value)?.[0] ?? '';
    const secret = value.slice(scheme.length);
    if (secret.trim() === '' || secret === MASK) continue;
    out += text.slice(from, valueStart) + scheme + MASK;
    from = valueEnd;
  }
  return from === 0 ? text : out + text.slice(from);
}

/**
 * The end of a quoted value: the next quote of the same kind preceded by a backslash run that
 * makes it the closing one. A value JSON-escaped d times opens with 2^d - 1 backslashes; within
 * it, every escaped backslash adds 2^(d+1) more, and a quote of its own content adds 2^d. No
 * closing quote on the line: the value runs to the line's end.
 */
function closingQuote(text: string, start: number, open: string): number | undefined {
  const quote = open.at(-1)!;
  const k = open.length - 1;
  const json = (k & (k + 1)) === 0;
  const stop = lineEnd(text, start);
  for (let i = text.indexOf(quote, start); i >= 0 && i < stop; i = text.indexOf(quote, i + 1)) {
    let run = 0;
    while (i - run - 1 >= start && text[i - run - 1] === '\\') run++;
    if (json ? run % (2 * (k + 1)) === k : run === k) return i - k;
  }
  return undefined;
}

function lineEnd(text: string, from: number): number {
  const nl = text.slice(from).search(/[\r\n]/);
  return nl < 0 ? text.length : from + nl;
}

function maskSchemeTokens(text: string): string {
  if (!/basic|bearer/i.test(text)) return text;
  return text.replace(SCHEME_TOKEN, (all, scheme: string, space: string, token: string) =>
    looksLikeCredential(scheme, token) ? `${scheme}${space}${MASK}` : all,
  );
}

/** Prose ("Basic authentication", "bearer tokens") is left alone: only a token that can be a credential is masked. */
function looksLikeCredential(scheme: string, token: string): boolean {
  if (scheme.toLowerCase() === 'basic') {
    const decoded = Buffer.from(token, 'base64').toString('utf8');
    return (decoded.includes(':') && /^[\x20-\x7e]+$/.test(decoded)) || /[^A-Za-z]/.test(token);
  }
  return token.length >= 8 && /[^A-Za-z]/.test(token);
}

/** Masks every registered secret (in every form) and every credential-shaped header value or token. */
export function scrub(text: string): string {
  const registered = registeredPattern();
  let out = registered ? text.replace(registered, MASK) : text;
  out = maskHeaders(out);
  out = maskSchemeTokens(out);
  return out;
}

/**
 * `scrub()` for a serialized JSON log line (pino's output, before a pretty printer reads it). The
 * line is masked as written, where a secret with `"` or `\` shows escaped; a mask that broke the
 * JSON (a secret ending inside an escape sequence) is redone on the decoded values instead, so the
 * line stays readable to whatever parses it next.
 */
export function scrubLogLine(line: string): string {
  const out = scrub(line);
  if (out === line) return line;
  const trimmed = line.trimEnd();
  if (!trimmed.startsWith('{')) return out;
  try {
    JSON.parse(out);
    return out;
  } catch {
    // masked in the middle of an escape sequence: redo it on the decoded values
  }
  try {
    return JSON.stringify(scrubValue(JSON.parse(trimmed))) + line.slice(trimmed.length);
  } catch {
    return out;
  }
}

function scrubValue(v: unknown): unknown {
  if (typeof v === 'string') return scrub(v);
  if (Array.isArray(v)) return v.map(scrubValue);
  if (v !== null && typeof v === 'object') {
    return Object.fromEntries(Object.entries(v as Record<string, unknown>).map(([k, x]) => [scrub(k), scrubValue(x)]));
  }
  return v;
}

const ALREADY_CUT = /… \(\d+ more characters\)$/;
/** How much of a vendor text is scrubbed and measured exactly (far more than is ever shown). */
const SCRUB_WINDOW = 16 * 1024;

/**
 * Text a vendor or a proxy wrote (an HTTP body, a WebSocket close reason, a 409 text), as it may be
 * quoted in an error or a log line: scrubbed, on one line, and at most `max` characters followed by
 * "… (N more characters)". Applying it twice changes nothing.
 */
export function vendorText(text: string, max = MAX_VENDOR_TEXT): string {
  // Only the head can be shown: a big body (an HTML page answering 200) is scrubbed no further.
  const window = Math.max(SCRUB_WINDOW, 4 * max);
  const head = text.length > window ? text.slice(0, window) : text;
  const one = scrub(head).replace(/\s+/g, ' ').trimStart();
  const shown = head === text ? one.trimEnd() : one;
  const total = shown.length + (head === text ? 0 : text.slice(window).replace(/\s+/g, ' ').trimEnd().length);
  if (total <= max) return shown;
  const cut = ALREADY_CUT.exec(shown);
  if (head === text && cut && cut.index <= max) return shown;
  // Never split a surrogate pair.
  const end = /[\uD800-\uDBFF]/.test(shown[max - 1]!) ? max - 1 : max;
  return `${shown.slice(0, end)}… (${total - end} more characters)`;
}

export function mask(value: string | undefined): string | undefined {
  return value === undefined ? undefined : MASK;
}

/** For tests only. */
export function clearSecrets(): void {
  forms.clear();
  formsPattern = undefined;
}
