/**
 * The command line: one yargs command per file, as mocha's lib/cli does.
 * Exit codes: 0 ok, 2 bad configuration or usage, 1 runtime failure.
 */
import yargs from 'yargs';
import { reportError, UsageError } from './common.ts';
import { SIDECAR_VERSION } from '../util/user-agent.ts';
import * as run from './run.ts';
import * as check from './check.ts';
import * as state from './state.ts';
import * as demo from './demo.ts';

export async function main(argv: string[]): Promise<number> {
  let exitCode = 0;
  const setExit = (code: number) => {
    exitCode = code;
  };
  try {
    await yargs(argv)
      .scriptName('proofpoint-sidecar')
      .usage('$0 <command> [options]\n\nCollects Proofpoint TAP and Proofpoint on Demand events and forwards them to Fluent Bit.')
      .command(run.command, run.describe, run.builder, (a) => run.handler(a).then(setExit))
      .command(check.command, check.describe, check.builder, (a) => check.handler(a).then(setExit))
      .command(state.command, state.describe, state.builder, (a) => state.handler(a as state.StateArgs).then(setExit))
      .command(demo.command, demo.describe, demo.builder, (a) => demo.handler(a).then(setExit))
      .demandCommand(1, 'Name a command: run, check, state or demo.')
      .strict()
      .recommendCommands()
      .help()
      .version('version', 'Print the version and exit', SIDECAR_VERSION)
      .exitProcess(false)
      .fail((msg, err) => {
        if (err) throw err;
        throw new UsageError(msg);
      })
      .parseAsync();
  } catch (err) {
    return reportError(err);
  }
  return exitCode;
}
