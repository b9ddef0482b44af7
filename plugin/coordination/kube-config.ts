/**
 * Where the Kubernetes API is and how to authenticate to it: the pod's service account
 * (in-cluster) or a kubeconfig file (`globals.coordination.kubeconfig`).
 *
 * - In-cluster: https://KUBERNETES_SERVICE_HOST:KUBERNETES_SERVICE_PORT, the service account's
 *   token and CA under /var/run/secrets/kubernetes.io/serviceaccount. The kubelet rotates a
 *   projected token by swapping the file, so every file is re-read when its modification time,
 *   size or inode changes (looked at on every request), never cached for the process's life.
 * - Kubeconfig: the current context's cluster (`server`, `certificate-authority[-data]`,
 *   `insecure-skip-tls-verify`, `tls-server-name`), user (`token`, `tokenFile`,
 *   `client-certificate[-data]`, `client-key[-data]`) and namespace. Relative paths are relative to
 *   the kubeconfig's folder. Other ways to authenticate (exec plugins, auth providers, basic auth)
 *   are a config error naming the key.
 * - A plain http:// server is accepted only with `insecure-skip-tls-verify: true`: the token would
 *   cross the network in clear text otherwise.
 */
import { readFileSync, statSync } from 'node:fs';
import path from 'node:path';
import { parse as parseYaml } from 'yaml';
import { ErrorCode, SidecarError } from '../errors.ts';

export const SERVICE_ACCOUNT_DIR = '/var/run/secrets/kubernetes.io/serviceaccount';

/** A value given inline or read from a file; the file is read again once it changed. */
export class Material {
  readonly file?: string;
  #value?: Buffer;
  #stamp = '';

  private constructor(value: Buffer | undefined, file: string | undefined) {
    this.#value = value;
    this.file = file;
  }

  static inline(value: Buffer): Material {
    return new Material(value, undefined);
  }

  static fromFile(file: string): Material {
    return new Material(undefined, file);
  }

  /** The current value; the same Buffer while the file is unchanged. Throws when unreadable. */
  read(): Buffer {
    if (this.file === undefined) return this.#value!;
    const st = statSync(this.file);
    const stamp = `${st.ino}:${st.size}:${st.mtimeMs}`;
    if (stamp !== this.#stamp || this.#value === undefined) {
      this.#value = readFileSync(this.file);
      this.#stamp = stamp;
    }
    return this.#value;
  }
}

export interface KubeEndpoint {
  server: URL;
  /** How the endpoint was found, for messages. */
  source: string;
  ca?: Material;
  cert?: Material;
  key?: Material;
  /** insecure-skip-tls-verify. */
  insecure: boolean;
  servername?: string;
  token?: Material;
  /** The kubeconfig context's namespace. */
  namespace?: string;
}

function configError(message: string): SidecarError {
  return new SidecarError(ErrorCode.CONFIG, message, { exitCode: 2, fatal: true });
}

/** The service account's endpoint; a config error when not in a pod. */
export function inClusterEndpoint(env: NodeJS.ProcessEnv, dir = SERVICE_ACCOUNT_DIR): KubeEndpoint {
  const host = env.KUBERNETES_SERVICE_HOST;
  const port = env.KUBERNETES_SERVICE_PORT;
  if (!host || !port) {
    throw configError(
      'globals.coordination: not running in a Kubernetes pod (KUBERNETES_SERVICE_HOST and KUBERNETES_SERVICE_PORT are not set); set globals.coordination.kubeconfig, or remove globals.coordination to pull every feed here',
    );
  }
  let server: URL;
  try {
    server = new URL(`https://${host.includes(':') ? `[${host}]` : host}:${port}`);
  } catch {
    throw configError(`globals.coordination: KUBERNETES_SERVICE_HOST and KUBERNETES_SERVICE_PORT ("${host}", "${port}") do not form a URL; they are set by Kubernetes in a pod`);
  }
  return {
    server,
    source: 'the pod service account',
    ca: Material.fromFile(path.join(dir, 'ca.crt')),
    token: Material.fromFile(path.join(dir, 'token')),
    insecure: false,
  };
}

