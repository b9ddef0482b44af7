/** Runs the CLI as a user would (a child process on the TypeScript sources). */
import { spawn, spawnSync } from 'node:child_process';
import { writeFileSync } from 'node:fs';
import path from 'node:path';
import { fileURLToPath } from 'node:url';

export const MAIN = fileURLToPath(new URL('../../plugin/main.ts', import.meta.url));
/** tsx by its resolved URL, so the CLI also starts with a `cwd` outside the repository. */
const TSX = import.meta.resolve('tsx');

export interface CliResult {
  status: number | null;
  stdout: string;
  stderr: string;
}

export function runCli(args: string[], opts: { env?: NodeJS.ProcessEnv; cwd?: string; timeoutMs?: number } = {}): CliResult {
  const r = spawnSync(process.execPath, ['--import', TSX, MAIN, ...args], {
    encoding: 'utf8',
    env: { ...process.env, ...opts.env },
    cwd: opts.cwd,
    timeout: opts.timeoutMs ?? 60_000,
  });
  return { status: r.status, stdout: r.stdout, stderr: r.stderr };
}

/** Starts the CLI and returns the child, for long-running commands. */
export function startCli(args: string[], opts: { env?: NodeJS.ProcessEnv; cwd?: string } = {}) {
  return spawn(process.execPath, ['--import', TSX, MAIN, ...args], {
    env: { ...process.env, ...opts.env },
    cwd: opts.cwd,
    stdio: ['ignore', 'pipe', 'pipe'],
  });
}

/** Like runCli, without blocking the event loop (for tests that serve the CLI from this process). */
export function runCliAsync(args: string[], opts: { env?: NodeJS.ProcessEnv; cwd?: string } = {}): Promise<CliResult> {
  return new Promise((resolve) => {
    const child = startCli(args, opts);
    let stdout = '';
    let stderr = '';
    child.stdout!.on('data', (c) => (stdout += c));
    child.stderr!.on('data', (c) => (stderr += c));
    child.on('close', (status) => resolve({ status, stdout, stderr }));
  });
}

/**
 * Writes `<dir>/c.yaml`: one PoD input (id 100002, message and maillog), the stdout output and
 * `stateDir` (default `<dir>/state`), the config the `state` command tests share.
 */
export function writeStateConfig(dir: string, stateDir = path.join(dir, 'state')): { file: string; stateDir: string } {
  const file = path.join(dir, 'c.yaml');
  writeFileSync(
    file,
    `globals: { state_dir: ${stateDir} }
output: { type: stdout }
inputs:
  proofpoint_on_demand:
    id: "100002"
    credentials: { cluster_id: c, api_key: k-123456 }
    services: { message: {}, maillog: {} }
`,
  );
  return { file, stateDir };
}
