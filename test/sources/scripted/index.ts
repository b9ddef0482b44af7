/**
 * A third input type that exists only in tests: `scripted_lines` yields the lines its config
 * lists, one event each. It is what a new vendor writes: a descriptor (this file) and a source
 * (source.ts), nothing outside its folder; a test registers it (registerSource) where the
 * sidecar's own vendors are one line of plugin/sources/registry.ts.
 */
import { z } from 'zod';
import { inputId } from '../../../plugin/config/types.ts';
import type { SourceDescriptor } from '../../../plugin/sources/descriptor.ts';

export const SCRIPTED_TYPE = 'scripted_lines';

export const scriptedInputSchema = z.strictObject({
  id: inputId,
  enabled: z.boolean().default(true),
  services: z.strictObject({
    lines: z.strictObject({
      /** The events, one per line. */
      lines: z.array(z.string().min(1)).min(1),
      /** Event time of the first line (ms); each further line is one second later. */
      first_at_ms: z.number().int().nonnegative().default(Date.UTC(2026, 10, 23, 12)),
    }),
  }),
});

export type ScriptedInputConfig = z.infer<typeof scriptedInputSchema>;

/** The cursor: how many lines were committed, and the event time of the last of them. */
export interface ScriptedCursor {
  count: number;
  last_at_ms: number;
}

function lastAt(cursor: unknown): number | undefined {
  const v = cursor !== null && typeof cursor === 'object' ? (cursor as Record<string, unknown>)['last_at_ms'] : undefined;
  return typeof v === 'number' ? v : undefined;
}

export const scriptedSource: SourceDescriptor<ScriptedInputConfig, typeof SCRIPTED_TYPE> = {
  type: SCRIPTED_TYPE,
  schema: scriptedInputSchema,
  requiredKeys: 'id, services.lines.lines',
  services: () => ['lines'],
  create: async (cfg) => new (await import('./source.ts')).ScriptedLinesSource(cfg),
  check: async (cfg) => (cfg.services.lines.lines.length > 3 ? [] : [`services.lines.lines has only ${cfg.services.lines.lines.length} lines`]),
  probe: async () => [{ service: 'lines', ok: true, text: 'nothing to reach: the lines are in the config' }],
  feeds: (cfg) => [
    {
      name: 'lines',
      services: [{ name: 'lines', dedupMaxAgeMs: 3_600_000 }],
      requestPools: [],
      requestWindowMs: 0,
      create: async () => new (await import('./source.ts')).ScriptedLinesSource(cfg),
    },
  ],
  compareCursors: (a, b) => Math.sign(((a as ScriptedCursor | undefined)?.count ?? 0) - ((b as ScriptedCursor | undefined)?.count ?? 0)),
  cursorTime: lastAt,
  metrics: {
    scripted_lines_total: { type: 'counter', help: 'Lines the scripted input yielded', labels: ['service'] },
  },
  state: {
    msKeys: ['last_at_ms'],
    position: (cursor, now) => {
      const at = lastAt(cursor);
      return at === undefined ? undefined : { positionMs: at, targetMs: now, active: false };
    },
  },
};
