import { existsSync } from 'node:fs';
import path from 'node:path';
import { createInterface } from 'node:readline/promises';
import type { Argv } from 'yargs';
import { loadConfigFile } from '../config/load.ts';
import type { Config } from '../config/schema.ts';
import { ErrorCode, SidecarError } from '../errors.ts';
import { configuredInputs as inputsOfConfig, sourceDescriptors } from '../sources/registry.ts';
import { StateStore, splitScope } from '../state/store.ts';
import { stateReport, type StateFilter, type StateReport } from '../state/report.ts';
import { repairState, type RepairReport } from '../state/repair.ts';
import { UsageError, withConfig } from './common.ts';

export const command = 'state <action>';
export const describe = 'Show, reset or repair the persisted state (cursors, de-dup windows)';

export interface StateArgs {
  action: 'show' | 'reset' | 'repair';
  config: string;
  input?: string;
  service?: string;
  yes?: boolean;
}

export function builder(y: Argv) {
  return withConfig(y)
    .positional('action', {
      choices: ['show', 'reset', 'repair'] as const,
      describe:
        'show: print the state (through the running sidecar\'s globals.http endpoint while it runs); reset: delete it (asks first); repair: recover damaged state (LevelDB repair) and report what was lost',
    })
    .option('input', { type: 'string', describe: `Only this input (its id, or ${sourceDescriptors().map((d) => d.type).join(' / ')})` })
    .option('service', { type: 'string', describe: 'Only this service (needs --input)' })
    .option('yes', { alias: 'y', type: 'boolean', describe: 'reset: do not ask for confirmation' })
    .check((a) => {
      if (a.service && !a.input) throw new UsageError('--service needs --input');
      if (a.action === 'repair' && a.input) throw new UsageError('state repair works on the whole state: drop --input and --service');
      return true;
    });
}

/** The inputs of the config with their enabled services. */
function configuredInputs(config: Config): Array<{ id: string; type: string; services: string[] }> {
  return inputsOfConfig(config.inputs).map(({ descriptor, cfg }) => ({ id: cfg.id, type: descriptor.type, services: descriptor.services(cfg) }));
}

/**
 * --input (id or type name) and --service resolved against the config, and against what the state
 * holds (an input removed from the config keeps its state until reset); anything else is an error.
 */
function resolveFilter(args: StateArgs, config: Config, scopes: string[] | undefined): StateFilter {
  if (!args.input) return {};
  const inputs = configuredInputs(config);
  const stored = (scopes ?? []).map((s) => splitScope(s));
  const byType = inputs.find((i) => i.type === args.input);
  const input = byType?.id ?? args.input;
  const configured = inputs.find((i) => i.id === input);
  if (!configured && !stored.some(([i]) => i === input)) {
    const known = [...inputs.map((i) => `${i.id} (${i.type})`), ...new Set(stored.map(([i]) => i).filter((i) => !inputs.some((c) => c.id === i)))];
    throw new UsageError(`--input ${args.input}: no such input in ${args.config} or in the state; known: ${known.length > 0 ? known.join(', ') : 'none'}`);
  }
  if (!args.service) return { input };
  const services = new Set([...(configured?.services ?? []), ...stored.filter(([i]) => i === input).map(([, s]) => s)]);
  if (!services.has(args.service)) {
    throw new UsageError(`--service ${args.service}: input ${input} has no such service; known: ${[...services].join(', ') || 'none'}`);
  }
  return { input, service: args.service };
}

export async function handler(args: StateArgs): Promise<number> {
  const { config } = loadConfigFile(args.config);
  if (args.action === 'repair') return repair(config.globals.state_dir);
  const dir = path.resolve(config.globals.state_dir);
  if (!existsSync(path.join(dir, 'db'))) {
    // Opening would create it: say there is nothing instead.
    resolveFilter(args, config, undefined);
    if (args.action === 'show') {
      process.stdout.write(JSON.stringify({ state_dir: dir, exists: false, services: [] }, null, 2) + '\n');
      process.stderr.write(`No state in ${dir} yet: the sidecar has not run with this globals.state_dir.\n`);
    } else process.stdout.write('nothing to reset\n');
    return 0;
  }
  let store: StateStore;
  try {
    store = await StateStore.open(dir, { maintenance: true });
  } catch (err) {
    if (args.action === 'show' && err instanceof SidecarError && err.code === ErrorCode.STATE_LOCKED) return showFromRunning(args, config, dir);
    throw err;
  }
  try {
    const filter = resolveFilter(args, config, await store.listScopes());
    if (args.action === 'show') {
      const types = new Map(configuredInputs(config).map((i) => [i.id, i.type]));
      print(await stateReport(store, filter, { now: Date.now(), typeOf: (input) => types.get(input) }));
      return 0;
    }
    const scopes = (await store.listScopes()).filter((s) => {
      const [i, svc] = splitScope(s);
      return (!filter.input || i === filter.input) && (!filter.service || svc === filter.service);
    });
    if (scopes.length === 0) {
      process.stdout.write('nothing to reset\n');
      return 0;
    }
    const what = scopes.map((s) => splitScope(s).join(' ')).join(', ');
    if (!args.yes && !(await confirm(`Delete the cursors and de-dup keys of ${what}? Those services collect again from their start time. [y/N] `))) {
      process.stderr.write(
        process.stdin.isTTY
          ? 'Not reset.\n'
          : `state reset would delete the cursors and de-dup keys of ${what}; stdin is not a terminal, so give --yes to confirm.\n`,
      );
      return process.stdin.isTTY ? 1 : 2;
    }
    for (const scope of scopes) {
      const [i, svc] = splitScope(scope);
      await store.resetService(i, svc);
      process.stdout.write(`reset ${i} ${svc}\n`);
    }
    process.stdout.write('The request log (rate budget) is kept: the vendor still counts those requests.\n');
    return 0;
  } finally {
    await store.close();
  }
}

