/**
 * A real Fluent Bit (the binary FLUENT_BIT_BIN names) for end-to-end tests: the shipped
 * fluent-bit/forward-input.yaml, included from a generated main file that adds filesystem
 * storage and a `file` output in `dir`, listening on a free port. With `security`, the shipped
 * file's commented-out shared_key / self_hostname (and security.users) lines are switched on in
 * a copy, so the example operators copy is the one tested.
 */
import { spawn, type ChildProcess } from 'node:child_process';
import { readFileSync, writeFileSync } from 'node:fs';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { accepts, freePort, until } from './net.ts';

const INPUT_YAML = fileURLToPath(new URL('../../fluent-bit/forward-input.yaml', import.meta.url));

/** The optional handshake lines of the shipped forward input, switched on. */
export interface ForwardSecurity {
  /** in_forward `shared_key` (FORWARD_SHARED_KEY). */
  sharedKey: string;
  /** Also switch on `security.users` with this password (FORWARD_PASSWORD) for its user. */
  password?: string;
}

export interface FluentBit {
  proc: ChildProcess;
  port: number;
  /** With `security`: the self_hostname and the security.users user of the shipped example. */
  selfHostname?: string;
  username?: string;
  /** Where out_file writes: `<tag>: [<time as seconds.fraction>, {record}]`, one per line. */
  recordsFile: string;
  /** What it printed so far. */
  log(): string;
  /** With `httpServer`: the records its inputs took so far (its /api/v1/metrics). */
  inputRecords(): Promise<number>;
}

/** Uncomments one `# <key>: <value>` line of the shipped input; throws if the example lost it. */
function switchOn(yaml: string, key: string): { yaml: string; value: string } {
  const re = new RegExp(`^(\\s*)# (${key.replace('.', '\\.')}): (.*)$`, 'm');
  const m = re.exec(yaml);
  if (!m) throw new Error(`${INPUT_YAML} no longer has a commented-out "${key}:" line to switch on`);
  return { yaml: yaml.replace(re, '$1$2: $3'), value: m[3]! };
}

export async function startFluentBit(
  bin: string,
  dir: string,
  o: {
    flush: number;
    logLevel: string;
    security?: ForwardSecurity;
    /** `null` throws the records away once stored (benchmarks); default `file`. */
    output?: 'file' | 'null';
    /** Serve /api/v1/metrics on a free port (inputRecords()). */
    httpServer?: boolean;
  },
): Promise<FluentBit> {
  const port = await freePort();
  const httpPort = o.httpServer ? await freePort() : undefined;
  const outDir = path.join(dir, 'out');
  const main = path.join(dir, 'fluent-bit.yaml');
  let input = INPUT_YAML;
  const env: Record<string, string> = { FORWARD_LISTEN: '127.0.0.1', FORWARD_PORT: String(port) };
  const extra: Pick<FluentBit, 'selfHostname' | 'username'> = {};
  if (o.security) {
    let yaml = readFileSync(INPUT_YAML, 'utf8');
    let line = switchOn(yaml, 'shared_key');
    line = switchOn(line.yaml, 'self_hostname');
    extra.selfHostname = line.value.trim();
    yaml = line.yaml;
    env.FORWARD_SHARED_KEY = o.security.sharedKey;
    if (o.security.password !== undefined) {
      line = switchOn(yaml, 'security.users');
      extra.username = line.value.trim().split(/\s+/)[0]!;
      yaml = line.yaml;
      env.FORWARD_PASSWORD = o.security.password;
    }
    input = path.join(dir, 'forward-input.yaml');
    writeFileSync(input, yaml);
  }
  writeFileSync(
    main,
    [
      'service:',
      `  flush: ${o.flush}`,
      `  log_level: ${o.logLevel}`,
      `  storage.path: ${JSON.stringify(path.join(dir, 'storage'))}`,
      ...(httpPort ? ['  http_server: on', '  http_listen: 127.0.0.1', `  http_port: ${httpPort}`] : []),
      'includes:',
      `  - ${JSON.stringify(input)}`,
      'pipeline:',
      '  outputs:',
      ...(o.output === 'null'
        ? ['    - name: null', "      match: '*'"]
        : ['    - name: file', "      match: '*'", `      path: ${JSON.stringify(outDir)}`, '      file: records.log', '      mkdir: true']),
      '',
    ].join('\n'),
  );
  let log = '';
  const proc = spawn(bin, ['-c', main], { env: { ...process.env, ...env }, stdio: ['ignore', 'pipe', 'pipe'] });
  proc.stdout!.on('data', (d) => (log += d));
  proc.stderr!.on('data', (d) => (log += d));
  await until(async () => {
    if (proc.exitCode !== null) throw new Error(`fluent-bit exited with ${proc.exitCode}:\n${log}`);
    return accepts(port);
  }, 'Fluent Bit to listen', 20_000);
  const inputRecords = async (): Promise<number> => {
    if (!httpPort) throw new Error('startFluentBit: inputRecords() needs httpServer: true');
    const res = await fetch(`http://127.0.0.1:${httpPort}/api/v1/metrics`);
    const body = (await res.json()) as { input?: Record<string, { records?: number }> };
    return Object.values(body.input ?? {}).reduce((n, i) => n + (i.records ?? 0), 0);
  };
  return { proc, port, ...extra, recordsFile: path.join(outDir, 'records.log'), log: () => log, inputRecords };
}
