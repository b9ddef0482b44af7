/**
 * The Dockerfile's recipe, run without Docker (none on these machines): its instructions are
 * read and carried out in a clean temporary directory, one folder per stage standing in for the
 * stage's filesystem. The build context is the repository's tracked files (`git ls-files`)
 * filtered by .dockerignore; COPY copies, RUN runs the npm commands (and emulates mkdir/chown
 * under the stage's folder; any other command fails the test until it is taught here), and the
 * runtime stage's ENTRYPOINT + CMD start the sidecar, as the image's non-root user when the test
 * runs as root, with a config "mounted" where CMD expects it. /healthz must answer 200, the
 * HEALTHCHECK command must pass, a record must flow from the TAP simulator, and SIGTERM must end
 * the process with exit code 0.
 *
 * npm ci runs twice (~30 s with a warm npm cache). SKIP_DOCKERFILE_TEST=1 skips it for fast local
 * runs; CI runs it.
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { spawn, spawnSync } from 'node:child_process';
import { chmodSync, chownSync, cpSync, existsSync, mkdirSync, mkdtempSync, readFileSync, rmSync, statSync, writeFileSync } from 'node:fs';
import http from 'node:http';
import net from 'node:net';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { startTapSimulator } from '../../plugin/simulator/tap/index.ts';
import { freePort } from '../helpers/net.ts';

const ROOT = fileURLToPath(new URL('../../', import.meta.url));
const DOCKERFILE = path.join(ROOT, 'Dockerfile');
/** The uid/gid of the official node image's `node` user. */
const IMAGE_USERS: Record<string, number> = { node: 1000, root: 0 };

interface Instruction {
  op: string;
  args: string;
  line: number;
}

interface Stage {
  from: string;
  name: string;
  instructions: Instruction[];
}

