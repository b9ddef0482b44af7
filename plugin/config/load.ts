/**
 * Loads the configuration file (YAML or JSON): `${VAR}` from the environment, `<key>_file` secrets,
 * renamed keys under their old names, the schema with its defaults, and errors that name the key,
 * its path and what is allowed. Every problem is collected so an operator fixes them in one pass; all of them
 * are a ConfigError (exit code 2). Credentials are registered for scrubbing as soon as they are
 * read, and never quoted in an error.
 */
import { readFileSync } from 'node:fs';
import path from 'node:path';
import { parseDocument } from 'yaml';
import { z } from 'zod';
import { ConfigError } from '../errors.ts';
import { registerCredentialPair, registerSecret } from '../telemetry/secrets.ts';
import { optionsOf, shapeOf, unwrap } from './keys.ts';
import { RENAMED_KEYS, configSchema, type Config } from './schema.ts';
import { startTimestamp, type RenamedKey } from './types.ts';
import { sourceDescriptors } from '../sources/registry.ts';
import { formatUtc, parseTimestampMs } from '../util/time.ts';

/**
 * Keys the Devo collectors' config.yaml has and this sidecar does not use: accepted, reported by
 * `check` (and logged by `run`) with why, and dropped from the effective configuration. `*` is any
 * input.
 */
const IGNORED_KEYS: ReadonlyArray<{ path: string[]; why: string }> = [
  { path: ['outputs'], why: 'events go to Fluent Bit (section output); its outputs ship them' },
  { path: ['global_overrides'], why: 'the Devo collector server\'s settings; set globals (e.g. globals.log_level) instead' },
  { path: ['globals', 'persistence'], why: 'state is kept in LevelDB under globals.state_dir' },
  { path: ['globals', 'debug'], why: 'set globals.log_level (debug, info, warn or error) instead' },
  { path: ['globals', 'id'], why: 'the sidecar has no collector id; each input keeps its own id, and globals.name names the process' },
  { path: ['inputs', '*', 'environment'], why: "it only labels the Devo collector's deployment" },
];

/** Keys whose value is a credential: masked in `check`, scrubbed from logs, `<key>_file` allowed. */
export const SECRET_KEYS: ReadonlyArray<string[]> = [
  ['inputs', '*', 'credentials', '*'],
  ['output', 'shared_key'],
  ['output', 'password'],
];

export interface LoadedConfig {
  config: Config;
  /** The file it came from (absolute), if any. */
  file?: string;
  /** Non-fatal remarks: ignored Devo sections. */
  notices: string[];
  /** Keys given under a former name (full paths): `check` prints and `run` logs a warning for each. */
  renamed: Array<{ from: string; to: string }>;
}

export interface LoadOptions {
  env?: NodeJS.ProcessEnv;
  /** Base for relative `*_file` paths; the config file's folder by default. */
  baseDir?: string;
  /** The time a start time must not be after (default: the system clock). */
  now?: number;
}

export function loadConfigFile(file: string, opts: LoadOptions = {}): LoadedConfig {
  const { abs, raw } = readConfigDocument(file);
  const loaded = loadConfigObject(raw, { baseDir: path.dirname(abs), ...opts });
  return { ...loaded, file: abs };
}

/**
 * A config file as parsed, not yet validated: `${VAR}` references stay as placeholders that
 * loadConfigObject substitutes, so a part of it (the demo takes the `output:` section) can be
 * loaded later without the variables the rest references.
 */
export function readConfigDocument(file: string): { abs: string; raw: unknown } {
  const abs = path.resolve(file);
  let text: string;
  try {
    text = readFileSync(abs, 'utf8');
  } catch (err) {
    throw new ConfigError(`cannot read config file ${abs}: ${(err as NodeJS.ErrnoException).code ?? (err as Error).message}`);
  }
  return { abs, raw: parseConfigText(text, abs) };
}

export function loadConfigText(text: string, opts: LoadOptions = {}, name = 'config'): LoadedConfig {
  return loadConfigObject(parseConfigText(text, name), opts);
}

