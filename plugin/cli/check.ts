import type { Argv } from 'yargs';
import { stringify } from 'yaml';
import { loadConfigFile, maskSecrets } from '../config/load.ts';
import { checkSources } from '../sources/registry.ts';
import { scrub } from '../telemetry/secrets.ts';
import { withConfig, type ConfigArgs } from './common.ts';

export const command = 'check';
export const describe = 'Validate the configuration and print it as it takes effect, secrets masked';
export const builder = (y: Argv) =>
  withConfig(y).option('online', {
    type: 'boolean',
    default: false,
    describe: 'Also verify credentials and reachability of every enabled service (one small TAP request; a POD handshake closed at once)',
  });

export async function handler(args: ConfigArgs & { online?: boolean }): Promise<number> {
  const { config, notices, file } = loadConfigFile(args.config);
  const out = process.stdout;
  out.write(`# Effective configuration of ${file} (defaults filled in, credentials masked)\n`);
  out.write(scrub(stringify(maskSecrets(config))));
  const warnings = checkSources(config);
  for (const n of notices) out.write(`note: ${n}\n`);
  for (const w of warnings) out.write(`warning: ${w}\n`);
  if (args.online) {
    const { checkOnline } = await import('./online.ts');
    const ok = await checkOnline(config, out);
    out.write(ok ? 'Configuration is valid and every enabled service answered.\n' : 'Configuration is valid, but a service check failed (see above).\n');
    return ok ? 0 : 1;
  }
  out.write('Configuration is valid.\n');
  return 0;
}
