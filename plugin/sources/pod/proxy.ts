/**
 * Proxies for the log stream, from the environment as curl reads it: `HTTPS_PROXY` (or
 * `https_proxy`, then `ALL_PROXY`) for wss://, `HTTP_PROXY` for ws://, and `NO_PROXY` (host
 * names, `.domain` / `*.domain` suffixes, `host:port`, IP addresses, `*`). The WebSocket goes
 * through an HTTP CONNECT tunnel; TLS to the log stream is then negotiated end to end and
 * verified as usual, so the proxy never sees the bearer token.
 */
import http from 'node:http';
import https from 'node:https';
import net from 'node:net';
import tls from 'node:tls';
import type { Duplex } from 'node:stream';
import { registerCredentialPair } from '../../telemetry/secrets.ts';

export interface ProxyChoice {
  /** Proxy URL (credentials stripped) for logs. */
  display: string;
  agent: http.Agent;
}

export function proxyFor(target: URL, env: NodeJS.ProcessEnv = process.env): ProxyChoice | undefined {
  const secure = target.protocol === 'wss:' || target.protocol === 'https:';
  const raw = secure
    ? env.HTTPS_PROXY ?? env.https_proxy ?? env.ALL_PROXY ?? env.all_proxy
    : env.HTTP_PROXY ?? env.http_proxy ?? env.ALL_PROXY ?? env.all_proxy;
  if (!raw) return undefined;
  const port = Number(target.port || (secure ? 443 : 80));
  if (bypassed(target.hostname, port, env.NO_PROXY ?? env.no_proxy ?? '')) return undefined;
  const proxy = new URL(/^[a-z][a-z0-9+.-]*:\/\//i.test(raw) ? raw : `http://${raw}`);
  if (proxy.protocol !== 'http:' && proxy.protocol !== 'https:') {
    throw new Error(`unsupported proxy scheme ${proxy.protocol} (only http:// and https:// CONNECT proxies)`);
  }
  const display = `${proxy.protocol}//${proxy.host}`;
  return { display, agent: new TunnelAgent(proxy, secure) };
}

export function bypassed(host: string, port: number, noProxy: string): boolean {
  const h = host.replace(/^\[|\]$/g, '').toLowerCase();
  for (let entry of noProxy.split(/[\s,]+/).filter(Boolean)) {
    entry = entry.toLowerCase();
    if (entry === '*') return true;
    let entryPort: number | undefined;
    const m = /^(.*):(\d+)$/.exec(entry);
    if (m && !entry.includes('::')) {
      entry = m[1]!;
      entryPort = Number(m[2]);
    }
    if (entryPort !== undefined && entryPort !== port) continue;
    entry = entry.replace(/^\*?\./, '.').replace(/^\[|\]$/g, '');
    if (entry.startsWith('.') ? h.endsWith(entry) || h === entry.slice(1) : h === entry || h.endsWith(`.${entry}`)) return true;
  }
  return false;
}

/** An agent whose connections are CONNECT tunnels through an HTTP(S) proxy. */
class TunnelAgent extends http.Agent {
  readonly #proxy: URL;
  readonly #secure: boolean;

  constructor(proxy: URL, secure: boolean) {
    super({ keepAlive: false });
    this.#proxy = proxy;
    this.#secure = secure;
    // https.request refuses an agent whose protocol is not https:.
    (this as { protocol?: string }).protocol = secure ? 'https:' : 'http:';
  }

  // Node's Agent accepts an asynchronous createConnection(options, callback).
  override createConnection(args: http.ClientRequestArgs, callback?: (err: Error | null, s: Duplex) => void): undefined {
    const options = args as http.ClientRequestArgs & tls.ConnectionOptions;
    const cb = callback as (err: Error | null, s?: Duplex) => void;
    const host = String(options.host ?? options.hostname ?? 'localhost');
    const port = Number(options.port ?? (this.#secure ? 443 : 80));
    const authority = `${host.includes(':') ? `[${host}]` : host}:${port}`;
    const headers: Record<string, string> = { host: authority };
    if (this.#proxy.username) {
      const user = decodeURIComponent(this.#proxy.username);
      const pass = decodeURIComponent(this.#proxy.password);
      registerCredentialPair(user, pass);
      headers['proxy-authorization'] = `Basic ${Buffer.from(`${user}:${pass}`).toString('base64')}`;
    }
    const request = (this.#proxy.protocol === 'https:' ? https : http).request({
      host: this.#proxy.hostname.replace(/^\[|\]$/g, ''),
      port: Number(this.#proxy.port || (this.#proxy.protocol === 'https:' ? 443 : 80)),
      method: 'CONNECT',
      path: authority,
      headers,
      agent: false,
      timeout: typeof options.timeout === 'number' ? options.timeout : undefined,
    });
    let done = false;
    const finish = (err: Error | null, s?: Duplex) => {
      if (done) return;
      done = true;
      cb(err, s);
    };
    request.once('connect', (res, socket, head) => {
      if (res.statusCode !== 200) {
        socket.destroy();
        return finish(new Error(`proxy ${this.#proxy.host} refused the tunnel to ${authority}: HTTP ${res.statusCode} ${res.statusMessage ?? ''}`.trim()));
      }
      if (head.length) socket.unshift(head);
      if (!this.#secure) return finish(null, socket);
      const secureSocket = tls.connect({ ...options, socket, servername: options.servername ?? (net.isIP(host) ? undefined : host) });
      finish(null, secureSocket);
    });
    request.once('timeout', () => request.destroy(new Error(`proxy ${this.#proxy.host} did not answer CONNECT in time`)));
    request.once('error', (err) => finish(new Error(`proxy ${this.#proxy.host}: ${err.message}`)));
    request.end();
    return undefined;
  }
}
