/**
 * Reads Fluent Bit configurations the way Fluent Bit does, closely enough to check the facts the
 * project ships in fluent-bit/ (no Fluent Bit binary needed):
 *
 * - the classic format (https://docs.fluentbit.io/manual/administration/configuring-fluent-bit/classic-mode/configuration-file):
 *   `[SECTION]` headers, indented `Key value` lines (the key is the first word, the value the rest
 *   of the line), full-line `#` comments, `@INCLUDE file` (relative to the including file) and
 *   `@SET KEY=VALUE` at the top level. Keys are case-insensitive. Entries of one section must share
 *   one indentation, and an entry outside a section is an error, as in Fluent Bit.
 * - the YAML format (…/yaml/*): `service`, `pipeline.{inputs,filters,outputs}`, `parsers`,
 *   `includes` (relative to the including file), `env`.
 *
 * Both become one normalised model (lower-case keys, values as strings, on/true/yes and
 * off/false/no as `on`/`off`, a repeated key's values joined by a newline), with includes and
 * parser files resolved, so a classic file and its YAML twin can be compared as a whole.
 */
import { readFileSync } from 'node:fs';
import path from 'node:path';
import { parseDocument } from 'yaml';

export const CLASSIC_SECTIONS = ['SERVICE', 'INPUT', 'FILTER', 'OUTPUT', 'PARSER', 'MULTILINE_PARSER', 'PLUGINS', 'UPSTREAM', 'NODE'] as const;
export type ClassicSectionName = (typeof CLASSIC_SECTIONS)[number];

export interface ConfEntry {
  /** As written (Fluent Bit compares keys case-insensitively). */
  key: string;
  value: string;
  file: string;
  line: number;
}

export interface ConfSection {
  name: ClassicSectionName;
  entries: ConfEntry[];
  file: string;
  line: number;
}

export interface ClassicConf {
  file: string;
  sections: ConfSection[];
  /** `@INCLUDE` targets as written, in order. */
  includes: string[];
  /** `@SET` variables. */
  variables: Record<string, string>;
}

export class ConfSyntaxError extends Error {
  constructor(
    readonly file: string,
    readonly line: number,
    message: string,
  ) {
    super(`${file}:${line}: ${message}`);
    this.name = 'ConfSyntaxError';
  }
}

/** Parses one classic-format text; `@INCLUDE`s are listed, not followed. */
export function parseClassic(text: string, file = '<text>'): ClassicConf {
  const out: ClassicConf = { file, sections: [], includes: [], variables: {} };
  let section: ConfSection | undefined;
  let indent: string | undefined;
  const lines = text.split(/\r?\n/);
  lines.forEach((raw, i) => {
    const line = i + 1;
    const trimmed = raw.trim();
    if (trimmed === '' || trimmed.startsWith('#')) return;
    const lead = /^[ \t]*/.exec(raw)![0];
    if (trimmed.startsWith('[')) {
      const m = /^\[([A-Za-z_]+)\]$/.exec(trimmed);
      if (!m) throw new ConfSyntaxError(file, line, `malformed section header "${trimmed}"`);
      if (lead !== '') throw new ConfSyntaxError(file, line, 'a section header must start at column 1');
      const name = m[1]!.toUpperCase();
      if (!(CLASSIC_SECTIONS as readonly string[]).includes(name)) {
        throw new ConfSyntaxError(file, line, `unknown section [${m[1]}]; expected one of ${CLASSIC_SECTIONS.join(', ')}`);
      }
      section = { name: name as ClassicSectionName, entries: [], file, line };
      out.sections.push(section);
      indent = undefined;
      return;
    }
    if (trimmed.startsWith('@')) {
      if (lead !== '') throw new ConfSyntaxError(file, line, `${trimmed.split(/\s/)[0]} must start at column 1`);
      const m = /^@(\w+)\s+(.*)$/.exec(trimmed);
      const cmd = m?.[1]?.toUpperCase();
      if (cmd === 'INCLUDE') {
        out.includes.push(m![2]!.trim());
      } else if (cmd === 'SET') {
        const kv = /^([A-Za-z_][A-Za-z0-9_]*)=(.*)$/.exec(m![2]!.trim());
        if (!kv) throw new ConfSyntaxError(file, line, `@SET takes KEY=VALUE, got "${m![2]}"`);
        out.variables[kv[1]!] = kv[2]!;
      } else {
        throw new ConfSyntaxError(file, line, `unknown command "${trimmed}"; classic files know @INCLUDE and @SET`);
      }
      // A command ends the current section (Fluent Bit reads it at the top level).
      section = undefined;
      return;
    }
    if (!section) throw new ConfSyntaxError(file, line, `"${trimmed}" is outside any section`);
    if (lead === '') throw new ConfSyntaxError(file, line, `entries of [${section.name}] must be indented`);
    if (indent === undefined) indent = lead;
    else if (lead !== indent) throw new ConfSyntaxError(file, line, `inconsistent indentation in [${section.name}] (${JSON.stringify(lead)} after ${JSON.stringify(indent)})`);
    const kv = /^(\S+)\s+(.*\S)\s*$/.exec(trimmed);
    if (!kv) throw new ConfSyntaxError(file, line, `key "${trimmed}" has no value`);
    section.entries.push({ key: kv[1]!, value: kv[2]!, file, line });
  });
  return out;
}