function parseConfigText(text: string, name: string): unknown {
  // `${VAR}` is replaced after parsing, so a value can never change the document's structure; a
  // plain-scalar placeholder stands in meanwhile, because `{ username: ${TAP_PRINCIPAL} }` (the
  // form the example configs use) is not valid YAML as written.
  const masked = text.replace(/\$\{([A-Za-z_][A-Za-z0-9_]*)\}/g, (_, n: string) => `${PLACEHOLDER}${n}__`);
  const doc = parseDocument(masked, { prettyErrors: true, uniqueKeys: true });
  if (doc.errors.length > 0) {
    throw new ConfigError(doc.errors.map((e) => `${name}: ${e.message.split('\n')[0]}`));
  }
  return doc.toJS() ?? {};
}

export function loadConfigObject(raw: unknown, opts: LoadOptions = {}): LoadedConfig {
  const env = opts.env ?? process.env;
  const baseDir = opts.baseDir ?? process.cwd();
  if (!isPlainObject(raw)) throw new ConfigError('the configuration must be a mapping with globals, output and inputs');
  const problems: string[] = [];
  const notices: string[] = [];

  const substituted = substituteEnv(raw, env, [], problems) as Record<string, unknown>;
  liftCloudFormInputs(substituted, notices, problems);
  const renamed = applyRenamedKeys(substituted, problems);
  readSecretFiles(substituted, baseDir, problems);
  registerSecrets(substituted);

  const ignored = ignoredKeys(substituted);
  for (const { at, why } of ignored) notices.push(`${at.join('.')} is a Devo collector key and is ignored: ${why}`);
  if (problems.length > 0) throw new ConfigError(problems);

  coerceScalars(substituted);
  const parsed = configSchema().safeParse(substituted);
  // Every problem in one round: the schema's, a start time in the future, and no input at all.
  const errors = parsed.success ? [] : formatIssues(parsed.error.issues, substituted);
  errors.push(...futureStartTimes(substituted, opts.now ?? Date.now()));
  const missing = missingInput(substituted);
  if (missing) errors.push(missing);
  if (errors.length > 0 || !parsed.success) throw new ConfigError([...new Set(errors)]);
  const config = parsed.data as Config;
  for (const { at } of ignored) deletePath(config, at);
  return { config, notices, renamed };
}

/**
 * `{ "proofpoint_tap": {...} }` (the Devo collector server's JSON form puts an input at the top
 * level, beside global_overrides) is read as `inputs.proofpoint_tap`; so for every input type.
 */
function liftCloudFormInputs(cfg: Record<string, unknown>, notices: string[], problems: string[]): void {
  for (const { type: name } of sourceDescriptors()) {
    if (!(name in cfg)) continue;
    const inputs = isPlainObject(cfg.inputs) ? cfg.inputs : {};
    if (inputs[name] !== undefined) {
      problems.push(`${name}: given both at the top level and as inputs.${name}; keep one`);
      continue;
    }
    cfg.inputs = { ...inputs, [name]: cfg[name] };
    delete cfg[name];
    notices.push(`${name} at the top level (the Devo collector server's JSON form) is read as inputs.${name}`);
  }
}

/** Every renamed key, with its full path pattern: the sidecar's sections', then each input type's. */
function renamedKeys(): RenamedKey[] {
  const inputs = sourceDescriptors().flatMap((d) => (d.renamedKeys ?? []).map((k) => ({ ...k, at: ['inputs', d.type, ...k.at] })));
  return [...RENAMED_KEYS, ...inputs];
}

/**
 * Moves values given under a former key name to the current one (numbers, or numbers written as
 * strings, divided into the new unit) and reports each; both names in one section is a problem
 * naming both. Changes the object in place.
 */