/** Splits a Dockerfile into stages of instructions (continuations joined, comments dropped). */
function parseDockerfile(text: string): Stage[] {
  const stages: Stage[] = [];
  const lines = text.split('\n');
  for (let i = 0; i < lines.length; i++) {
    let line = lines[i]!;
    const start = i + 1;
    if (/^\s*(#.*)?$/.test(line)) continue;
    while (/\\\s*$/.test(line) && i + 1 < lines.length) {
      line = line.replace(/\\\s*$/, ' ');
      let next = lines[++i]!;
      while (/^\s*#/.test(next) && i + 1 < lines.length) next = lines[++i]!;
      line += next.trim();
    }
    const m = /^\s*([A-Za-z]+)\s+(.*)$/.exec(line);
    if (!m) throw new Error(`Dockerfile:${start}: cannot read "${line}"`);
    const op = m[1]!.toUpperCase();
    const args = m[2]!.trim();
    if (op === 'FROM') {
      const f = /^(\S+)(?:\s+AS\s+(\S+))?$/i.exec(args);
      if (!f) throw new Error(`Dockerfile:${start}: FROM ${args}`);
      stages.push({ from: f[1]!, name: f[2] ?? String(stages.length), instructions: [] });
      continue;
    }
    if (stages.length === 0) throw new Error(`Dockerfile:${start}: ${op} before FROM`);
    stages.at(-1)!.instructions.push({ op, args, line: start });
  }
  return stages;
}

/** `--flag=value` options in front of an instruction's arguments. */
function splitFlags(args: string): { flags: Record<string, string>; rest: string } {
  const flags: Record<string, string> = {};
  let rest = args;
  for (let m = /^--([a-z-]+)=(\S+)\s+/.exec(rest); m; m = /^--([a-z-]+)=(\S+)\s+/.exec(rest)) {
    flags[m[1]!] = m[2]!;
    rest = rest.slice(m[0].length);
  }
  return { flags, rest };
}

function exec(args: string): string[] {
  const v: unknown = JSON.parse(args);
  assert.ok(Array.isArray(v) && v.every((x) => typeof x === 'string'), `exec form expected: ${args}`);
  return v as string[];
}

/** `.dockerignore` semantics enough for ours: `**`, `*`, `!` exceptions, the last match wins. */
function ignoredBy(rules: string[]): (file: string) => boolean {
  const compiled = rules
    .map((r) => r.trim())
    .filter((r) => r !== '' && !r.startsWith('#'))
    .map((r) => {
      const negate = r.startsWith('!');
      const pat = (negate ? r.slice(1) : r).replace(/^\/+/, '');
      const re = pat
        .split('/')
        .map((seg) => (seg === '**' ? '.*' : seg.replace(/[.+?^${}()|[\]\\]/g, '\\$&').replace(/\*/g, '[^/]*')))
        .join('/');
      return { negate, re: new RegExp(`^${re}(/.*)?$`) };
    });
  return (file) => {
    let ignored = false;
    for (const { negate, re } of compiled) if (re.test(file)) ignored = !negate;
    return ignored;
  };
}

function getStatus(url: string): Promise<number> {
  return new Promise((resolve) => {
    http
      .get(url, { timeout: 2000 }, (res) => {
        res.resume();
        resolve(res.statusCode ?? 0);
      })
      .on('error', () => resolve(0))
      .on('timeout', function (this: http.ClientRequest) {
        this.destroy();
        resolve(0);
      });
  });
}

const stages = parseDockerfile(readFileSync(DOCKERFILE, 'utf8'));
const ops = (s: Stage, op: string) => s.instructions.filter((i) => i.op === op);

test('Dockerfile: multi-stage on node:20-slim, dist and production dependencies only, non-root, health check', () => {
  assert.equal(stages.length, 2, 'a build stage and a runtime stage');
  const [build, runtime] = stages as [Stage, Stage];
  for (const s of stages) assert.equal(s.from, 'node:20-slim', `${s.name}: the official Node 20 slim image`);
  const buildRuns = ops(build, 'RUN').map((i) => splitFlags(i.args).rest);
  assert.ok(buildRuns.some((r) => /^npm ci\b/.test(r) && !r.includes('--omit')), 'build: npm ci with dev dependencies');
  assert.ok(buildRuns.some((r) => r === 'npm run build'), 'build: npm run build');
  const runtimeRuns = ops(runtime, 'RUN').map((i) => splitFlags(i.args).rest);
  assert.ok(runtimeRuns.some((r) => /^npm ci\b.*--omit=dev/.test(r)), 'runtime: production dependencies only');
  const copies = ops(runtime, 'COPY').map((i) => splitFlags(i.args));
  assert.deepEqual(
    copies.filter((c) => c.flags.from).map((c) => [c.flags.from, c.rest]),
    [[build.name, '/app/dist ./dist']],
    'runtime takes only dist/ from the build stage',
  );
  for (const c of copies.filter((c) => !c.flags.from)) assert.match(c.rest, /^package\.json package-lock\.json \.\/$/, `runtime copies no sources: ${c.rest}`);
  const user = ops(runtime, 'USER').at(-1)?.args;
  assert.ok(user && !['root', '0'].includes(user.split(':')[0]!), `runs as a non-root user: ${user}`);
  assert.ok(ops(runtime, 'VOLUME').some((v) => v.args.includes('/var/lib/proofpoint-sidecar')), 'state on a volume');
  const hc = ops(runtime, 'HEALTHCHECK')[0]?.args ?? '';
  const hcCmd = exec(hc.slice(hc.indexOf('CMD') + 3).trim());
  assert.equal(hcCmd[0], 'node', 'health check with node (no curl in slim images)');
  assert.ok(ops(runtime, 'ENV').some((e) => e.args.includes('PPS_HEALTH_URL=http://127.0.0.1:2021/healthz')), 'the check asks /healthz on the default listen address');
  assert.equal(ops(runtime, 'STOPSIGNAL')[0]?.args, 'SIGTERM');
  assert.deepEqual(exec(ops(runtime, 'ENTRYPOINT')[0]!.args), ['node', 'dist/plugin/main.js']);
  assert.deepEqual(exec(ops(runtime, 'CMD')[0]!.args), ['run', '--config', '/etc/proofpoint-sidecar/config.yaml']);
});

const skip = process.env.SKIP_DOCKERFILE_TEST === '1' ? 'SKIP_DOCKERFILE_TEST=1: skipping the Dockerfile build-and-start run (CI runs it)' : false;

test('Dockerfile: its build and start steps, run in a clean directory, give a sidecar that answers /healthz and stops cleanly on SIGTERM', { skip, timeout: 240_000 }, async (t) => {
  const work = mkdtempSync(path.join(tmpdir(), 'pps-dockerfile-'));
  chmodSync(work, 0o755);
  const tap = await startTapSimulator();
  t.after(async () => {
    await tap.close();
    rmSync(work, { recursive: true, force: true });
  });

  // The build context: tracked files, as a fresh clone has them, minus .dockerignore.
  const context = path.join(work, 'context');
  const ignored = ignoredBy(existsSync(path.join(ROOT, '.dockerignore')) ? readFileSync(path.join(ROOT, '.dockerignore'), 'utf8').split('\n') : []);
  const tracked = spawnSync('git', ['ls-files', '-z'], { cwd: ROOT, encoding: 'utf8' }).stdout.split('\0').filter(Boolean);
  assert.ok(tracked.includes('package.json'), 'git ls-files lists the repository');
  for (const f of tracked) {
    if (ignored(f) || !existsSync(path.join(ROOT, f))) continue;
    mkdirSync(path.dirname(path.join(context, f)), { recursive: true });
    cpSync(path.join(ROOT, f), path.join(context, f));
  }

  const asRoot = process.getuid?.() === 0;
  const stageRoot = (s: Stage) => path.join(work, `stage-${s.name}`);
  const inStage = (s: Stage, p: string) => path.join(stageRoot(s), p);
  const state = new Map<string, { cwd: string; env: Record<string, string>; user: string }>();

  for (const stage of stages) {
    mkdirSync(stageRoot(stage), { recursive: true, mode: 0o755 });
    const st = { cwd: '/', env: {} as Record<string, string>, user: 'root' };
    state.set(stage.name, st);
    for (const ins of stage.instructions) {
      const where = `Dockerfile:${ins.line} ${ins.op}`;
      const { flags, rest } = splitFlags(ins.args);
      switch (ins.op) {
        case 'ENV':
          for (const m of rest.matchAll(/([A-Za-z_][A-Za-z0-9_]*)=(\S+)/g)) st.env[m[1]!] = m[2]!;
          break;
        case 'WORKDIR':
          st.cwd = path.posix.resolve(st.cwd, rest);
          mkdirSync(inStage(stage, st.cwd), { recursive: true, mode: 0o755 });
          break;
        case 'COPY': {
          const parts = rest.startsWith('[') ? exec(rest) : rest.split(/\s+/);
          const dest = path.posix.resolve(st.cwd, parts.at(-1)!);
          const srcs = parts.slice(0, -1);
          for (const src of srcs) {
            const from = flags.from ? inStage(stages.find((s) => s.name === flags.from)!, src) : path.join(context, src);
            assert.ok(existsSync(from), `${where}: ${src} exists in ${flags.from ? `stage ${flags.from}` : 'the build context (check .dockerignore)'}`);
            const target = parts.at(-1)!.endsWith('/') || srcs.length > 1 ? path.posix.join(dest, path.posix.basename(src)) : dest;
            mkdirSync(path.dirname(inStage(stage, target)), { recursive: true, mode: 0o755 });
            cpSync(from, inStage(stage, target), { recursive: true });
          }
          break;
        }
        case 'RUN':
          for (const cmd of rest.split('&&').map((c) => c.trim())) {
            const words = cmd.split(/\s+/);
            if (words[0] === 'npm') {
              const r = spawnSync('npm', words.slice(1), {
                cwd: inStage(stage, st.cwd),
                env: { ...process.env, ...st.env, npm_config_update_notifier: 'false' },
                encoding: 'utf8',
                timeout: 150_000,
              });
              const hint = /in sync|Missing: .* from lock file/.test(r.stderr) ? '\n(package-lock.json does not satisfy `npm ci`: regenerate or complete it)' : '';
              assert.equal(r.status, 0, `${where} ${cmd} failed:\n${r.stdout}\n${r.stderr.slice(-3000)}${hint}`);
            } else if (words[0] === 'mkdir') {
              for (const p of words.slice(1).filter((w) => !w.startsWith('-'))) mkdirSync(inStage(stage, p), { recursive: true, mode: 0o755 });
            } else if (words[0] === 'chown') {
              const uid = IMAGE_USERS[words[1]!.split(':')[0]!];
              assert.ok(uid !== undefined, `${where}: unknown user in "${cmd}"`);
              // Outside a container only root may give files away; otherwise the test runs as the owner already.
              if (asRoot) for (const p of words.slice(2)) chownSync(inStage(stage, p), uid, uid);
            } else {
              assert.fail(`${where}: the test does not know how to run "${cmd}"; teach test/deploy/dockerfile.test.ts`);
            }
          }
          break;
        case 'USER':
          st.user = rest;
          break;
        default:
          break; // VOLUME, HEALTHCHECK, STOPSIGNAL, ENTRYPOINT, CMD, EXPOSE, LABEL: read below.
      }
    }
  }

  const runtime = stages.at(-1)!;
  const rt = state.get(runtime.name)!;
  const app = inStage(runtime, rt.cwd);
  assert.ok(existsSync(path.join(app, 'dist/plugin/main.js')), 'dist/plugin/main.js in the runtime stage');
  assert.ok(!existsSync(path.join(app, 'plugin')), 'no TypeScript sources in the runtime stage');
  for (const dev of ['typescript', 'tsx', '@fluent-org/logger', '@types/node']) {
    assert.ok(!existsSync(path.join(app, 'node_modules', dev)), `no dev dependency ${dev} in the runtime stage`);
  }

  // The "mounted" config: stdout output, health on a free port, TAP from the simulator.
  const port = await freePort();
  const volume = inStage(runtime, '/var/lib/proofpoint-sidecar');
  const cmd = exec(ops(runtime, 'CMD')[0]!.args);
  const configPath = cmd[cmd.indexOf('--config') + 1]!;
  const start = new Date(Date.now() - 3600_000).toISOString();
  mkdirSync(path.dirname(inStage(runtime, configPath)), { recursive: true, mode: 0o755 });
  writeFileSync(
    inStage(runtime, configPath),
    [
      'globals:',
      `  state_dir: ${JSON.stringify(volume)}`,
      `  http: { listen: "127.0.0.1:${port}" }`,
      '  shutdown_timeout_secs: 10',
      'output:',
      '  type: stdout',
      'inputs:',
      '  proofpoint_tap:',
      '    id: "100001"',
      `    override_url_base: ${JSON.stringify(tap.url)}`,
      '    credentials: { username: "${TAP_PRINCIPAL}", password: "${TAP_SECRET}" }',
      '    window_lag_secs: 30',
      '    services:',
      `      messagesDelivered: { start_time_in_utc: ${JSON.stringify(start)}, request_period_in_seconds: 5 }`,
      '',
    ].join('\n'),
    { mode: 0o644 },
  );
  if (asRoot) assert.equal(statSync(volume).uid, IMAGE_USERS[rt.user.split(':')[0]!], 'the state volume belongs to the image user');

  const entry = exec(ops(runtime, 'ENTRYPOINT')[0]!.args);
  assert.equal(entry[0], 'node');
  const args = [...entry.slice(1), ...cmd.map((a) => (a.startsWith('/') ? inStage(runtime, a) : a))];
  const uid = IMAGE_USERS[rt.user.split(':')[0]!];
  const child = spawn(process.execPath, args, {
    cwd: app,
    env: { PATH: process.env.PATH ?? '/usr/bin:/bin', ...rt.env, TAP_PRINCIPAL: tap.credentials.username, TAP_SECRET: tap.credentials.password },
    stdio: ['ignore', 'pipe', 'pipe'],
    ...(asRoot && uid !== undefined ? { uid, gid: uid } : {}),
  });
  let stdout = '';
  let stderr = '';
  child.stdout.on('data', (d) => (stdout += d));
  child.stderr.on('data', (d) => (stderr += d));
  const exited = new Promise<number | null>((r) => child.once('exit', (code) => r(code)));
  t.after(() => {
    if (child.exitCode === null) child.kill('SIGKILL');
  });

  const deadline = Date.now() + 30_000;
  while ((await getStatus(`http://127.0.0.1:${port}/healthz`)) !== 200) {
    assert.equal(child.exitCode, null, `the sidecar exited early:\n${stderr}`);
    assert.ok(Date.now() < deadline, `/healthz did not answer 200 within 30 s:\n${stderr}`);
    await new Promise((r) => setTimeout(r, 200));
  }

  // The image's HEALTHCHECK command, pointed at this port.
  const hc = ops(runtime, 'HEALTHCHECK')[0]!.args;
  const hcCmd = exec(hc.slice(hc.indexOf('CMD') + 3).trim());
  const check = spawnSync(process.execPath, hcCmd.slice(1), {
    env: { ...rt.env, PPS_HEALTH_URL: `http://127.0.0.1:${port}/healthz` },
    encoding: 'utf8',
    timeout: 10_000,
  });
  assert.equal(check.status, 0, `HEALTHCHECK passes: ${check.stderr}`);
  const failing = spawnSync(process.execPath, hcCmd.slice(1), { env: { ...rt.env, PPS_HEALTH_URL: `http://127.0.0.1:${await freePort()}/healthz` }, timeout: 10_000 });
  assert.equal(failing.status, 1, 'HEALTHCHECK fails when nothing answers');

  // Production dependencies are enough to collect: a TAP record reaches stdout.
  const recordDeadline = Date.now() + 60_000;
  while (!stdout.includes('"devo_tag":"mail.proofpoint.tapsiem_v2.messagesdelivered"')) {
    assert.equal(child.exitCode, null, `the sidecar exited:\n${stderr}`);
    assert.ok(Date.now() < recordDeadline, `no record on stdout within 60 s:\n${stderr.slice(-3000)}`);
    await new Promise((r) => setTimeout(r, 250));
  }

  child.kill(ops(runtime, 'STOPSIGNAL')[0]!.args as NodeJS.Signals);
  const code = await Promise.race([exited, new Promise<string>((r) => setTimeout(() => r('timeout'), 20_000))]);
  assert.equal(code, 0, `exit code after SIGTERM:\n${stderr.slice(-3000)}`);
});
