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

/** Ids are strings, but YAML turns `id: 100001` into a number: accept both. */
export const inputId = z
  .union([z.string(), z.number().int()])
  .transform((v) => String(v))
  .pipe(z.string().regex(/^[A-Za-z0-9_.-]{1,64}$/, 'must be 1 to 64 letters, digits, "_", "." or "-"'));

export const positiveInt = z.number().int().positive();

/** A secret given inline (after ${VAR} substitution) or read from `<key>_file` by the loader. */
export const secret = z.string().min(1, 'must not be empty');

/** `override_tag_base`: a Fluent tag, also used as the Devo table. */
export const fluentTag = z
  .string()
  .regex(/^[A-Za-z0-9_.-]+$/, 'must be a Fluent tag: letters, digits, "_", "." and "-", e.g. "mail.proofpoint.pod.maillog"');
