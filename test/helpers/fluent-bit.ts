/**
 * A real Fluent Bit (the binary FLUENT_BIT_BIN names) for end-to-end tests: the shipped
 * fluent-bit/forward-input.yaml, included from a generated main file that adds filesystem
 * storage and a `file` output in `dir`, listening on a free port.
 */
import { spawn, type ChildProcess } from 'node:child_process';
import { writeFileSync } from 'node:fs';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { accepts, freePort, until } from './net.ts';

const INPUT_YAML = fileURLToPath(new URL('../../fluent-bit/forward-input.yaml', import.meta.url));

export interface FluentBit {
  proc: ChildProcess;
  port: number;
  /** Where out_file writes: `<tag>: [<time as seconds.fraction>, {record}]`, one per line. */
  recordsFile: string;
  /** What it printed so far. */
  log(): string;
}

export async function startFluentBit(bin: string, dir: string, o: { flush: number; logLevel: string }): Promise<FluentBit> {
  const port = await freePort();
  const outDir = path.join(dir, 'out');
  const main = path.join(dir, 'fluent-bit.yaml');
  writeFileSync(
    main,
    [
      'service:',
      `  flush: ${o.flush}`,
      `  log_level: ${o.logLevel}`,
      `  storage.path: ${JSON.stringify(path.join(dir, 'storage'))}`,
      'includes:',
      `  - ${JSON.stringify(INPUT_YAML)}`,
      'pipeline:',
      '  outputs:',
      '    - name: file',
      "      match: '*'",
      `      path: ${JSON.stringify(outDir)}`,
      '      file: records.log',
      '      mkdir: true',
      '',
    ].join('\n'),
  );
  let log = '';
  const proc = spawn(bin, ['-c', main], { env: { ...process.env, FORWARD_LISTEN: '127.0.0.1', FORWARD_PORT: String(port) }, stdio: ['ignore', 'pipe', 'pipe'] });
  proc.stdout!.on('data', (d) => (log += d));
  proc.stderr!.on('data', (d) => (log += d));
  await until(async () => {
    if (proc.exitCode !== null) throw new Error(`fluent-bit exited with ${proc.exitCode}:\n${log}`);
    return accepts(port);
  }, 'Fluent Bit to listen', 20_000);
  return { proc, port, recordsFile: path.join(outDir, 'records.log'), log: () => log };
}