function applyRenamedKeys(cfg: Record<string, unknown>, problems: string[]): Array<{ from: string; to: string }> {
  const out: Array<{ from: string; to: string }> = [];
  for (const k of renamedKeys()) {
    for (const at of expandPath(cfg, k.at)) {
      const section = getPath(cfg, at);
      if (!isPlainObject(section) || !(k.from in section)) continue;
      const from = fmtPath([...at, k.from]);
      const to = fmtPath([...at, k.to]);
      if (k.to in section) {
        problems.push(`${from}: given together with its new name ${to}; keep ${to} only`);
        continue;
      }
      const value = section[k.from];
      const text = typeof value === 'string' ? value.trim() : undefined;
      const number = typeof value === 'number' ? value : text !== undefined && /^[+-]?\d+(\.\d+)?$/.test(text) ? Number(text) : undefined;
      section[k.to] = number === undefined ? value : number / k.divideBy;
      delete section[k.from];
      out.push({ from, to });
    }
  }
  return out;
}

/** The concrete paths a pattern (`*`: any key) matches in `cfg`, existing objects only. */
function expandPath(cfg: Record<string, unknown>, pattern: readonly string[], prefix: string[] = []): string[][] {
  if (pattern.length === prefix.length) return [prefix];
  const here = getPath(cfg, prefix);
  if (!isPlainObject(here)) return [];
  const head = pattern[prefix.length]!;
  const names = head === '*' ? Object.keys(here) : [head];
  return names.filter((n) => n in here).flatMap((n) => expandPath(cfg, pattern, [...prefix, n]));
}

/** The Devo-only keys present, with their concrete paths. */
function ignoredKeys(cfg: Record<string, unknown>): Array<{ at: string[]; why: string }> {
  const out: Array<{ at: string[]; why: string }> = [];
  for (const k of IGNORED_KEYS) {
    const expand = (prefix: string[], rest: string[]): string[][] => {
      if (rest.length === 0) return [prefix];
      const [head, ...tail] = rest;
      const here = getPath(cfg, prefix);
      if (!isPlainObject(here)) return [];
      const names = head === '*' ? Object.keys(here) : [head!];
      return names.filter((n) => n in here).flatMap((n) => expand([...prefix, n], tail));
    };
    for (const at of expand([], k.path)) out.push({ at, why: k.why });
  }
  return out;
}

function deletePath(obj: unknown, at: readonly string[]): void {
  const parent = getPath(obj, at.slice(0, -1));
  if (isPlainObject(parent)) delete parent[at[at.length - 1]!];
}

/**
 * Numbers and booleans written as strings (`"60"`, `"true"`: the Devo collectors' cloud form sends
 * every value as a string) become what the schema expects there. Only where the schema asks for a
 * number or a boolean; credentials are never touched. Changes the object in place.
 */
function coerceScalars(cfg: Record<string, unknown>): void {
  for (let round = 0; round < 8; round++) {
    const parsed = configSchema().safeParse(cfg);
    if (parsed.success) return;
    let changed = false;
    for (const issue of parsed.error.issues) {
      if (issue.code !== 'invalid_type' || (issue.expected !== 'number' && issue.expected !== 'boolean')) continue;
      const at = issue.path.map(String);
      if (isSecretKey(at)) continue;
      const value = getPath(cfg, at);
      if (typeof value !== 'string') continue;
      const text = value.trim();
      let typed: number | boolean | undefined;
      if (issue.expected === 'number' && /^[+-]?\d+(\.\d+)?$/.test(text)) typed = Number(text);
      if (issue.expected === 'boolean' && /^(true|false)$/i.test(text)) typed = text.toLowerCase() === 'true';
      if (typed === undefined) continue;
      const parent = getPath(cfg, at.slice(0, -1));
      if (!isPlainObject(parent)) continue;
      parent[at[at.length - 1]!] = typed;
      changed = true;
    }
    if (!changed) return;
  }
}

/** Start times after `now` (error 101), found on the raw values so they come with every other problem. */
function futureStartTimes(cfg: Record<string, unknown>, now: number): string[] {
  const out: string[] = [];
  for (const { type: input, startTimeKey: key } of sourceDescriptors()) {
    if (key === undefined) continue;
    const enabled = getPath(cfg, ['inputs', input, 'enabled']);
    if (enabled === false) continue;
    const services = getPath(cfg, ['inputs', input, 'services']);
    if (!isPlainObject(services)) continue;
    for (const [name, svc] of Object.entries(services)) {
      if (!isPlainObject(svc)) continue;
      const parsed = startTimestamp.safeParse(svc[key]);
      if (!parsed.success || typeof parsed.data !== 'string') continue;
      const at = parseTimestampMs(parsed.data);
      if (at !== undefined && at > now) {
        out.push(`inputs.${input}.services.${name}.${key}: error 101: ${String(svc[key])} is in the future (now is ${formatUtc(now)})`);
      }
    }
  }
  return out;
}

