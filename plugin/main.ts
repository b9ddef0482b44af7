#!/usr/bin/env node
/** Entry point of the `proofpoint-sidecar` binary. */
import { main } from './cli/index.ts';

main(process.argv.slice(2)).then(
  (code) => {
    process.exit(code);
  },
  (err: unknown) => {
    process.stderr.write(`unexpected error: ${(err as Error)?.stack ?? String(err)}\n`);
    process.exit(1);
  },
);
