/**
 * `npm run bench -- standby`: the memory of a replica that holds no feed. Its coordination is on
 * against the Kubernetes Lease simulator, where every feed's Lease is held by a live peer; it
 * watches the Leases and pulls nothing. Prints its RSS (and peak RSS) every
 * BENCH_STANDBY_EVERY_SECS (default 15) and after BENCH_STANDBY_SECS (default 120).
 *
 * The replica runs what the image ships: the build (bench/build.ts buildInto) into a scratch
 * folder under .tmp/, started with plain `node`. BENCH_STANDBY_TSX=1 runs the TypeScript sources
 * through tsx instead (tsx's own compiler and caches then count too).
 */
import { readFileSync, rmSync } from 'node:fs';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { standbyHolds, startStandby, stopStandby } from '../test/helpers/standby.ts';
import { buildInto } from './build.ts';

export interface StandbyBenchResult {
  runtime: 'build' | 'tsx';
  settleSeconds: number;
  rssMiB: number;
  peakRssMiB: number;
  feedsHeld: number;
}

/** VmRSS and VmHWM of a process, in MiB (Linux /proc). */
function rssOf(pid: number): { rss: number; hwm: number } {
  const status = readFileSync(`/proc/${pid}/status`, 'utf8');
  const kib = (key: string) => Number(new RegExp(`^${key}:\\s+(\\d+) kB`, 'm').exec(status)?.[1] ?? NaN);
  return { rss: kib('VmRSS') / 1024, hwm: kib('VmHWM') / 1024 };
}

export async function runStandbyBench(): Promise<StandbyBenchResult> {
  const settleMs = Number(process.env.BENCH_STANDBY_SECS ?? 120) * 1000;
  const everyMs = Number(process.env.BENCH_STANDBY_EVERY_SECS ?? 15) * 1000;
  const tsx = process.env.BENCH_STANDBY_TSX === '1';
  const out = tsx ? undefined : buildInto([]);
  try {
    const s = await startStandby(out ? { nodeArgs: [], main: path.join(out, 'plugin', 'main.js') } : {});
    const pid = s.child.pid!;
    const t0 = Date.now();
    let m = rssOf(pid);
    try {
      process.stdout.write(`standby replica (${tsx ? 'TypeScript sources through tsx' : 'the build, plain node'}), every Lease held by a peer; settling ${settleMs / 1000} s\n`);
      for (;;) {
        m = rssOf(pid);
        const at = Math.round((Date.now() - t0) / 1000);
        process.stdout.write(`  ${String(at).padStart(4)} s: rss ${m.rss.toFixed(1)} MiB (peak ${m.hwm.toFixed(1)} MiB), feeds held ${standbyHolds(s).length}\n`);
        if (Date.now() - t0 >= settleMs) break;
        await new Promise((r) => setTimeout(r, Math.min(everyMs, settleMs - (Date.now() - t0))));
      }
      const result: StandbyBenchResult = {
        runtime: tsx ? 'tsx' : 'build',
        settleSeconds: Math.round((Date.now() - t0) / 1000),
        rssMiB: Math.round(m.rss * 10) / 10,
        peakRssMiB: Math.round(m.hwm * 10) / 10,
        feedsHeld: standbyHolds(s).length,
      };
      process.stdout.write(
        `standby after ${result.settleSeconds} s: rss ${result.rssMiB} MiB (${((m.rss * 1048576) / 1e6).toFixed(1)} MB), peak ${result.peakRssMiB} MiB, feeds held ${result.feedsHeld}\n`,
      );
      return result;
    } finally {
      await stopStandby(s);
    }
  } finally {
    if (out) rmSync(out, { recursive: true, force: true });
  }
}

const self = fileURLToPath(import.meta.url);
if (process.argv[1] && path.resolve(process.argv[1]) === self) await runStandbyBench();
