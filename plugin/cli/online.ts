/**
 * `check --online`: verifies credentials and reachability of every enabled service without
 * collecting, and prints one verdict per service.
 *
 * - Inputs: each input's descriptor probes its vendor (sources/tap/probe.ts: one small request;
 *   sources/pod/probe.ts: an archive-mode handshake closed at once).
 * - Coordination (globals.coordination): a read of each feed's Lease, which checks the API server,
 *   the credentials and the Role's `get` (create and update cannot be checked without writing).
 * - Output (forward): a connection as `run` opens it (TCP or unix socket, TLS, the shared_key
 *   handshake when set) and one Forward-mode message with no entries and a `chunk` option.
 *   Fluent Bit's in_forward acknowledges it and appends nothing, so nothing reaches the SIEM (an
 *   empty PackedForward, by contrast, is refused with "could not append logs" and no ack).
 *
 * `--probe` (after these verdicts, opt-in): asks the PoD tenant what the sidecar can only assume,
 * one `PROBE` line per question (pod-probe.ts). Probes only report: the exit code stays the one
 * the verdicts above decide.
 */
import type net from 'node:net';
import type { Config, ForwardOutputConfig } from '../config/schema.ts';
import { ForwardClient, OutboundChunk, forwardOptionsFrom } from '../output/forward/client.ts';
import { newChunkId } from '../output/forward/encoder.ts';
import { scrub } from '../telemetry/secrets.ts';
import type { Verdict } from '../sources/descriptor.ts';
import { enabledInputs } from '../sources/registry.ts';
import { describeProbeError } from '../sources/verdict.ts';
import { feedsOf } from '../coordination/feeds.ts';
import { USER_AGENT } from '../util/user-agent.ts';
import type { ProbeOptions, ProbeSummary } from './pod-probe.ts';

export type { Verdict } from '../sources/descriptor.ts';

/** Probes every enabled service and prints a verdict per service; true when all are fine. */
export async function probeCoordination(config: Config): Promise<Verdict[]> {
  const c = config.globals.coordination;
  if (!c) return [];
  let api;
  try {
    const { createKubernetesLeaseApi } = await import('../coordination/kubernetes.ts');
    api = await createKubernetesLeaseApi(c, { userAgent: USER_AGENT });
  } catch (err) {
    return [{ service: 'kubernetes', ok: false, text: describeProbeError(err) }];
  }
  const out: Verdict[] = [];
  for (const feed of feedsOf(config, c.lease_prefix)) {
    const where = `Lease ${api.namespace}/${feed.lease}`;
    try {
      const lease = await api.get(feed.lease, AbortSignal.timeout(15_000));
      out.push({
        service: feed.id,
        ok: true,
        text: lease
          ? `${where} readable; held by ${lease.holder ?? 'nobody (released)'}`
          : `${where} readable (it does not exist yet; the first replica creates it)`,
      });
    } catch (err) {
      out.push({ service: feed.id, ok: false, text: (err as Error).message });
    }
  }
  return out;
}

/** Runs the PoD probe (`--probe`) and prints its summary line; never fails the check. */
export async function probeOnline(config: Config, out: NodeJS.WritableStream, opts: ProbeOptions): Promise<ProbeSummary> {
  const { probePodTenant } = await import('./pod-probe.ts');
  const summary = await probePodTenant(config, out, opts);
  const c = summary.counts;
  out.write(
    scrub(
      `PROBE summary: ${summary.answers.length} answers, ${c.MATCHES} MATCHES, ${c.DIFFERS} DIFFERS, ${c.INCONCLUSIVE} INCONCLUSIVE ` +
        '(probes never fail the check: they only report)\n',
    ),
  );
  return summary;
}

/** Tag of the output check's message; it carries no record, so no output ever matches anything. */
export const OUTPUT_CHECK_TAG = 'proofpoint_sidecar.check';

/** `[tag, [], {chunk: id}]`: Forward mode, zero entries, asking for an ack. */
function emptyForwardMessage(tag: string, chunkId: string): Buffer {
  const str = (text: string) => {
    const b = Buffer.from(text, 'utf8');
    if (b.length > 255) throw new Error('check tag or chunk id too long');
    return Buffer.concat([b.length < 32 ? Buffer.from([0xa0 | b.length]) : Buffer.from([0xd9, b.length]), b]);
  };
  return Buffer.concat([Buffer.from([0x93]), str(tag), Buffer.from([0x90, 0x81]), str('chunk'), str(chunkId)]);
}

/** A chunk written as an empty Forward-mode message instead of a PackedForward frame. */
class EmptyCheckChunk extends OutboundChunk {
  override writeTo(socket: net.Socket): void {
    socket.write(emptyForwardMessage(this.tag, this.id));
    this.writes++;
  }
}

/**
 * Connects to Fluent Bit as `run` does and waits for the ack of a message without records. The
 * first failure (refused, TLS, handshake, a close before the ack) or the timeout is the verdict:
 * the check does not retry as `run` would.
 */
export async function probeOutput(cfg: ForwardOutputConfig, timeoutMs?: number): Promise<Verdict> {
  const target = (cfg.unix_path !== undefined ? `unix:${cfg.unix_path}` : `${cfg.host}:${cfg.port}`) + (cfg.tls ? ' (TLS)' : '');
  const limitMs = timeoutMs ?? Math.min(cfg.connect_timeout_secs + cfg.ack_timeout_secs, 30) * 1000;
  const handshake = cfg.shared_key === undefined ? '' : cfg.username === undefined ? ', shared_key handshake passed' : ', shared_key and user handshake passed';
  const started = Date.now();
  let client: ForwardClient | undefined;
  const verdict = await new Promise<Verdict>((resolve) => {
    const timer = setTimeout(
      () => resolve({ service: 'forward', ok: false, text: `${target}: no acknowledgement within ${Math.round(limitMs / 1000)} s` }),
      limitMs,
    );
    const settle = (v: Verdict) => {
      clearTimeout(timer);
      resolve(v);
    };
    client = new ForwardClient(forwardOptionsFrom(cfg), {
      events: {
        error: (err) => settle({ service: 'forward', ok: false, text: `error ${err.code}: ${err.message}` }),
        disconnected: ({ error }) => settle({ service: 'forward', ok: false, text: `cannot reach Fluent Bit: ${error.message}` }),
      },
    });
    client.start();
    client.enqueue(
      new EmptyCheckChunk(OUTPUT_CHECK_TAG, newChunkId(), [], 0, () =>
        settle({
          service: 'forward',
          ok: true,
          text: `${target} acknowledged a message without records in ${Date.now() - started} ms${handshake} (nothing was written)`,
        }),
      ),
    );
  });
  client?.close();
  return verdict;
}

export async function checkOnline(config: Config, out: NodeJS.WritableStream): Promise<boolean> {
  const results: Array<{ input: string } & Verdict> = [];
  if (config.output.type === 'forward') results.push({ input: 'output', ...(await probeOutput(config.output)) });
  for (const v of await probeCoordination(config)) results.push({ input: 'coordination', ...v });
  for (const { descriptor, cfg } of enabledInputs(config.inputs)) {
    for (const v of await descriptor.probe(cfg, Date.now())) results.push({ input: descriptor.type, ...v });
  }
  for (const r of results) out.write(scrub(`${r.ok ? 'OK  ' : 'FAIL'} ${r.input}/${r.service}: ${r.text}\n`));
  return results.every((r) => r.ok);
}
