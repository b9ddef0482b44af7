/**
 * Memory sampling for the benchmarks: `process.memoryUsage()` (RSS, V8 heap used and total,
 * external, array buffers) and, on Linux, RSS split into anonymous memory and file-backed pages
 * (/proc/self/status RssAnon, RssFile: LevelDB reads its tables through mmap, and those pages
 * count in RSS but are page cache the kernel can reclaim) every `intervalMs`, summarised per phase
 * as peaks and averages.
 * Phases are either named by the caller (`phase()`) or, with `thirds()`, the first, middle and
 * last third of the run's wall time, which is what "flat" is judged on.
 *
 * BENCH_HEAP_SNAPSHOT=<dir> also writes a V8 heap snapshot at the end of each named phase (slow:
 * the process stops for seconds; figures of a run with snapshots are not comparable).
 */
import { readFileSync } from 'node:fs';
import { writeHeapSnapshot } from 'node:v8';
import path from 'node:path';

export interface MemorySample {
  t: number;
  rss: number;
  heapUsed: number;
  heapTotal: number;
  external: number;
  arrayBuffers: number;
  /** RSS that is anonymous memory / file-backed pages (0 where /proc is not there). */
  rssAnon: number;
  rssFile: number;
}

export interface PhaseMemory {
  phase: string;
  samples: number;
  peakRssMiB: number;
  avgRssMiB: number;
  peakHeapUsedMiB: number;
  peakHeapTotalMiB: number;
  peakExternalMiB: number;
  peakArrayBuffersMiB: number;
  peakRssAnonMiB: number;
  peakRssFileMiB: number;
}

/** RssAnon and RssFile of this process, in bytes. */
function rssSplit(): { rssAnon: number; rssFile: number } {
  try {
    const status = readFileSync('/proc/self/status', 'utf8');
    const kib = (key: string) => Number(new RegExp(`^${key}:\\s+(\\d+) kB`, 'm').exec(status)?.[1] ?? 0) * 1024;
    return { rssAnon: kib('RssAnon'), rssFile: kib('RssFile') + kib('RssShmem') };
  } catch {
    return { rssAnon: 0, rssFile: 0 };
  }
}

const MIB = 1_048_576;

export class MemorySampler {
  readonly #samples: Array<MemorySample & { phase: string }> = [];
  readonly #timer: NodeJS.Timeout;
  #phase = 'start';

  constructor(readonly intervalMs = 200) {
    this.#timer = setInterval(() => this.sample(), intervalMs);
    this.#timer.unref();
    this.sample();
  }

  sample(): MemorySample {
    const m = process.memoryUsage();
    const s = { t: performance.now(), rss: m.rss, heapUsed: m.heapUsed, heapTotal: m.heapTotal, external: m.external, arrayBuffers: m.arrayBuffers, ...rssSplit() };
    this.#samples.push({ ...s, phase: this.#phase });
    return s;
  }

  /** Starts a named phase (the samples from now on belong to it). */
  phase(name: string): void {
    this.sample();
    const dir = process.env.BENCH_HEAP_SNAPSHOT;
    if (dir) writeHeapSnapshot(path.join(dir, `${process.pid}-${this.#phase}.heapsnapshot`));
    this.#phase = name;
  }

  stop(): void {
    clearInterval(this.#timer);
    this.sample();
  }

  /** Peaks per named phase, in the order the phases began. */
  byPhase(): PhaseMemory[] {
    const names = [...new Set(this.#samples.map((s) => s.phase))];
    return names.map((n) => summarise(n, this.#samples.filter((s) => s.phase === n)));
  }

  /** Peaks in the first, middle and last third of the time between `from` and `to` (performance.now()). */
  thirds(from: number, to: number): PhaseMemory[] {
    const span = (to - from) / 3;
    const inRange = this.#samples.filter((s) => s.t >= from && s.t <= to);
    return ['first third', 'middle third', 'last third'].map((name, i) =>
      summarise(name, inRange.filter((s) => s.t >= from + i * span && s.t <= from + (i + 1) * span)),
    );
  }
}

function summarise(phase: string, s: MemorySample[]): PhaseMemory {
  const peak = (k: keyof MemorySample) => Math.round((s.reduce((m, x) => Math.max(m, x[k]), 0) / MIB) * 10) / 10;
  return {
    phase,
    samples: s.length,
    peakRssMiB: peak('rss'),
    avgRssMiB: Math.round((s.reduce((a, x) => a + x.rss, 0) / Math.max(1, s.length) / MIB) * 10) / 10,
    peakHeapUsedMiB: peak('heapUsed'),
    peakHeapTotalMiB: peak('heapTotal'),
    peakExternalMiB: peak('external'),
    peakArrayBuffersMiB: peak('arrayBuffers'),
    peakRssAnonMiB: peak('rssAnon'),
    peakRssFileMiB: peak('rssFile'),
  };
}

/** A table of phases, one line each. */
export function formatPhases(rows: PhaseMemory[], indent = '  '): string {
  const head = `${indent}${'phase'.padEnd(18)} ${'peak RSS'.padStart(9)} ${'avg RSS'.padStart(8)} ${'heap used'.padStart(10)} ${'heap total'.padStart(11)} ${'external'.padStart(9)} ${'arrayBuf'.padStart(9)} ${'RSS anon'.padStart(9)} ${'RSS file'.padStart(9)}  (MiB)`;
  const lines = rows.map(
    (r) =>
      `${indent}${r.phase.padEnd(18)} ${r.peakRssMiB.toFixed(1).padStart(9)} ${r.avgRssMiB.toFixed(1).padStart(8)} ${r.peakHeapUsedMiB.toFixed(1).padStart(10)} ${r.peakHeapTotalMiB.toFixed(1).padStart(11)} ${r.peakExternalMiB.toFixed(1).padStart(9)} ${r.peakArrayBuffersMiB.toFixed(1).padStart(9)} ${r.peakRssAnonMiB.toFixed(1).padStart(9)} ${r.peakRssFileMiB.toFixed(1).padStart(9)}`,
  );
  return [head, ...lines].join('\n');
}
