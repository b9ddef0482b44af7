import type { Argv } from 'yargs';
import { loadConfigFile } from '../config/load.ts';
import { StateStore, splitScope } from '../state/store.ts';
import { repairState, type RepairReport } from '../state/repair.ts';
import { UsageError, withConfig } from './common.ts';

export const command = 'state <action>';
export const describe = 'Show, reset or repair the persisted state (cursors, de-dup windows)';

export interface StateArgs {
  action: 'show' | 'reset' | 'repair';
  config: string;
  input?: string;
  service?: string;
}

export function builder(y: Argv) {
  return withConfig(y)
    .positional('action', {
      choices: ['show', 'reset', 'repair'] as const,
      describe: 'show: print the state; reset: delete it; repair: recover damaged state (LevelDB repair) and report what was lost',
    })
    .option('input', { type: 'string', describe: 'Only this input (its id, or proofpoint_tap / proofpoint_on_demand)' })
    .option('service', { type: 'string', describe: 'Only this service (needs --input)' })
    .check((a) => {
      if (a.service && !a.input) throw new UsageError('--service needs --input');
      if (a.action === 'repair' && a.input) throw new UsageError('state repair works on the whole state: drop --input and --service');
      return true;
    });
}

export async function handler(args: StateArgs): Promise<number> {
  const { config } = loadConfigFile(args.config);
  // Resolve --input given as the type name to its id.
  const byType: Record<string, string | undefined> = {
    proofpoint_tap: config.inputs.proofpoint_tap?.id,
    proofpoint_on_demand: config.inputs.proofpoint_on_demand?.id,
  };
  const input = args.input ? (byType[args.input] ?? args.input) : undefined;
  if (args.action === 'repair') return repair(config.globals.state_dir);
  const store = await StateStore.open(config.globals.state_dir, { maintenance: true });
  try {
    const scopes = (await store.listScopes()).filter((s) => {
      const [i, svc] = splitScope(s);
      return (!input || i === input) && (!args.service || svc === args.service);
    });
    if (args.action === 'show') {
      const cursors = new Map((await store.listCursors()).map((c) => [`${c.input}::${c.service}`, c]));
      const out = {
        state_dir: store.dir,
        previous_shutdown: store.uncleanShutdown ? 'unclean (or still running)' : 'clean',
        services: await Promise.all(
          scopes.map(async (scope) => {
            const [i, svc] = splitScope(scope);
            const c = cursors.get(scope);
            return {
              input: i,
              service: svc,
              cursor: c?.cursor ?? null,
              committed_at: c && c.committed_at ? new Date(c.committed_at).toISOString() : null,
              dedup_keys: await store.seen.load(scope),
            };
          }),
        ),
        request_log_last_24h: (await store.requests.summary(Date.now() - 24 * 3600 * 1000)).filter((r) => !input || r.input === input),
      };
      process.stdout.write(JSON.stringify(out, null, 2) + '\n');
      return 0;
    }
    for (const scope of scopes) {
      const [i, svc] = splitScope(scope);
      await store.resetService(i, svc);
      process.stdout.write(`reset ${i} ${svc}\n`);
    }
    if (scopes.length === 0) process.stdout.write('nothing to reset\n');
    else process.stdout.write('The request log (rate budget) is kept: the vendor still counts those requests.\n');
    return 0;
  } finally {
    await store.close();
  }
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
