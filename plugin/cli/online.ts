/**
 * `check --online`: verifies credentials and reachability of every enabled service without
 * collecting, and prints one verdict per service.
 *
 * - TAP: one request for a 30-second window that ended a few minutes ago (the smallest window the
 *   API accepts). It costs one request of the pool's 24 h budget, which a running sidecar cannot
 *   see (its request log is locked): run it while collection is stopped or expect one request less.
 * - POD: a handshake closed at once, in ARCHIVE mode (a past hour). A live handshake would move the
 *   server's resume point: a running or stopped sidecar's next live session would then resume
 *   after whatever the probe was sent, and those events would be lost. A 409 means another session
 *   holds the token for that type: reachable, credentials not checked (often the running sidecar).
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
import { CredentialsError, SidecarError, VendorHttpError } from '../errors.ts';
import { scrub } from '../telemetry/secrets.ts';
import { enabledServices } from '../sources/tap/config.ts';
import { tapClientFor, TAP_PATHS } from '../sources/tap/client.ts';
import { enabledPodServices, podEndpoint } from '../sources/pod/source.ts';
import { openSocket } from '../sources/pod/socket.ts';
import { floorHour, podStreamUrl } from '../sources/pod/mode.ts';
import { proxyFor } from '../sources/pod/proxy.ts';
import { feedsOf } from '../coordination/feeds.ts';
import { USER_AGENT } from '../util/user-agent.ts';
import type { ProbeOptions, ProbeSummary } from './pod-probe.ts';

export type Verdict = { service: string; ok: boolean; text: string };

const HOUR = 3600_000;

export async function probeTap(cfg: NonNullable<Config['inputs']['proofpoint_tap']>, now = Date.now()): Promise<Verdict[]> {
  const names = enabledServices(cfg);
  const path = names.length >= 2 ? TAP_PATHS.all : TAP_PATHS[names[0]!];
  const client = tapClientFor(cfg, { timeoutMs: Math.min(cfg.request_timeout_secs, 60) * 1000 });
  const end = Math.floor((now - cfg.window_lag_secs * 1000 - 60_000) / 1000) * 1000;
  const window = { start: end - 30_000, end };
  let verdict: { ok: boolean; text: string };
  try {
    const answer = await client.fetchWindow(path, window, AbortSignal.timeout(90_000));
    const events = Object.values(answer.arrays).reduce((n, a) => n + (a?.length ?? 0), 0);
    verdict = { ok: true, text: `credentials accepted; ${path} answered ${answer.status} (${events} events in a 30 s test window)` };
  } catch (err) {
    verdict = { ok: false, text: describe(err) };
  } finally {
    await client.close();
  }
  return names.map((service) => ({ service, ...verdict }));
}

export async function probePod(cfg: NonNullable<Config['inputs']['proofpoint_on_demand']>, now = Date.now()): Promise<Verdict[]> {
  const endpoint = podEndpoint(cfg);
  const agent = proxyFor(endpoint)?.agent;
  const since = floorHour(now - 3 * HOUR);
  const out: Verdict[] = [];
  for (const service of enabledPodServices(cfg)) {
    const url = podStreamUrl(endpoint, cfg.credentials.cluster_id, service, { since, to: since + HOUR });
    try {
      const opened = await openSocket({
        url,
        apiKey: cfg.credentials.api_key,
        service,
        handshakeTimeoutMs: cfg.handshake_timeout_secs * 1000,
        maxFrameBytes: cfg.max_frame_bytes,
        perMessageDeflate: cfg.per_message_deflate,
        closeTimeoutMs: 1_000,
        ...(agent ? { agent } : {}),
      });
      opened.release();
      opened.ws.terminate();
      out.push({ service, ok: true, text: 'credentials accepted; the log stream opened a session (closed at once, archive mode)' });
    } catch (err) {
      if (err instanceof VendorHttpError && err.status === 409) {
        out.push({ service, ok: true, text: `reachable, credentials not checked: another session holds the token for ${service} (HTTP 409), often the running sidecar` });
      } else {
        out.push({ service, ok: false, text: describe(err) });
      }
    }
  }
  return out;
}

function describe(err: unknown): string {
  if (err instanceof CredentialsError) return `credentials refused (error ${err.code}): ${err.message}`;
  if (err instanceof SidecarError) return `error ${err.code}: ${err.message}`;
  return `unexpected error: ${(err as Error).message}`;
}

/** Probes every enabled service and prints a verdict per service; true when all are fine. */
export async function probeCoordination(config: Config): Promise<Verdict[]> {
  const c = config.globals.coordination;
  if (!c) return [];
  let api;
  try {
    const { createKubernetesLeaseApi } = await import('../coordination/kubernetes.ts');
    api = await createKubernetesLeaseApi(c, { userAgent: USER_AGENT });
  } catch (err) {
    return [{ service: 'kubernetes', ok: false, text: describe(err) }];
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
  const tap = config.inputs.proofpoint_tap;
  const pod = config.inputs.proofpoint_on_demand;
  if (tap?.enabled) for (const v of await probeTap(tap)) results.push({ input: 'proofpoint_tap', ...v });
  if (pod?.enabled) for (const v of await probePod(pod)) results.push({ input: 'proofpoint_on_demand', ...v });
  for (const r of results) out.write(scrub(`${r.ok ? 'OK  ' : 'FAIL'} ${r.input}/${r.service}: ${r.text}\n`));
  return results.every((r) => r.ok);
}