/** Reads a classic file and, recursively, what it `@INCLUDE`s (relative to the including file). */
export function loadClassic(file: string, seen: Set<string> = new Set()): ClassicConf {
  const abs = path.resolve(file);
  if (seen.has(abs)) throw new Error(`${abs}: @INCLUDE cycle`);
  seen.add(abs);
  const own = parseClassic(readFileSync(abs, 'utf8'), abs);
  const merged: ClassicConf = { file: abs, sections: [...own.sections], includes: own.includes, variables: { ...own.variables } };
  for (const inc of own.includes) {
    const child = loadClassic(path.resolve(path.dirname(abs), inc), seen);
    merged.sections.push(...child.sections);
    Object.assign(merged.variables, child.variables);
  }
  return merged;
}

/** One plugin instance or section: lower-case keys, normalised string values. */
export type Props = Record<string, string>;

export interface FluentBitModel {
  /** Every file read (the main one first). */
  files: string[];
  service: Props;
  inputs: Props[];
  filters: Props[];
  outputs: Props[];
  parsers: Props[];
  /** `@SET` (classic) or `env:` (YAML) variables. */
  variables: Record<string, string>;
}

const TRUE_WORDS = new Set(['on', 'true', 'yes']);
const FALSE_WORDS = new Set(['off', 'false', 'no']);

export function normaliseValue(v: unknown): string {
  if (typeof v === 'boolean') return v ? 'on' : 'off';
  const s = String(v).trim();
  const lower = s.toLowerCase();
  if (TRUE_WORDS.has(lower)) return 'on';
  if (FALSE_WORDS.has(lower)) return 'off';
  return s;
}

function addProp(props: Props, key: string, value: unknown): void {
  const k = key.toLowerCase();
  const values = Array.isArray(value) ? value.map(normaliseValue) : [normaliseValue(value)];
  props[k] = props[k] === undefined ? values.join('\n') : [props[k], ...values].join('\n');
}

function sectionProps(s: ConfSection): Props {
  const p: Props = {};
  for (const e of s.entries) addProp(p, e.key, e.value);
  return p;
}

/**
 * The model of a classic main file: includes followed, and the service's `Parsers_File`
 * (relative to the main file's folder) read into `parsers`.
 */
export function classicModel(file: string): FluentBitModel {
  const conf = loadClassic(file);
  const files = [conf.file];
  collectIncludes(conf.file, files);
  const model: FluentBitModel = { files, service: {}, inputs: [], filters: [], outputs: [], parsers: [], variables: conf.variables };
  for (const s of conf.sections) {
    const p = sectionProps(s);
    if (s.name === 'SERVICE') Object.assign(model.service, p);
    else if (s.name === 'INPUT') model.inputs.push(p);
    else if (s.name === 'FILTER') model.filters.push(p);
    else if (s.name === 'OUTPUT') model.outputs.push(p);
    else if (s.name === 'PARSER') model.parsers.push(p);
  }
  const parsersFile = model.service.parsers_file;
  if (parsersFile !== undefined) {
    for (const f of parsersFile.split('\n')) {
      const abs = path.resolve(path.dirname(conf.file), f);
      model.files.push(abs);
      const pconf = loadClassic(abs);
      for (const s of pconf.sections) {
        if (s.name !== 'PARSER' && s.name !== 'MULTILINE_PARSER') {
          throw new ConfSyntaxError(abs, s.line, `a parsers file holds [PARSER] sections, not [${s.name}]`);
        }
        if (s.name === 'PARSER') model.parsers.push(sectionProps(s));
      }
    }
  }
  return model;
}

function collectIncludes(file: string, files: string[]): void {
  for (const inc of parseClassic(readFileSync(file, 'utf8'), file).includes) {
    const abs = path.resolve(path.dirname(file), inc);
    files.push(abs);
    collectIncludes(abs, files);
  }
}

/** Top-level sections of a YAML configuration file (Fluent Bit v3.2+). */
export const YAML_SECTIONS = ['env', 'includes', 'service', 'pipeline', 'parsers', 'multiline_parsers', 'plugins', 'upstream_servers', 'customs'] as const;

/** Parses one YAML configuration text strictly (duplicate keys and unknown sections are errors). */
export function parseYamlConf(text: string, file = '<text>'): Record<string, unknown> {
  const doc = parseDocument(text, { uniqueKeys: true, prettyErrors: true });
  if (doc.errors.length > 0) throw new Error(`${file}: ${doc.errors.map((e) => e.message).join('; ')}`);
  const js: unknown = doc.toJS() ?? {};
  if (typeof js !== 'object' || js === null || Array.isArray(js)) throw new Error(`${file}: the document must be a mapping`);
  for (const k of Object.keys(js)) {
    if (!(YAML_SECTIONS as readonly string[]).includes(k)) throw new Error(`${file}: unknown top-level section "${k}"`);
  }
  return js as Record<string, unknown>;
}