/** Asks on the terminal; false without one. */
async function confirm(question: string): Promise<boolean> {
  if (!process.stdin.isTTY) return false;
  const rl = createInterface({ input: process.stdin, output: process.stderr });
  try {
    return /^y(es)?$/i.test((await rl.question(question)).trim());
  } finally {
    rl.close();
  }
}

/** JSON on stdout (for scripts), one line per service on stderr (for people). */
function print(r: StateReport & { read_from?: string }): void {
  process.stdout.write(JSON.stringify(r, null, 2) + '\n');
  const lines = r.services.map((s) => {
    const b = s.backfill;
    const where = !b
      ? 'nothing collected yet'
      : b.active
        ? `backfilling: at ${b.position}, ${b.remaining} to go, ${b.live_at ? `live at about ${b.live_at}` : 'time to live not known'}`
        : `live (collected up to ${b.position})`;
    return `${s.input} ${s.service}: ${where}; last commit ${s.committed_at ?? 'never'}; ${s.dedup_keys} de-dup keys`;
  });
  if (lines.length > 0) process.stderr.write(lines.join('\n') + '\n');
}

/** The state is locked by `run`: ask the running sidecar (globals.http) for it. */
async function showFromRunning(args: StateArgs, config: Config, dir: string): Promise<number> {
  const listen = config.globals.http?.listen;
  if (!listen) {
    throw new SidecarError(
      ErrorCode.STATE_LOCKED,
      `State directory ${dir} is in use by a running proofpoint-sidecar, and globals.http is not set, so it cannot be asked for its state; set globals.http.listen (it serves /state), or stop the sidecar`,
    );
  }
  const i = listen.lastIndexOf(':');
  let host = listen.slice(0, i);
  if (host === '0.0.0.0' || host === '') host = '127.0.0.1';
  if (host === '[::]') host = '[::1]';
  const base = `http://${host}:${listen.slice(i + 1)}`;
  // The filter is checked here against the config only; the sidecar narrows with it.
  const filter = resolveFilter(args, config, undefined);
  const q = new URLSearchParams(Object.entries(filter).filter(([, v]) => v !== undefined) as Array<[string, string]>);
  let res: Response;
  try {
    res = await fetch(`${base}/state?${q}`, { signal: AbortSignal.timeout(10_000) });
  } catch (err) {
    throw new SidecarError(
      ErrorCode.STATE_LOCKED,
      `State directory ${dir} is in use by another process, and ${base}/state (globals.http.listen) did not answer: ${((err as Error).cause as Error | undefined)?.message ?? (err as Error).message}`,
    );
  }
  if (!res.ok) throw new SidecarError(ErrorCode.STATE_LOCKED, `The running sidecar answered ${res.status} at ${base}/state: ${(await res.text()).trim()}`);
  print({ read_from: `running sidecar (${base}/state)`, ...((await res.json()) as StateReport) });
  return 0;
}

/** Prints the repair report (JSON, stdout) and a summary (stderr); exit 1 when the state is still not readable. */
async function repair(stateDir: string): Promise<number> {
  const r: RepairReport = await repairState(stateDir);
  process.stdout.write(JSON.stringify(r, null, 2) + '\n');
  const unreadable = Object.entries(r.after.unreadable);
  if (r.after.error || unreadable.length > 0) {
    process.stderr.write(
      `State in ${r.state_dir} is still not readable after the repair (${r.after.error ?? unreadable.map(([k, e]) => `${k}: ${e}`).join('; ')}); ` +
        `the files before the repair are in ${r.backup}. Point globals.state_dir elsewhere to start over from the start times.\n`,
    );
    return 1;
  }
  const lost = Object.entries(r.lost).map(([k, n]) => `${n} ${k}`);
  const lines = [
    `Repaired ${r.state_dir}; the files before the repair are in ${r.backup}.`,
    lost.length > 0 ? `Lost: ${lost.join(', ')} entries.` : r.lost_unknown.length === 0 ? 'Nothing was lost.' : '',
    r.lost_unknown.length > 0
      ? `Not countable before the repair (damaged): ${r.lost_unknown.join(', ')}; what survived is listed under "after".`
      : '',
    r.cursors_lost.length > 0
      ? `Cursors lost: ${r.cursors_lost.join(', ')}: those services collect again from their start time (duplicates, no loss).`
      : `Cursors present: ${r.after.cursors.length === 0 ? 'none' : r.after.cursors.join(', ')}.`,
    ...r.dedup_counts_fixed
      .filter((d) => d.present < d.stored)
      .map((d) => `De-dup keys lost for ${d.input}/${d.service}: ${d.stored - d.present} of ${d.stored} (events already delivered may be delivered again).`),
  ];
  // The JSON report alone goes to stdout, for scripts.
  process.stderr.write(lines.filter(Boolean).join('\n') + '\n');
  return 0;
}
