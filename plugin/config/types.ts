/** Reusable schema pieces for config sections (config/schema.ts and each source's config.ts). */
import { z } from 'zod';
import { parseTimestamp } from '../util/time.ts';

/**
 * An RFC 3339 / ISO 8601 timestamp with `Z` or a numeric offset (`-0500` or `-05:00`). Kept as
 * written (the state stores it to detect changes); `parseTimestamp` turns it into a time.
 */
export const isoTimestamp = z.string().refine((s) => parseTimestamp(s) !== undefined, {
  message:
    'must be an RFC 3339 / ISO 8601 timestamp with a zone, e.g. "2026-11-20T00:00:00Z", "2026-11-20T00:00:00-05:00" or "2026-11-20T00:00:00-0500"',
});

/** A date and time without a zone, read as UTC by the start-time keys (their Devo names say UTC). */
const ZONELESS = /^\d{4}-\d{2}-\d{2}[Tt ]\d{2}:\d{2}:\d{2}(?:[.,]\d{1,9})?$/;

/**
 * A service's start time, as the Devo collectors take it: an RFC 3339 / ISO 8601 timestamp (a
 * zone-less one is UTC and gets a `Z`), or empty / null for "from now". Empty and null become
 * `null`; omitted stays `undefined` (each input decides what omitted means).
 */
export const startTimestamp = z
  .unknown()
  .transform((v, ctx): string | null | undefined => {
    if (v === undefined) return undefined;
    if (v === null || (typeof v === 'string' && v.trim() === '')) return null;
    const text = typeof v === 'string' ? v.trim() : undefined;
    const normalized = text !== undefined && ZONELESS.test(text) ? `${text}Z` : text;
    if (normalized === undefined || parseTimestamp(normalized) === undefined) {
      ctx.addIssue({
        code: 'custom',
        message:
          'must be an RFC 3339 / ISO 8601 timestamp, e.g. "2026-11-20T00:00:00Z", "2026-11-20T00:00:00.000Z", "2026-11-20T00:00:00-05:00" or "2026-11-20T00:00:00" (UTC); empty or null for now',
      });
      return z.NEVER;
    }
    return normalized;
  })
  .optional();

/** Ids are strings, but YAML turns `id: 100001` into a number: accept both. */
export const inputId = z
  .union([z.string(), z.number().int()])
  .transform((v) => String(v))
  .pipe(z.string().regex(/^[A-Za-z0-9_.-]{1,64}$/, 'must be 1 to 64 letters, digits, "_", "." or "-"'));

export const positiveInt = z.number().int().positive();

/** A duration in seconds; fractions allowed (`0.5`). Every duration key is named `<what>_secs`. */
export const positiveSecs = z.number().positive();

/**
 * A key that was renamed: the loader still accepts the old name (`at` is the section's path, `*`
 * any name), moves its value to the new one divided by `divideBy` (ms to s: 1000), and `check`
 * and `run` warn with both names. Both names at once is a config error naming both.
 */
export interface RenamedKey {
  at: readonly string[];
  from: string;
  to: string;
  divideBy: number;
}

/** A secret given inline (after ${VAR} substitution) or read from `<key>_file` by the loader. */
export const secret = z.string().min(1, 'must not be empty');

/** `override_tag_base`: a Fluent tag, also used as the Devo table. */
export const fluentTag = z
  .string()
  .regex(/^[A-Za-z0-9_.-]+$/, 'must be a Fluent tag: letters, digits, "_", "." and "-", e.g. "mail.proofpoint.pod.maillog"');

/**
 * Moves the services' `override_url_base` (where the Devo collectors put it) to the input, where
 * the sources read it. Every service and the input must agree: an input talks to one API.
 */
export function serviceUrlBase<
  T extends { override_url_base?: string | undefined; services: Record<string, { override_url_base?: string | undefined } | undefined> },
>(cfg: T, ctx: z.RefinementCtx): T {
  const named = new Map<string, string[]>();
  const note = (url: string, where: string) => {
    const key = url.replace(/\/+$/, '');
    named.set(key, [...(named.get(key) ?? []), where]);
  };
  if (cfg.override_url_base !== undefined) note(cfg.override_url_base, 'override_url_base');
  for (const [name, svc] of Object.entries(cfg.services)) {
    if (svc?.override_url_base !== undefined) note(svc.override_url_base, `services.${name}.override_url_base`);
  }
  if (named.size > 1) {
    ctx.addIssue({
      code: 'custom',
      path: ['override_url_base'],
      message: `must be one URL for the whole input (one API serves every service); got ${[...named]
        .map(([url, where]) => `${url} in ${where.join(', ')}`)
        .join('; ')}`,
    });
    return z.NEVER;
  }
  const services = Object.fromEntries(
    Object.entries(cfg.services).map(([name, svc]) => {
      if (svc === undefined) return [name, svc];
      const { override_url_base: _moved, ...rest } = svc;
      return [name, rest];
    }),
  );
  const url = cfg.override_url_base ?? [...named.keys()][0];
  return { ...cfg, ...(url !== undefined ? { override_url_base: url } : {}), services } as T;
}