function asPropsList(v: unknown, where: string): Props[] {
  if (v === undefined || v === null) return [];
  if (!Array.isArray(v)) throw new Error(`${where} must be a list`);
  return v.map((item, i) => {
    if (typeof item !== 'object' || item === null || Array.isArray(item)) throw new Error(`${where}[${i}] must be a mapping`);
    const p: Props = {};
    for (const [k, val] of Object.entries(item as Record<string, unknown>)) {
      if (typeof val === 'object' && val !== null && !Array.isArray(val)) throw new Error(`${where}[${i}].${k}: nested mappings are not plugin properties`);
      addProp(p, k, val);
    }
    return p;
  });
}

/** The model of a YAML main file, includes followed (relative to the including file). */
export function yamlModel(file: string, seen: Set<string> = new Set()): FluentBitModel {
  const abs = path.resolve(file);
  if (seen.has(abs)) throw new Error(`${abs}: includes cycle`);
  seen.add(abs);
  const doc = parseYamlConf(readFileSync(abs, 'utf8'), abs);
  const model: FluentBitModel = { files: [abs], service: {}, inputs: [], filters: [], outputs: [], parsers: [], variables: {} };
  const service = doc.service as Record<string, unknown> | undefined;
  if (service) for (const [k, v] of Object.entries(service)) addProp(model.service, k, v);
  const env = doc.env as Record<string, unknown> | undefined;
  if (env) for (const [k, v] of Object.entries(env)) model.variables[k] = String(v);
  const pipeline = (doc.pipeline ?? {}) as Record<string, unknown>;
  for (const k of Object.keys(pipeline)) {
    if (!['inputs', 'filters', 'outputs'].includes(k)) throw new Error(`${abs}: unknown pipeline section "${k}"`);
  }
  model.inputs.push(...asPropsList(pipeline.inputs, `${abs}: pipeline.inputs`));
  model.filters.push(...asPropsList(pipeline.filters, `${abs}: pipeline.filters`));
  model.outputs.push(...asPropsList(pipeline.outputs, `${abs}: pipeline.outputs`));
  model.parsers.push(...asPropsList(doc.parsers, `${abs}: parsers`));
  const includes = doc.includes;
  if (includes !== undefined) {
    if (!Array.isArray(includes)) throw new Error(`${abs}: includes must be a list`);
    for (const inc of includes) {
      if (typeof inc !== 'string') throw new Error(`${abs}: includes holds file names`);
      if (inc.includes('${')) throw new Error(`${abs}: includes take no environment variables ("${inc}")`);
      const child = yamlModel(path.resolve(path.dirname(abs), inc), seen);
      model.files.push(...child.files);
      Object.assign(model.service, child.service);
      model.inputs.push(...child.inputs);
      model.filters.push(...child.filters);
      model.outputs.push(...child.outputs);
      model.parsers.push(...child.parsers);
      Object.assign(model.variables, child.variables);
    }
  }
  return model;
}

/** Reads either format by extension. */
export function loadModel(file: string): FluentBitModel {
  return /\.ya?ml$/i.test(file) ? yamlModel(file) : classicModel(file);
}

const VAR = /\$\{([A-Za-z_][A-Za-z0-9_]*)\}/g;

/** Every `${NAME}` a text refers to. */
export function variablesIn(text: string): string[] {
  return [...new Set([...text.matchAll(VAR)].map((m) => m[1]!))].sort();
}

/** Every `${NAME}` the model's values refer to that the model itself does not define. */
export function modelVariables(m: FluentBitModel): string[] {
  const all = [m.service, ...m.inputs, ...m.filters, ...m.outputs, ...m.parsers].flatMap((p) => Object.values(p).flatMap(variablesIn));
  return [...new Set(all)].filter((v) => !(v in m.variables) && v !== 'HOSTNAME').sort();
}

/** Replaces `${NAME}` as Fluent Bit would; names missing from `env` are returned, not replaced. */
export function expand(value: string, env: Record<string, string | undefined>): { value: string; missing: string[] } {
  const missing: string[] = [];
  const out = value.replace(VAR, (ref, name: string) => {
    const v = env[name];
    if (v === undefined) {
      missing.push(name);
      return ref;
    }
    return v;
  });
  return { value: out, missing };
}

/** Fluent Bit's Match: `*` matches any run of characters (flb_router_match). */
export function tagMatches(pattern: string, tag: string): boolean {
  const re = new RegExp(`^${pattern.split('*').map((s) => s.replace(/[.+?^${}()|[\]\\]/g, '\\$&')).join('.*')}$`);
  return re.test(tag);
}

/** A model without where it came from, for comparing a classic file with its YAML twin. */
export function comparable(m: FluentBitModel): Omit<FluentBitModel, 'files'> {
  const service = { ...m.service };
  // Classic examples load parsers from Parsers_File, YAML ones declare them inline: compare the
  // parsers themselves.
  delete service.parsers_file;
  return { service, inputs: m.inputs, filters: m.filters, outputs: m.outputs, parsers: m.parsers, variables: m.variables };
}