/** Why nothing would be collected (`run` would have nothing to do), or undefined. */
function missingInput(cfg: Record<string, unknown>): string | undefined {
  const inputs = isPlainObject(cfg.inputs) ? Object.entries(cfg.inputs).filter(([, i]) => i !== undefined && i !== null) : [];
  if (inputs.length === 0) {
    const each = sourceDescriptors().map((d) => `inputs.${d.type} (${d.requiredKeys})`);
    const choice = each.length > 1 ? `${each.slice(0, -1).join(', ')} and/or ${each[each.length - 1]}` : (each[0] ?? 'an input');
    return `inputs: no input is configured, so there is nothing to collect: add ${choice}`;
  }
  const enabled = inputs.filter(([, i]) => !isPlainObject(i) || (i.enabled !== false && i.enabled !== 'false'));
  if (enabled.length === 0) {
    return `inputs: every input has enabled: false (${inputs.map(([n]) => `inputs.${n}.enabled`).join(', ')}), so there is nothing to collect: enable at least one`;
  }
  return undefined;
}

const PLACEHOLDER = '__PPS_ENV__';
const REFERENCE = /\$\{([^}]*)\}|__PPS_ENV__([A-Za-z_][A-Za-z0-9_]*?)__/g;

/**
 * Replaces `${NAME}` in every string value; a missing variable is an error naming it and where.
 * A value that is exactly one reference takes the variable's YAML type (`port: ${FB_PORT}` is a
 * number), except credentials, which stay strings.
 */
function substituteEnv(value: unknown, env: NodeJS.ProcessEnv, at: string[], problems: string[]): unknown {
  if (typeof value === 'string') {
    const whole = /^(?:\$\{([A-Za-z_][A-Za-z0-9_]*)\}|__PPS_ENV__([A-Za-z_][A-Za-z0-9_]*?)__)$/.exec(value);
    const out = value.replace(REFERENCE, (ref, braced: string | undefined, placeholder: string | undefined) => {
      const name = braced ?? placeholder!;
      const shown = `\${${name}}`;
      const whole = ref;
      if (!/^[A-Za-z_][A-Za-z0-9_]*$/.test(name)) {
        problems.push(`${fmtPath(at)}: "${whole}" is not a valid environment reference; use \${NAME} with letters, digits and _`);
        return whole;
      }
      const v = env[name];
      if (v === undefined) {
        problems.push(`${fmtPath(at)}: environment variable ${name} is not set (referenced as ${shown})`);
        return '';
      }
      return v;
    });
    if (whole && !isSecretKey(at) && out !== '') {
      const typed: unknown = parseDocument(out).toJS();
      if (typeof typed === 'number' || typeof typed === 'boolean') return typed;
    }
    return out;
  }
  if (Array.isArray(value)) return value.map((v, i) => substituteEnv(v, env, [...at, String(i)], problems));
  if (isPlainObject(value)) {
    const out: Record<string, unknown> = {};
    for (const [k, v] of Object.entries(value)) out[k] = substituteEnv(v, env, [...at, k], problems);
    return out;
  }
  return value;
}

