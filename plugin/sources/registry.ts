/**
 * The vendor inputs this sidecar knows, one descriptor each (sources/descriptor.ts). Config
 * loading, `check`, coordination, telemetry and `state show` iterate this list; adding a vendor
 * is its own folder and one line here. An input's code is loaded only when it is enabled (and,
 * with coordination, only when its feed is acquired: coordination/feeds.ts).
 */
import type { z } from 'zod';
import type { AnySourceDescriptor, InputConfigBase, SourceDescriptor } from './descriptor.ts';
import type { Source } from './source.ts';
import { tapSource } from './tap/index.ts';
import { podSource } from './pod/index.ts';

const BUILT_IN = [tapSource, podSource] as const;

const descriptors: AnySourceDescriptor[] = [...BUILT_IN];
let generation = 0;

/** The `inputs` section of the built-in inputs, typed: `{ proofpoint_tap?: TapInputConfig, ... }`. */
export type BuiltInInputs = {
  [D in (typeof BUILT_IN)[number] as D['type']]?: D extends SourceDescriptor<infer C, string> ? C : never;
};

/** Every input type known, in registration order. */
export function sourceDescriptors(): readonly AnySourceDescriptor[] {
  return descriptors;
}

export function descriptorOf(type: string): AnySourceDescriptor | undefined {
  return descriptors.find((d) => d.type === type);
}

/** Changes whenever the list does, so what is built from it (the config schema) can be rebuilt. */
export function registryGeneration(): number {
  return generation;
}

/**
 * Adds an input type (tests add their own); returns the function that removes it again. A type
 * already known is an error: two descriptors would compete for one `inputs` key.
 */
export function registerSource(d: AnySourceDescriptor): () => void {
  if (descriptorOf(d.type)) throw new Error(`input type ${d.type} is already registered`);
  descriptors.push(d);
  generation++;
  return () => {
    const i = descriptors.indexOf(d);
    if (i >= 0) descriptors.splice(i, 1);
    generation++;
  };
}

/** The shape of `inputs`: one optional section per known type. */
export function inputsShape(): Record<string, z.ZodOptional<z.ZodType>> {
  return Object.fromEntries(descriptors.map((d) => [d.type, (d.schema as z.ZodType).optional()]));
}

/** The enabled inputs of a config's `inputs` section, each with its descriptor. */
export function enabledInputs(inputs: Readonly<Record<string, unknown>>): Array<{ descriptor: AnySourceDescriptor; cfg: InputConfigBase }> {
  const out: Array<{ descriptor: AnySourceDescriptor; cfg: InputConfigBase }> = [];
  for (const descriptor of descriptors) {
    const cfg = inputs[descriptor.type] as InputConfigBase | undefined;
    if (cfg?.enabled) out.push({ descriptor, cfg });
  }
  return out;
}

/** The configured inputs (enabled or not), each with its descriptor. */
export function configuredInputs(inputs: Readonly<Record<string, unknown>>): Array<{ descriptor: AnySourceDescriptor; cfg: InputConfigBase }> {
  return descriptors.flatMap((descriptor) => {
    const cfg = inputs[descriptor.type] as InputConfigBase | undefined;
    return cfg ? [{ descriptor, cfg }] : [];
  });
}

/** Builds the enabled sources from the configuration's `inputs`; one per input type. */
export async function createSources(config: { inputs: Readonly<Record<string, unknown>> }): Promise<Source[]> {
  const sources: Source[] = [];
  for (const { descriptor, cfg } of enabledInputs(config.inputs)) sources.push(await descriptor.create(cfg));
  return sources;
}

/** Warnings about enabled inputs that `check` prints (e.g. a cadence the rate budget cannot fit). */
export async function checkSources(config: { inputs: Readonly<Record<string, unknown>> }, now: number = Date.now()): Promise<string[]> {
  const out: string[] = [];
  for (const { descriptor, cfg } of enabledInputs(config.inputs)) {
    out.push(...(await descriptor.check(cfg, now)).map((w) => `inputs.${descriptor.type}: ${w}`));
  }
  return out;
}
