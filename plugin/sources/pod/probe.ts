/**
 * `check --online` for input `proofpoint_on_demand`: per service, a handshake closed at once, in
 * ARCHIVE mode (a past hour). A live handshake would move the server's resume point: a running or
 * stopped sidecar's next live session would then resume after whatever the probe was sent, and
 * those events would be lost. A 409 means another session holds the token for that type:
 * reachable, credentials not checked (often the running sidecar).
 */
import { VendorHttpError } from '../../errors.ts';
import type { Verdict } from '../descriptor.ts';
import { describeProbeError } from '../verdict.ts';
import { enabledPodServices, type PodInputConfig } from './config.ts';
import { floorHour, podStreamUrl } from './mode.ts';
import { proxyFor } from './proxy.ts';
import { openSocket } from './socket.ts';
import { podEndpoint } from './source.ts';

const HOUR = 3600_000;

export async function probePod(cfg: PodInputConfig, now = Date.now()): Promise<Verdict[]> {
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
        out.push({ service, ok: false, text: describeProbeError(err) });
      }
    }
  }
  return out;
}
