import type { Argv } from 'yargs';
import { loadConfigFile, type LoadedConfig } from '../config/load.ts';
import { createLogger, type Logger } from '../telemetry/logger.ts';
import { SidecarError } from '../errors.ts';
import { scrub } from '../telemetry/secrets.ts';

export interface ConfigArgs {
  config: string;
}

export function withConfig<T>(y: Argv<T>): Argv<T & ConfigArgs> {
  return y.option('config', {
    alias: 'c',
    type: 'string',
    demandOption: 'Give the configuration file with --config FILE.',
    describe: 'Configuration file (YAML or JSON)',
  }) as Argv<T & ConfigArgs>;
}

/** Loads the config and a logger at its level; logs the Devo-only notices and former key names as warnings. */
export function loadWithLogger(file: string): LoadedConfig & { logger: Logger } {
  const loaded = loadConfigFile(file);
  const logger = createLogger({ level: loaded.config.globals.log_level, name: loaded.config.globals.name });
  for (const n of loaded.notices) logger.warn({ config: loaded.file }, n);
  for (const r of loaded.renamed) logger.warn({ config: loaded.file, key: r.from, new_key: r.to }, 'Config key has a former name; it is read under its new name, rename it.');
  return { ...loaded, logger };
}

export class UsageError extends Error {}

/** Prints an error without its stack (unless it is a bug) and returns its exit code. */
export function reportError(err: unknown): number {
  if (err instanceof UsageError) {
    process.stderr.write(`${scrub(err.message)}\nRun "proofpoint-sidecar --help" for usage.\n`);
    return 2;
  }
  if (err instanceof SidecarError) {
    process.stderr.write(`error ${err.code}: ${scrub(err.message)}\n`);
    return err.exitCode;
  }
  process.stderr.write(`unexpected error: ${scrub((err as Error)?.stack ?? String(err))}\n`);
  return 1;
}
