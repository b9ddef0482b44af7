/**
 * Every key path the schema accepts, for the documentation check (docs/configuration.md must list
 * each one, and nothing else). Objects whose values share one schema (the services of an input)
 * are written with `<service>` in place of the name.
 */
import { configSchema } from './schema.ts';

type Def = {
  type?: string;
  innerType?: unknown;
  in?: unknown;
  shape?: Record<string, unknown>;
  options?: unknown[];
  element?: unknown;
  defaultValue?: unknown;
};

export interface KeyInfo {
  path: string;
  /** The default the schema declares (undefined: none). */
  default?: unknown;
}

function def(node: unknown): Def | undefined {
  return (node as { _zod?: { def?: Def } } | undefined)?._zod?.def;
}

/** The schema inside optional/default/nullable/pipe wrappers. */
export function unwrap(node: unknown): unknown {
  for (let i = 0; i < 10; i++) {
    const d = def(node);
    if (!d) return node;
    if (d.innerType) node = d.innerType;
    else if (d.type === 'pipe' && d.in) node = d.in;
    else return node;
  }
  return node;
}

/** The keys of an object schema, or undefined for any other schema. */
export function shapeOf(node: unknown): Record<string, unknown> | undefined {
  const d = def(node);
  if (d?.type !== 'object') return undefined;
  return d.shape;
}

/** The options of a union schema, or undefined for any other schema. */
export function optionsOf(node: unknown): unknown[] | undefined {
  const d = def(node);
  return d?.type === 'union' ? d.options : undefined;
}

/** The declared default of a key's schema, looking through optional/pipe wrappers. */
function defaultOf(node: unknown): unknown {
  for (let i = 0; i < 10 && node; i++) {
    const d = def(node);
    if (!d) return undefined;
    if (d.type === 'default' || d.type === 'prefault') {
      const v = d.defaultValue;
      return typeof v === 'function' ? (v as () => unknown)() : v;
    }
    if (d.innerType) node = d.innerType;
    else if (d.type === 'pipe' && d.in) node = d.in;
    else return undefined;
  }
  return undefined;
}

export function schemaKeys(): KeyInfo[] {
  const out = new Map<string, KeyInfo>();
  const add = (at: string[], node: unknown) => {
    const path = at.join('.');
    const prev = out.get(path);
    const d = defaultOf(node);
    out.set(path, { path, default: prev?.default ?? (d !== undefined && typeof d !== 'object' ? d : undefined) });
  };
  const walk = (node: unknown, at: string[]): void => {
    const n = unwrap(node);
    const options = optionsOf(n);
    if (options) {
      for (const o of options) walk(o, at);
      return;
    }
    const shape = shapeOf(n);
    if (!shape) return;
    const values = Object.values(shape).map(unwrap);
    const shared = values.length > 1 && values.every((v) => v === values[0]) && shapeOf(values[0]);
    if (shared) {
      const name = at[at.length - 1] === 'services' ? '<service>' : '<name>';
      add([...at, name], Object.values(shape)[0]);
      walk(values[0], [...at, name]);
      return;
    }
    for (const [k, v] of Object.entries(shape)) {
      add([...at, k], v);
      walk(v, [...at, k]);
    }
  };
  walk(configSchema(), []);
  return [...out.values()].sort((a, b) => a.path.localeCompare(b.path));
}
