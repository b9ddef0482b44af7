/**
 * Seeded fuzz of the PoD source: fixture events, mutated (truncated, re-typed, bytes flipped,
 * nested deep, huge strings, pretty-printed, times out of range) and random frames, sent over the
 * real WebSocket into the real pipeline and state store. The oracle is this file's own reading of
 * a usable frame (a JSON object with its service's id field and a parsable `ts`). Whatever the
 * frames: no crash, the source never fails, every well-formed event is delivered once (exact
 * repeats, trailing whitespace aside, are one event), every other non-empty frame is dead-lettered.
 *
 *   FUZZ_SEED=<n>     replays a run (the seed is printed)
 *   FUZZ_FRAMES=<n>   frames per service (default 150)
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { readFileSync } from 'node:fs';
import { startPodSimulator } from '../../../plugin/simulator/pod/index.ts';
import { compactJson } from '../../../plugin/sources/pod/identity.ts';
import { parseTimestamp } from '../../../plugin/util/time.ts';
import { MemorySink } from '../../helpers/memory-sink.ts';
import { tmpDir } from '../../helpers/tmp.ts';
import { podConfig, simBase, startSidecar, until } from './harness.ts';

const FIXTURES = new URL('../../../../shared/fixtures/pod/', import.meta.url);
const SERVICES = { message: 'guid', maillog: 'id' } as const;
type Service = keyof typeof SERVICES;

function prng(seed: number): () => number {
  let a = seed >>> 0;
  return () => {
    a = (a + 0x6d2b79f5) >>> 0;
    let t = a;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
}

function fixtures(service: Service): Array<Record<string, unknown>> {
  return readFileSync(new URL(`${service}.ndjson`, FIXTURES), 'utf8')
    .split('\n')
    .filter((l) => l.trim() !== '')
    .map((l) => JSON.parse(l) as Record<string, unknown>);
}

/** What the frame must become: an event (with the record's message), nothing, or a dead letter. */
type Expected = { kind: 'event'; message: string; identity: string } | { kind: 'empty' } | { kind: 'dead' };

function oracle(service: Service, text: string): Expected {
  if (text.trim() === '') return { kind: 'empty' };
  let v: unknown;
  try {
    v = JSON.parse(text);
  } catch {
    return { kind: 'dead' };
  }
  if (v === null || typeof v !== 'object' || Array.isArray(v)) return { kind: 'dead' };
  const o = v as Record<string, unknown>;
  const id = o[SERVICES[service]];
  if (typeof id !== 'string' || id.trim() === '' || id.length > 256) return { kind: 'dead' };
  if (typeof o.ts !== 'string' || parseTimestamp(o.ts) === undefined) return { kind: 'dead' };
  let message = text;
  if (/[\r\n]/.test(text)) {
    try {
      message = JSON.stringify(v);
    } catch {
      message = compactJson(text); // deeper than JSON.stringify can follow (checked against it on the fixtures elsewhere)
    }
  }
  return { kind: 'event', message, identity: text.replace(/[ \t\r\n]+$/, '') };
}