/** `password_file: /run/secrets/tap` becomes `password: <file content without the final newline>`. */
function readSecretFiles(cfg: Record<string, unknown>, baseDir: string, problems: string[]): void {
  for (const { parent, at } of secretParents(cfg)) {
    for (const key of Object.keys(parent)) {
      if (!key.endsWith('_file')) continue;
      const target = key.slice(0, -'_file'.length);
      if (!isSecretKey([...at, target])) continue;
      const where = fmtPath([...at, key]);
      const file = parent[key];
      delete parent[key];
      if (typeof file !== 'string' || file === '') {
        problems.push(`${where}: must be the path of a file holding ${target}`);
        continue;
      }
      if (parent[target] !== undefined) {
        problems.push(`${where}: give either ${target} or ${key}, not both`);
        continue;
      }
      try {
        const content = readFileSync(path.resolve(baseDir, file), 'utf8').replace(/\r?\n$/, '');
        if (content === '') problems.push(`${where}: file ${file} is empty`);
        parent[target] = content;
      } catch (err) {
        problems.push(`${where}: cannot read ${file}: ${(err as NodeJS.ErrnoException).code ?? (err as Error).message}`);
      }
    }
  }
}

function* secretParents(cfg: Record<string, unknown>): Generator<{ parent: Record<string, unknown>; at: string[] }> {
  const output = cfg.output;
  if (isPlainObject(output)) yield { parent: output, at: ['output'] };
  const inputs = cfg.inputs;
  if (isPlainObject(inputs)) {
    for (const [name, input] of Object.entries(inputs)) {
      if (isPlainObject(input) && isPlainObject(input.credentials)) yield { parent: input.credentials, at: ['inputs', name, 'credentials'] };
    }
  }
}

export function isSecretKey(at: readonly string[]): boolean {
  return SECRET_KEYS.some((p) => p.length === at.length && p.every((seg, i) => seg === '*' || seg === at[i]));
}

/**
 * Every credential, and every username/password pair as HTTP Basic sends it (TAP's service
 * principal and secret): a server echoing the Authorization header shows only their base64.
 */
function registerSecrets(cfg: Record<string, unknown>): void {
  for (const { parent, at } of secretParents(cfg)) {
    for (const [k, v] of Object.entries(parent)) if (isSecretKey([...at, k]) && typeof v === 'string') registerSecret(v);
    if (typeof parent.username === 'string' && typeof parent.password === 'string') registerCredentialPair(parent.username, parent.password);
  }
}

/** A copy of the config with every credential replaced by "***" (for `check`). */
export function maskSecrets<T>(value: T, at: string[] = []): T {
  if (Array.isArray(value)) return value.map((v, i) => maskSecrets(v, [...at, String(i)])) as T;
  if (isPlainObject(value)) {
    const out: Record<string, unknown> = {};
    for (const [k, v] of Object.entries(value)) out[k] = isSecretKey([...at, k]) && v !== undefined ? '***' : maskSecrets(v, [...at, k]);
    return out as T;
  }
  return value;
}

function formatIssues(issues: readonly z.core.$ZodIssue[], raw: unknown): string[] {
  const out: string[] = [];
  for (const issue of issues) {
    const at = issue.path.map(String);
    if (issue.code === 'unrecognized_keys') {
      const allowed = allowedKeysAt(at, raw);
      for (const key of issue.keys) {
        const near = nearest(key, allowed);
        out.push(
          `${fmtPath([...at, key])}: unknown key${near ? `; did you mean "${near}"?` : '.'}` +
            (allowed.length ? ` Allowed keys in ${at.length ? fmtPath(at) : 'the top level'}: ${allowed.join(', ')}` : ''),
        );
      }
      continue;
    }
    const where = fmtPath(at);
    const value = getPath(raw, at);
    const secret = isSecretKey(at);
    if (issue.code === 'invalid_type' && value === undefined) {
      out.push(`${where}: is required (${expected(issue)})`);
    } else if (issue.code === 'invalid_union' && at[at.length - 1] === 'type') {
      out.push(`${where}: must be one of "forward", "stdout"`);
    } else if (/^start_time(_in_utc)?$/.test(at[at.length - 1] ?? '')) {
      // The Devo collectors report a bad start time as error 101.
      out.push(`${where}: error 101: ${describe(issue)}${value === undefined ? '' : ` (got ${JSON.stringify(value)})`}`);
    } else {
      const shown = secret || value === undefined || isPlainObject(value) || Array.isArray(value) ? '' : ` (got ${JSON.stringify(value)})`;
      out.push(`${where}: ${describe(issue)}${shown}`);
    }
  }
  return [...new Set(out)];
}

