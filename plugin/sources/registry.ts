/** Builds the enabled sources from the configuration; one entry per input type. */
import type { Config } from '../config/schema.ts';
import type { Source } from './source.ts';
import { createTapSource, checkTapConfig } from './tap/index.ts';
import { createPodSource, checkPodConfig } from './pod/index.ts';

export function createSources(config: Config): Source[] {
  const sources: Source[] = [];
  const { proofpoint_tap: tap, proofpoint_on_demand: pod } = config.inputs;
  if (tap?.enabled) sources.push(createTapSource(tap) as Source);
  if (pod?.enabled) sources.push(createPodSource(pod) as Source);
  return sources;
}

/** Warnings about enabled inputs that `check` prints (e.g. a cadence the rate budget cannot fit). */
export function checkSources(config: Config): string[] {
  const out: string[] = [];
  const { proofpoint_tap: tap, proofpoint_on_demand: pod } = config.inputs;
  if (tap?.enabled) out.push(...checkTapConfig(tap).map((w) => `inputs.proofpoint_tap: ${w}`));
  if (pod?.enabled) out.push(...checkPodConfig(pod).map((w) => `inputs.proofpoint_on_demand: ${w}`));
  return out;
}
