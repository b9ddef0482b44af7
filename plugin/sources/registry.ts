/**
 * Builds the enabled sources from the configuration; one entry per input type. An input's code is
 * loaded only when it is enabled (and, with coordination, only when its feed is acquired:
 * coordination/feeds.ts).
 */
import type { Config } from '../config/schema.ts';
import type { Source } from './source.ts';

export async function createSources(config: Config): Promise<Source[]> {
  const sources: Source[] = [];
  const { proofpoint_tap: tap, proofpoint_on_demand: pod } = config.inputs;
  if (tap?.enabled) sources.push((await import('./tap/index.ts')).createTapSource(tap) as Source);
  if (pod?.enabled) sources.push((await import('./pod/index.ts')).createPodSource(pod) as Source);
  return sources;
}

/** Warnings about enabled inputs that `check` prints (e.g. a cadence the rate budget cannot fit). */
export async function checkSources(config: Config): Promise<string[]> {
  const out: string[] = [];
  const { proofpoint_tap: tap, proofpoint_on_demand: pod } = config.inputs;
  if (tap?.enabled) out.push(...(await import('./tap/index.ts')).checkTapConfig(tap).map((w) => `inputs.proofpoint_tap: ${w}`));
  if (pod?.enabled) out.push(...(await import('./pod/index.ts')).checkPodConfig(pod).map((w) => `inputs.proofpoint_on_demand: ${w}`));
  return out;
}