function expected(issue: z.core.$ZodIssue): string {
  return issue.code === 'invalid_type' ? kind(issue.expected) : issue.message;
}

/** "a mapping", "a string", "an array", … for a zod type name. */
function kind(type: string): string {
  if (type === 'object') return 'a mapping';
  return /^[aeiou]/.test(type) ? `an ${type}` : `a ${type}`;
}

function describe(issue: z.core.$ZodIssue): string {
  switch (issue.code) {
    case 'invalid_type':
      return `must be ${kind(issue.expected)}`;
    case 'invalid_value':
      return `must be one of ${issue.values.map((v) => JSON.stringify(v)).join(', ')}`;
    case 'too_small':
      if (!/^Too small/.test(issue.message)) return issue.message;
      if (issue.origin === 'string') return 'must not be empty';
      // positive() is an exclusive bound at 0: "at least 0" would be wrong for 0 itself.
      if (issue.inclusive === false) return `must be greater than ${issue.minimum}`;
      return `must be at least ${issue.minimum}${issue.origin === 'number' ? '' : ` ${issue.origin}`}`;
    case 'too_big':
      if (!/^Too big/.test(issue.message)) return issue.message;
      if (issue.inclusive === false) return `must be less than ${issue.maximum}`;
      return `must be at most ${issue.maximum}`;
    case 'invalid_format':
      return issue.message.startsWith('Invalid') ? `must be a valid ${issue.format}` : issue.message;
    default:
      return issue.message;
  }
}

/**
 * The keys a strict object at `at` allows, found by walking the schema. For a discriminated union
 * (output), the option named by the value's `type` decides.
 */
function allowedKeysAt(at: readonly string[], raw: unknown): string[] {
  let node: unknown = configSchema();
  for (let i = 0; i <= at.length; i++) {
    node = unwrap(node);
    const options = optionsOf(node);
    if (options) node = pickOption(options, getPath(raw, at.slice(0, i)));
    if (i === at.length) break;
    node = shapeOf(node)?.[at[i]!];
  }
  return Object.keys(shapeOf(node) ?? {});
}

function pickOption(options: unknown[], value: unknown): unknown {
  const type = isPlainObject(value) ? value.type : undefined;
  for (const o of options) {
    const lit = shapeOf(unwrap(o))?.type as { _zod?: { def?: { values?: unknown[] } } } | undefined;
    if (lit?._zod?.def?.values?.includes(type)) return unwrap(o);
  }
  return unwrap(options[0]);
}

/** The allowed key closest to `key` (edit distance, case-insensitive), when close enough. */
export function nearest(key: string, allowed: readonly string[]): string | undefined {
  let best: string | undefined;
  let bestD = Infinity;
  for (const a of allowed) {
    const d = levenshtein(key.toLowerCase(), a.toLowerCase());
    if (d < bestD) {
      bestD = d;
      best = a;
    }
  }
  return best !== undefined && bestD <= Math.max(2, Math.floor(best.length / 3)) ? best : undefined;
}

function levenshtein(a: string, b: string): number {
  const prev = Array.from({ length: b.length + 1 }, (_, i) => i);
  for (let i = 1; i <= a.length; i++) {
    let diag = prev[0]!;
    prev[0] = i;
    for (let j = 1; j <= b.length; j++) {
      const tmp = prev[j]!;
      prev[j] = Math.min(prev[j]! + 1, prev[j - 1]! + 1, diag + (a[i - 1] === b[j - 1] ? 0 : 1));
      diag = tmp;
    }
  }
  return prev[b.length]!;
}

function fmtPath(at: readonly string[]): string {
  return at.length === 0 ? '(top level)' : at.join('.');
}

function getPath(obj: unknown, at: readonly string[]): unknown {
  let cur = obj;
  for (const seg of at) {
    if (!isPlainObject(cur) && !Array.isArray(cur)) return undefined;
    cur = (cur as Record<string, unknown>)[seg];
  }
  return cur;
}

function isPlainObject(v: unknown): v is Record<string, unknown> {
  return typeof v === 'object' && v !== null && !Array.isArray(v);
}
