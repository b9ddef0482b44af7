/**
 * Every credential the config loader reads is registered here, and every log line and every
 * error message printed by the CLI passes through `scrub()`, so a secret that slips into a
 * message (an URL, a server's echo, a stack) is masked before it leaves the process.
 */
const secrets = new Set<string>();

/** Shorter values are too likely to match ordinary text to be masked usefully. */
const MIN_SECRET_LENGTH = 4;

export function registerSecret(value: string | undefined | null): void {
  if (typeof value === 'string' && value.length >= MIN_SECRET_LENGTH) {
    secrets.add(value);
    // The same secret may appear URL- or base64-encoded (Basic auth, query strings).
    secrets.add(encodeURIComponent(value));
  }
}

export function scrub(text: string): string {
  if (secrets.size === 0) return text;
  let out = text;
  for (const s of secrets) {
    if (out.includes(s)) out = out.split(s).join('***');
  }
  return out;
}

export function mask(value: string | undefined): string | undefined {
  return value === undefined ? undefined : '***';
}

/** For tests only. */
export function clearSecrets(): void {
  secrets.clear();
}