type Doc = Record<string, unknown>;
const isDoc = (v: unknown): v is Doc => typeof v === 'object' && v !== null && !Array.isArray(v);

function named(doc: Doc, list: string, name: string, field: string): Doc | undefined {
  const items = Array.isArray(doc[list]) ? (doc[list] as unknown[]) : [];
  const item = items.find((x) => isDoc(x) && x.name === name) as Doc | undefined;
  return item && isDoc(item[field]) ? (item[field] as Doc) : undefined;
}

/** `<key>-data` (base64) or `<key>` (a path, relative to the kubeconfig's folder). */
function material(entry: Doc, key: string, dir: string): Material | undefined {
  const data = entry[`${key}-data`];
  if (typeof data === 'string' && data !== '') return Material.inline(Buffer.from(data, 'base64'));
  const file = entry[key];
  if (typeof file === 'string' && file !== '') return Material.fromFile(path.resolve(dir, file));
  return undefined;
}

const UNSUPPORTED_USER_KEYS = ['exec', 'auth-provider', 'username', 'password'];

function userOf(doc: Doc, name: string | undefined, file: string, dir: string): Pick<KubeEndpoint, 'token' | 'cert' | 'key'> {
  if (name === undefined) return {};
  const user = named(doc, 'users', name, 'user') ?? {};
  for (const k of UNSUPPORTED_USER_KEYS) {
    if (user[k] !== undefined) {
      throw configError(
        `globals.coordination.kubeconfig: "${file}" user "${name}" authenticates with users[].user.${k}, which is not supported; allowed: token, tokenFile, client-certificate[-data] with client-key[-data]`,
      );
    }
  }
  const token =
    typeof user.token === 'string' && user.token !== ''
      ? Material.inline(Buffer.from(user.token))
      : typeof user.tokenFile === 'string' && user.tokenFile !== ''
        ? Material.fromFile(path.resolve(dir, user.tokenFile))
        : undefined;
  return { token, cert: material(user, 'client-certificate', dir), key: material(user, 'client-key', dir) };
}

/** The current context of a kubeconfig file; a config error naming what is missing or refused. */
export function kubeconfigEndpoint(file: string): KubeEndpoint {
  let doc: unknown;
  try {
    doc = parseYaml(readFileSync(file, 'utf8'));
  } catch (err) {
    throw configError(`globals.coordination.kubeconfig: cannot read "${file}": ${(err as Error).message}`);
  }
  if (!isDoc(doc)) throw configError(`globals.coordination.kubeconfig: "${file}" is not a kubeconfig (a YAML mapping with clusters, users and contexts)`);
  const dir = path.dirname(path.resolve(file));
  const contextName = typeof doc['current-context'] === 'string' ? doc['current-context'] : '';
  const context = named(doc, 'contexts', contextName, 'context') ?? {};
  const cluster = typeof context.cluster === 'string' ? named(doc, 'clusters', context.cluster, 'cluster') : undefined;
  if (!cluster || typeof cluster.server !== 'string') throw configError(`globals.coordination.kubeconfig: "${file}" names no current cluster`);
  let server: URL;
  try {
    server = new URL(cluster.server);
  } catch {
    throw configError(`globals.coordination.kubeconfig: "${file}" cluster server "${cluster.server}" is not a URL`);
  }
  const insecure = cluster['insecure-skip-tls-verify'] === true;
  if (server.protocol !== 'https:' && !(server.protocol === 'http:' && insecure)) {
    throw configError(
      `globals.coordination.kubeconfig: "${file}" cluster server ${server.origin} is not https://; allowed: https://, or http:// with insecure-skip-tls-verify: true`,
    );
  }
  return {
    server,
    source: file,
    ca: material(cluster, 'certificate-authority', dir),
    insecure,
    ...(typeof cluster['tls-server-name'] === 'string' ? { servername: cluster['tls-server-name'] } : {}),
    ...userOf(doc, typeof context.user === 'string' ? context.user : undefined, file, dir),
    ...(typeof context.namespace === 'string' && context.namespace !== '' ? { namespace: context.namespace } : {}),
  };
}
