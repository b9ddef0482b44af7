/**
 * Metrics that only a source can count (requests per TAP pool, POD reconnects and 409s). Sources
 * report through `ctx.metrics`; the values are kept here and exported at scrape time by
 * telemetry/http.ts. Every name is declared, by the input's descriptor or below for the metrics
 * every type reports: an undeclared name is a bug.
 */
import type { SourceMetrics } from '../sources/source.ts';
import type { SourceMetricDecl } from '../sources/descriptor.ts';
import { registryGeneration, sourceDescriptors } from '../sources/registry.ts';

/** Reported by every input type that collects the past (telemetry/progress.ts). */
const COMMON_METRICS: Readonly<Record<string, SourceMetricDecl>> = {
  backfill_active: { type: 'gauge', help: '1 while the service collects the past (TAP windows behind live, a PoD archive replay owed), 0 when live', labels: ['service'] },
  backfill_position_timestamp_seconds: { type: 'gauge', help: 'Event time the service has collected up to (TAP: collected_to; PoD: the owed replay position, or where it went live)', labels: ['service'] },
  backfill_remaining_seconds: { type: 'gauge', help: 'Event time still to collect before the service is live (0 when live)', labels: ['service'] },
  backfill_eta_seconds: { type: 'gauge', help: 'Estimated wall-clock seconds until the service is live, from the observed rate (0 when live, -1 while unknown)', labels: ['service'] },
};

/** A declared metric and the input types that report it (undefined: every type). */
export interface DeclaredSourceMetric extends SourceMetricDecl {
  name: string;
  sources?: readonly string[];
}

/** Every source metric: each registered input type's own (in registry order), then the common ones. */
export function sourceMetricDecls(): DeclaredSourceMetric[] {
  const own = sourceDescriptors().flatMap((d) => Object.entries(d.metrics).map(([name, m]) => ({ ...m, name, sources: [d.type] })));
  return [...own, ...Object.entries(COMMON_METRICS).map(([name, m]) => ({ ...m, name }))];
}

let byName: { generation: number; decls: Map<string, DeclaredSourceMetric> } | undefined;

function declOf(name: string): DeclaredSourceMetric | undefined {
  if (byName?.generation !== registryGeneration()) {
    byName = { generation: registryGeneration(), decls: new Map(sourceMetricDecls().map((m) => [m.name, m])) };
  }
  return byName.decls.get(name);
}

export type SourceMetricName = string;

export interface SourceMetricValue {
  labels: Record<string, string>;
  value: number;
}

export class SourceMetricsStore {
  readonly #values = new Map<string, Map<string, SourceMetricValue>>();

  forInput(inputId: string): SourceMetrics {
    return {
      set: (name, labels, value) => this.#put(name, { input_id: inputId, ...labels }, () => value),
      inc: (name, labels, by = 1) => this.#put(name, { input_id: inputId, ...labels }, (prev) => prev + by),
    };
  }

  #put(name: string, labels: Record<string, string>, next: (prev: number) => number): void {
    if (!declOf(name)) throw new Error(`undeclared source metric "${name}" (declare it in its input's descriptor, sources/<vendor>/index.ts)`);
    let series = this.#values.get(name);
    if (!series) this.#values.set(name, (series = new Map()));
    const key = JSON.stringify(Object.entries(labels).sort(([a], [b]) => a.localeCompare(b)));
    const prev = series.get(key);
    series.set(key, { labels, value: next(prev?.value ?? 0) });
  }

  values(name: SourceMetricName): SourceMetricValue[] {
    return [...(this.#values.get(name)?.values() ?? [])];
  }

  /**
   * The values of a counter with the zero series of its known labels filled in, for each
   * (input, source type, service) given.
   */
  withZeros(name: SourceMetricName, services: Iterable<{ input: string; source: string; service: string }>): SourceMetricValue[] {
    const decl = declOf(name);
    if (!decl) return this.values(name);
    const out = new Map<string, SourceMetricValue>();
    const keyOf = (labels: Record<string, string>) => JSON.stringify(Object.entries(labels).sort(([a], [b]) => a.localeCompare(b)));
    const known = decl.known ?? {};
    const open = decl.labels.filter((l) => l !== 'service' && !(l in known));
    if (decl.type === 'counter' && open.length === 0) {
      for (const s of services) {
        if (decl.sources && !decl.sources.includes(s.source)) continue;
        let combos: Array<Record<string, string>> = [{ input_id: s.input, ...(decl.labels.includes('service') ? { service: s.service } : {}) }];
        for (const [label, values] of Object.entries(known)) combos = combos.flatMap((c) => values.map((v) => ({ ...c, [label]: v })));
        for (const labels of combos) out.set(keyOf(labels), { labels, value: 0 });
      }
    }
    for (const v of this.values(name)) out.set(keyOf(v.labels), v);
    return [...out.values()];
  }
}
