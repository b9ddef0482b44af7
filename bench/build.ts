/**
 * The benchmarks measure what the image runs: the build (plain JavaScript from tsc), started with
 * plain `node` and the V8 flags the Kubernetes manifests give the sidecar. Under tsx the same code
 * costs about 34 MiB more RSS (tsx's compiler and its caches), which is not the product's.
 *
 * BENCH_TSX=1 runs the measured process from the TypeScript sources through tsx instead, to compare
 * with figures taken that way; BENCH_NODE_FLAGS replaces the manifests' V8 flags (empty: none).
 */
import { spawnSync } from 'node:child_process';
import { mkdirSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import path from 'node:path';
import { fileURLToPath } from 'node:url';

export const ROOT = fileURLToPath(new URL('..', import.meta.url));

/** The sidecar container's NODE_OPTIONS in conf/kubernetes/daemonset/daemonset.yaml. */
export function productionNodeFlags(): string[] {
  const override = process.env.BENCH_NODE_FLAGS;
  if (override !== undefined) return override.split(/\s+/).filter(Boolean);
  const manifest = readFileSync(path.join(ROOT, 'conf/kubernetes/daemonset/daemonset.yaml'), 'utf8');
  const m = /- name: NODE_OPTIONS\s*\n\s*value: (.+)/.exec(manifest);
  return m ? m[1]!.trim().split(/\s+/) : [];
}

export interface BuiltBench {
  /** `node` arguments that run `bench/<file>.ts` (the build, or tsx with BENCH_TSX=1). */
  nodeArgs(file: string): string[];
  /** How the measured process runs, for the printed figures. */
  runtime: string;
  dispose(): void;
}

/**
 * Compiles plugin/ and the named bench files (and what they import) into a scratch folder under
 * .tmp/, as tsconfig.build.json builds the image's dist/; returns the folder (remove it when done).
 */
export function buildInto(files: string[]): string {
  mkdirSync(path.join(ROOT, '.tmp'), { recursive: true });
  const out = mkdtempSync(path.join(ROOT, '.tmp', 'bench-build-'));
  const tsconfig = path.join(out, 'tsconfig.json');
  writeFileSync(
    tsconfig,
    JSON.stringify({
      extends: path.join(ROOT, 'tsconfig.build.json'),
      compilerOptions: { rootDir: ROOT, outDir: out },
      include: [path.join(ROOT, 'plugin/**/*.ts'), ...files.map((f) => path.join(ROOT, 'bench', `${f}.ts`))],
    }),
  );
  const tsc = spawnSync(process.execPath, [path.join(ROOT, 'node_modules/typescript/bin/tsc'), '-p', tsconfig], { cwd: ROOT, encoding: 'utf8' });
  if (tsc.status !== 0) {
    rmSync(out, { recursive: true, force: true });
    throw new Error(`building the benchmark failed:\n${tsc.stdout}${tsc.stderr}`);
  }
  return out;
}

/** The named bench files as the image runs code (buildInto), or through tsx with BENCH_TSX=1. */
export function buildBench(files: string[]): BuiltBench {
  const flags = productionNodeFlags();
  if (process.env.BENCH_TSX === '1') {
    return {
      nodeArgs: (file) => [...flags, '--import', 'tsx', path.join(ROOT, 'bench', `${file}.ts`)],
      runtime: `TypeScript sources through tsx, ${flags.join(' ') || 'no V8 flags'}`,
      dispose() {},
    };
  }
  const out = buildInto(files);
  return {
    nodeArgs: (file) => [...flags, path.join(out, 'bench', `${file}.js`)],
    runtime: `the build with plain node, ${flags.join(' ') || 'no V8 flags'}${process.env.BENCH_NODE_FLAGS === undefined ? ' (as conf/kubernetes/)' : ''}`,
    dispose: () => rmSync(out, { recursive: true, force: true }),
  };
}
