import type { Argv } from 'yargs';
import { loadConfigFile } from '../config/load.ts';
import { StateStore, splitScope } from '../state/store.ts';
import { UsageError, withConfig } from './common.ts';

export const command = 'state <action>';
export const describe = 'Show or reset the persisted state (cursors, de-dup windows)';

export interface StateArgs {
  action: 'show' | 'reset';
  config: string;
  input?: string;
  service?: string;
}

export function builder(y: Argv) {
  return withConfig(y)
    .positional('action', { choices: ['show', 'reset'] as const, describe: 'show: print the state; reset: delete it' })
    .option('input', { type: 'string', describe: 'Only this input (its id, or proofpoint_tap / proofpoint_on_demand)' })
    .option('service', { type: 'string', describe: 'Only this service (needs --input)' })
    .check((a) => {
      if (a.service && !a.input) throw new UsageError('--service needs --input');
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