function frames(service: Service, rnd: () => number, n: number): string[] {
  const base = fixtures(service);
  const pick = <T>(xs: readonly T[]): T => xs[Math.floor(rnd() * xs.length)]!;
  const ascii = (len: number) => Array.from({ length: len }, () => String.fromCharCode(32 + Math.floor(rnd() * 95))).join('');
  const out: string[] = [];
  for (let i = 0; i < n; i++) {
    const e: Record<string, unknown> = structuredClone(pick(base));
    e[SERVICES[service]] = `fuzz-${service}-${i}`;
    const good = JSON.stringify(e);
    const mutations: Array<() => string> = [
      () => good,
      () => JSON.stringify(e, null, 2),
      () => good + pick([' ', '\n', '\r\n', '\t  ']),
      () => JSON.stringify({ ...e, big: 'x'.repeat(50_000 + Math.floor(rnd() * 200_000)) }),
      () => JSON.stringify({ ...e, uni: 'é✓😀\u2028\u0000'.repeat(100) }),
      () => {
        const d = 1_000 + Math.floor(rnd() * 60_000);
        return `${good.slice(0, -1)},\n"deep":${'['.repeat(d)}${']'.repeat(d)}}`;
      },
      () => JSON.stringify({ ...e, ts: pick(['1900-01-01T00:00:00.000000+0000', '2300-06-01T12:00:00.5-07:00', '1969-12-31T23:59:59.999999Z']) }),
      () => good.slice(0, Math.floor(rnd() * good.length)),
      () => JSON.stringify({ ...e, [SERVICES[service]]: pick([42, null, '', '   ', ['a'], { a: 1 }, 'x'.repeat(300)]) }),
      () => JSON.stringify({ ...e, ts: pick(['yesterday', '', 1716400000, '2024-02-31T00:00:00Z', '2024-05-22T25:00:00Z', null]) }),
      () => pick(['null', '[]', '[' + good + ']', '"text"', '12', 'true', '{}']),
      () => ascii(1 + Math.floor(rnd() * 200)),
      () => {
        const chars = good.split('');
        for (let k = 0; k < 1 + Math.floor(rnd() * 4); k++) chars[Math.floor(rnd() * chars.length)] = String.fromCharCode(32 + Math.floor(rnd() * 95));
        return chars.join('');
      },
      () => pick(['', ' ', '\n']),
      () => good, // an exact repeat of an earlier frame follows below
    ];
    const text = pick(mutations)();
    out.push(text);
    if (rnd() < 0.05) out.push(text); // the server repeating a frame byte for byte
  }
  return out;
}

test('fuzz: random and mutated frames never crash the PoD source; every well-formed event is delivered once, every other frame dead-lettered', async (t) => {
  const seed = process.env.FUZZ_SEED ? Number(process.env.FUZZ_SEED) : Math.floor(Math.random() * 2 ** 31);
  const perService = Number(process.env.FUZZ_FRAMES ?? 150);
  t.diagnostic(`FUZZ_SEED=${seed} FUZZ_FRAMES=${perService}`);
  const rnd = prng(seed);

  const sim = await startPodSimulator({ ...simBase(), rate: 0, historyMs: 1000 });
  const sink = new MemorySink();
  const sc = await startSidecar({ cfg: podConfig(sim, {}, { message: {}, maillog: {} }), stateDir: tmpDir(), sink });
  t.after(async () => {
    await sc.stop();
    await sim.close();
  });
  await until(() => sim.openSessions('message') === 1 && sim.openSessions('maillog') === 1, 'both live sessions open');

  const want = new Map<Service, { events: Map<string, string>; dead: number }>();
  for (const service of Object.keys(SERVICES) as Service[]) {
    const w = { events: new Map<string, string>(), dead: 0 };
    want.set(service, w);
    for (const text of frames(service, rnd, perService)) {
      const x = oracle(service, text);
      if (x.kind === 'event') w.events.set(x.identity, x.message);
      else if (x.kind === 'dead') w.dead++;
      assert.equal(sim.sendRaw(service, text), 1, 'the frame reached the session');
    }
  }

  const counter = (service: Service) => sc.pipeline.counters().find((c) => c.service === service)!;
  const settled = () =>
    [...want].every(([service, w]) => {
      const c = counter(service);
      return c.sent + c.duplicates >= w.events.size && c.deadLettered >= w.dead;
    });
  await until(settled, `every frame handled (seed ${seed})`, 60_000);
  await new Promise((r) => setTimeout(r, 300)); // anything over the expected counts would show now

  for (const [service, w] of want) {
    const c = counter(service);
    const got = sink.records.filter((r) => r.record.service === service).map((r) => r.record.message as string);
    assert.equal(sc.pipeline.health.get('pod-test', service)?.status, 'ok', `${service} healthy (seed ${seed})`);
    assert.equal(c.deadLettered, w.dead, `${service}: every unusable frame dead-lettered, nothing else (seed ${seed})`);
    assert.equal(got.length, w.events.size, `${service}: each well-formed event delivered once (seed ${seed})`);
    assert.deepEqual([...got].sort(), [...w.events.values()].sort(), `${service}: the messages are the events (seed ${seed})`);
  }
  t.diagnostic(
    [...want].map(([s, w]) => `${s}: ${w.events.size} events, ${w.dead} dead-lettered`).join('; '),
  );
});
