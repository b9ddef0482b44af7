import type { Argv } from 'yargs';
import { stringify } from 'yaml';
import { loadConfigFile, maskSecrets } from '../config/load.ts';
import { checkSources } from '../sources/registry.ts';
import { scrub } from '../telemetry/secrets.ts';
import { UsageError, withConfig, type ConfigArgs } from './common.ts';

export const command = 'check';
export const describe = 'Validate the configuration and print it as it takes effect, secrets masked';
export const builder = (y: Argv) =>
  withConfig(y)
    .option('online', {
      type: 'boolean',
      default: false,
      describe:
        'Also verify the output and every enabled service: a forward connection to Fluent Bit (with the shared_key handshake when set) acknowledging a message without records, one small TAP request, a POD handshake closed at once',
    })
    .option('probe', {
      type: 'boolean',
      default: false,
      describe:
        'With --online: also ask the POD tenant how it ends an archive window, what it does with a toTime in the future, whether it sends empty frames or pings; each answer is printed beside what the sidecar assumes (never changes the exit code)',
    })
    .option('probe-live', {
      type: 'boolean',
      default: false,
      describe:
        'With --probe: also open one live session per POD service (where does it start? is an archive session beside it refused?). It moves the server\'s live resume point: refused while the sidecar runs; records a replay owed in the stored cursor',
    })
    .option('probe-timeout', {
      type: 'number',
      default: 120,
      describe: 'Seconds one probe question may take at most',
    })
    .check((a) => {
      if (a.probe && !a.online) throw new UsageError('--probe needs --online');
      if (a['probe-live'] && !a.probe) throw new UsageError('--probe-live needs --probe');
      const t = a['probe-timeout'];
      if (typeof t !== 'number' || !Number.isFinite(t) || t <= 0) throw new UsageError('--probe-timeout must be a number of seconds above 0');
      return true;
    });

export interface CheckArgs extends ConfigArgs {
  online?: boolean;
  probe?: boolean;
  probeLive?: boolean;
  probeTimeout?: number;
}

export async function handler(args: CheckArgs): Promise<number> {
  const { config, notices, renamed, file } = loadConfigFile(args.config);
  const out = process.stdout;
  out.write(`# Effective configuration of ${file} (defaults filled in, credentials masked)\n`);
  out.write(scrub(stringify(maskSecrets(config))));
  const warnings = await checkSources(config);
  for (const n of notices) out.write(`note: ${n}\n`);
  for (const r of renamed) out.write(`warning: ${r.from} is a former name: rename it to ${r.to} (read as ${r.to} for now)\n`);
  for (const w of warnings) out.write(`warning: ${w}\n`);
  if (args.online) {
    const { checkOnline, probeOnline } = await import('./online.ts');
    const ok = await checkOnline(config, out);
    if (args.probe) await probeOnline(config, out, { capMs: (args.probeTimeout ?? 120) * 1000, live: args.probeLive ?? false });
    out.write(
      ok
        ? 'Configuration is valid; the output and every enabled service answered.\n'
        : 'Configuration is valid, but an output or service check failed (see above).\n',
    );
    return ok ? 0 : 1;
  }
  out.write('Configuration is valid.\n');
  return 0;
}
