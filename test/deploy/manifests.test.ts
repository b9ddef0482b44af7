/**
 * The deployment material under conf/: every YAML document parses, and the invariants that keep a
 * deployment correct hold. Kubernetes, for both the Deployment (conf/kubernetes/*.yaml) and the
 * DaemonSet (conf/kubernetes/daemonset/): the sidecar's probes on the port its config listens on,
 * non-root containers with read-only root filesystems and no capabilities, credentials only by
 * reference to the Secrets of secret.example.yaml, state on volumes that outlive the pod, Fluent
 * Bit given every variable its configuration uses, the Fluent Bit files in each ConfigMap
 * identical to fluent-bit/, the SIGTERM drain inside the grace period. The Deployment: one replica
 * with the Recreate strategy (one active puller per credential). The DaemonSet: a RollingUpdate
 * one node at a time, a Role allowing exactly get/create/update on Leases bound to the pod's
 * ServiceAccount, globals.coordination on, POD_NAME from the downward API, state on hostPath
 * handed to uid 1000 by a root init container with CAP_CHOWN alone. Compose: a shared network
 * namespace, volumes for both states, certificates read-only, the .env example naming every
 * variable. Every sidecar config passes the sidecar's own loader.
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { readdirSync, readFileSync, writeFileSync } from 'node:fs';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { parseAllDocuments } from 'yaml';
import { loadConfigText } from '../../plugin/config/load.ts';
import { modelVariables, variablesIn, yamlModel } from '../helpers/fluent-bit-conf.ts';
import { tmpDir } from '../helpers/tmp.ts';

const CONF = fileURLToPath(new URL('../../conf/', import.meta.url));
const FB_DIR = fileURLToPath(new URL('../../fluent-bit/', import.meta.url));

type Obj = Record<string, any>; // eslint-disable-line @typescript-eslint/no-explicit-any

function yamlFiles(dir: string): string[] {
  return readdirSync(dir, { recursive: true, encoding: 'utf8' })
    .filter((f) => /\.ya?ml$/.test(f))
    .map((f) => path.join(dir, f))
    .sort();
}

function docs(file: string): Obj[] {
  const all = parseAllDocuments(readFileSync(file, 'utf8'), { uniqueKeys: true });
  const list = Array.isArray(all) ? all : [all];
  for (const d of list) assert.deepEqual(d.errors.map((e) => e.message), [], `${file} parses`);
  return list.map((d) => d.toJS() as Obj).filter((d) => d !== null);
}

const K8S = path.join(CONF, 'kubernetes');
/** Every Kubernetes document, with its file relative to conf/kubernetes/. */
const k8s = yamlFiles(K8S).flatMap((f) => docs(f).map((d) => ({ file: path.relative(K8S, f), doc: d })));
const ofKind = (list: Obj[], k: string) => list.filter((d) => d.kind === k);
/** The Secrets of secret.example.yaml: both variants reference them, neither repeats them. */
const secrets = ofKind(k8s.map((d) => d.doc), 'Secret');
const envNames = (c: Obj): string[] => (c.env as Obj[] | undefined)?.map((e) => e.name as string) ?? [];
const envOf = (c: Obj): Record<string, Obj> => Object.fromEntries(((c.env as Obj[] | undefined) ?? []).map((e) => [e.name, e]));
/** A placeholder for every variable a config refers to. */
const placeholders = (names: string[]) => Object.fromEntries(names.map((n) => [n, `placeholder-${n.toLowerCase()}`]));

/**
 * One way of running the pod: the Deployment (conf/kubernetes/*.yaml: one replica pulling every
 * feed) or the DaemonSet (conf/kubernetes/daemonset/: one pod per node, one puller per feed
 * through Leases). The invariants that hold for both are checked for each.
 */
interface Variant {
  name: string;
  /** Files of the variant, relative to conf/kubernetes/. */
  files: string[];
  docs: Obj[];
  workload: Obj;
  podSpec: Obj;
  configMap: Obj;
  container(name: string): Obj;
  /** Whether a volume is where state that must outlive the pod belongs (PVC, hostPath). */
  persistent(volume: Obj): boolean;
}

function variant(name: string, workloadKind: string, inVariant: (file: string) => boolean, persistent: (v: Obj) => boolean): Variant {
  const mine = k8s.filter((d) => inVariant(d.file));
  const list = mine.map((d) => d.doc);
  const workloads = ofKind(list, workloadKind);
  assert.equal(workloads.length, 1, `${name}: one ${workloadKind}`);
  const workload = workloads[0]!;
  const podSpec: Obj = workload.spec?.template?.spec ?? {};
  const configMaps = ofKind(list, 'ConfigMap');
  assert.equal(configMaps.length, 1, `${name}: one ConfigMap`);
  return {
    name,
    files: [...new Set(mine.map((d) => d.file))].sort(),
    docs: list,
    workload,
    podSpec,
    configMap: configMaps[0]!,
    container: (cname: string): Obj => {
      const c = (podSpec.containers as Obj[]).find((c) => c.name === cname);
      assert.ok(c, `${name}: container ${cname}`);
      return c;
    },
    persistent,
  };
}

const SHARED = 'secret.example.yaml';
const deploymentVariant = variant('Deployment', 'Deployment', (f) => !f.includes(path.sep) && f !== SHARED, (v) => Boolean(v.persistentVolumeClaim));
const daemonsetVariant = variant('DaemonSet', 'DaemonSet', (f) => f.startsWith(`daemonset${path.sep}`), (v) => Boolean(v.hostPath));
const variants = [deploymentVariant, daemonsetVariant];
const deployment = deploymentVariant.workload;
const podSpec = deploymentVariant.podSpec;
const container = deploymentVariant.container;

/** The sidecar config in a variant's ConfigMap, loaded by the sidecar's own loader. */
function sidecarConfig(v: Variant) {
  const text = v.configMap.data['config.yaml'] as string;
  const vars = variablesIn(text);
  for (const name of vars) assert.ok(envNames(v.container('sidecar')).includes(name), `${v.name}: the sidecar container sets ${name}`);
  return loadConfigText(text, { env: placeholders(vars) }, `${v.name} configmap config.yaml`).config;
}

test('every YAML document under conf/ parses', () => {
  const files = yamlFiles(CONF);
  assert.ok(files.length >= 6, files.join(', '));
  for (const f of files) assert.ok(docs(f).length > 0, `${f} has a document`);
  for (const d of k8s) assert.ok(d.doc.apiVersion && d.doc.kind && d.doc.metadata?.name, `${d.file}: apiVersion, kind, metadata.name`);
  assert.deepEqual(
    [...new Set(k8s.map((d) => d.file.split(path.sep).join('/')))].sort(),
    [
      'configmap.yaml',
      'daemonset/configmap.yaml',
      'daemonset/daemonset.yaml',
      'daemonset/rbac.yaml',
      'deployment.yaml',
      'pvc.yaml',
      'secret.example.yaml',
    ],
  );
  // Every Kubernetes file belongs to one variant, or is the shared secret.example.yaml.
  const claimed = new Set([...variants.flatMap((v) => v.files), SHARED]);
  assert.deepEqual(k8s.map((d) => d.file).filter((f) => !claimed.has(f)), []);
  // No document names a namespace: `kubectl apply -n` puts everything in one, which the Role, the
  // RoleBinding's subject and the sidecar's Leases rely on.
  for (const d of k8s) assert.equal(d.doc.metadata.namespace, undefined, `${d.file}: ${d.doc.kind} ${d.doc.metadata.name} names no namespace`);
});

test('every sidecar config under conf/ passes the sidecar loader', () => {
  const configs = readdirSync(CONF).filter((f) => /\.example\.ya?ml$/.test(f));
  assert.ok(configs.includes('container.example.yaml'));
  for (const f of configs) {
    const text = readFileSync(path.join(CONF, f), 'utf8');
    const loaded = loadConfigText(text, { env: placeholders(variablesIn(text)), baseDir: CONF }, f);
    assert.ok(loaded.config.globals, f);
  }
});

test('Kubernetes: one replica, Recreate, Fluent Bit and the sidecar in one pod', () => {
  assert.equal(ofKind(k8s.map((d) => d.doc), 'Deployment').length, 1);
  assert.equal(deployment.spec.replicas, 1, 'one active puller per credential');
  assert.equal(deployment.spec.strategy?.type, 'Recreate', 'the old pod stops before the new one pulls');
  const text = readFileSync(path.join(K8S, 'deployment.yaml'), 'utf8');
  assert.match(text, /409/, 'the comments say why: POD answers 409 to a second session');
  assert.match(text, /budget/, '... and TAP would spend its request budget twice');
  assert.deepEqual((podSpec.containers as Obj[]).map((c) => c.name).sort(), ['fluent-bit', 'sidecar']);
  assert.match(container('fluent-bit').image, /^fluent\/fluent-bit:/, 'the official Fluent Bit image');
  assert.deepEqual(deployment.spec.selector.matchLabels, deployment.spec.template.metadata.labels);
  // Without Leases the single replica needs no Kubernetes API access, and does not coordinate.
  assert.equal(podSpec.automountServiceAccountToken, false);
  assert.equal(sidecarConfig(deploymentVariant).globals.coordination, undefined);
});

for (const v of variants) {
  test(`Kubernetes (${v.name}): the sidecar config in the ConfigMap loads, and the probes use its http port`, () => {
    const { podSpec } = v;
    const sidecar = v.container('sidecar');
    const config = sidecarConfig(v);
    const listen = config.globals.http?.listen;
    assert.ok(listen, 'globals.http.listen is set (the probes need it)');
    const [host, port] = [listen.slice(0, listen.lastIndexOf(':')), Number(listen.slice(listen.lastIndexOf(':') + 1))];
    assert.equal(host, '0.0.0.0', 'the kubelet probes the pod IP, not loopback');
    const named = Object.fromEntries((sidecar.ports as Obj[]).map((p) => [p.name, p.containerPort]));
    const probePort = (p: Obj) => (typeof p.httpGet.port === 'string' ? named[p.httpGet.port] : p.httpGet.port);
    assert.equal(sidecar.livenessProbe.httpGet.path, '/healthz');
    assert.equal(sidecar.readinessProbe.httpGet.path, '/readyz');
    assert.equal(probePort(sidecar.livenessProbe), port);
    assert.equal(probePort(sidecar.readinessProbe), port);
    // State on a volume that outlives the pod, at the path the config names; output to Fluent Bit
    // on the pod's loopback.
    const stateMount = (sidecar.volumeMounts as Obj[]).find((m) => m.mountPath === config.globals.state_dir);
    assert.ok(stateMount, `a volume is mounted at state_dir ${config.globals.state_dir}`);
    const stateVolume = (podSpec.volumes as Obj[]).find((vol) => vol.name === stateMount.name);
    assert.ok(stateVolume && v.persistent(stateVolume), `state_dir is on a ${v.name === 'Deployment' ? 'PersistentVolumeClaim' : 'hostPath'}`);
    assert.equal(config.output.type, 'forward');
    const fb = v.container('fluent-bit');
    const fbEnv = Object.fromEntries((fb.env as Obj[]).map((e) => [e.name, e.value]));
    if (config.output.type === 'forward') {
      assert.equal(config.output.host, fbEnv.FORWARD_LISTEN);
      assert.equal(String(config.output.port), fbEnv.FORWARD_PORT);
    }
    // The drain on SIGTERM fits in the grace period; with Leases, so do the final Lease writes.
    const leaseWrites = config.globals.coordination?.renew_deadline_secs ?? 0;
    assert.ok(podSpec.terminationGracePeriodSeconds > config.globals.shutdown_timeout_secs + leaseWrites);
    // The config is mounted where the image's CMD reads it.
    const cfgMount = (sidecar.volumeMounts as Obj[]).find((m) => m.name === 'sidecar-config');
    assert.equal(cfgMount?.mountPath, '/etc/proofpoint-sidecar');
  });

  test(`Kubernetes (${v.name}): the Fluent Bit files in the ConfigMap are fluent-bit/ verbatim, and every variable is set`, () => {
    const { podSpec, configMap } = v;
    const fb = v.container('fluent-bit');
    const cfgVolume = (fb.volumeMounts as Obj[]).find((m) => m.mountPath === '/fluent-bit/etc');
    assert.ok(cfgVolume);
    const items = ((podSpec.volumes as Obj[]).find((vol) => vol.name === cfgVolume.name)?.configMap?.items as Obj[]).map((i) => i.key);
    assert.ok(fb.command.includes('/fluent-bit/etc/fluent-bit.yaml'));
    const dir = tmpDir('pps-configmap-');
    for (const f of items) {
      assert.equal(configMap.data[f], readFileSync(path.join(FB_DIR, f), 'utf8'), `${f} in the ConfigMap equals fluent-bit/${f}`);
      writeFileSync(path.join(dir, f), configMap.data[f]);
    }
    const model = yamlModel(path.join(dir, 'fluent-bit.yaml'));
    assert.ok(model.outputs.some((o) => o.name === 'syslog'), 'the Devo output is mounted');
    const env = Object.fromEntries((fb.env as Obj[]).map((e) => [e.name, e.value]));
    for (const name of modelVariables(model)) assert.ok(env[name] !== undefined, `the fluent-bit container sets ${name}`);
    assert.equal(env.DEVO_PORT, '443', "Devo's load balancers listen on 443");
    // Certificates come from the devo-tls Secret, read-only.
    const certMount = (fb.volumeMounts as Obj[]).find((m) => env.DEVO_TLS_CRT_FILE.startsWith(m.mountPath + '/'));
    assert.ok(certMount?.readOnly, 'certificates mounted read-only');
    const secretName = (podSpec.volumes as Obj[]).find((vol) => vol.name === certMount.name)?.secret?.secretName;
    const secret = secrets.find((s) => s.metadata.name === secretName);
    assert.ok(secret, `Secret ${secretName} exists in secret.example.yaml`);
    for (const k of ['DEVO_TLS_CRT_FILE', 'DEVO_TLS_KEY_FILE', 'DEVO_TLS_CA_FILE']) {
      assert.ok(Object.keys(secret.stringData ?? secret.data).includes(path.basename(env[k])), `${k}: key ${path.basename(env[k])} in ${secretName}`);
    }
    // Fluent Bit's storage on a volume of its own that outlives the pod.
    const storageMount = (fb.volumeMounts as Obj[]).find((m) => env.FLUENT_BIT_STORAGE_PATH.startsWith(m.mountPath));
    const storageVolume = (podSpec.volumes as Obj[]).find((vol) => vol.name === storageMount?.name);
    assert.ok(storageVolume && v.persistent(storageVolume), `Fluent Bit storage on a ${v.name === 'Deployment' ? 'PVC' : 'hostPath'}`);
  });

  test(`Kubernetes (${v.name}): credentials are referenced from Secrets, never inlined`, () => {
    assert.equal(ofKind(v.docs, 'Secret').length, 0, `the Secrets live in ${SHARED} only`);
    for (const c of [...((v.podSpec.initContainers as Obj[] | undefined) ?? []), ...(v.podSpec.containers as Obj[])]) {
      for (const e of (c.env as Obj[] | undefined) ?? []) {
        if (/SECRET|KEY$|PASSWORD|TOKEN|PRINCIPAL|CLUSTER_ID/.test(e.name) && !e.name.endsWith('_FILE')) {
          assert.equal(e.value, undefined, `${c.name}: ${e.name} has no literal value`);
          const ref = e.valueFrom?.secretKeyRef;
          assert.ok(ref, `${c.name}: ${e.name} comes from a Secret`);
          const secret = secrets.find((s) => s.metadata.name === ref.name);
          assert.ok(secret, `Secret ${ref.name} is in secret.example.yaml`);
          assert.ok(ref.key in (secret.stringData ?? secret.data), `${ref.name} has key ${ref.key}`);
        }
      }
    }
    for (const vol of v.podSpec.volumes as Obj[]) {
      if (vol.secret) assert.ok(secrets.some((s) => s.metadata.name === vol.secret.secretName), `Secret ${vol.secret.secretName} is in secret.example.yaml`);
    }
    for (const s of secrets) {
      for (const [k, val] of Object.entries((s.stringData ?? {}) as Record<string, string>)) assert.match(val, /<[^>]+>/, `${s.metadata.name}.${k} is a placeholder`);
    }
    const secretText = readFileSync(path.join(K8S, 'secret.example.yaml'), 'utf8');
    assert.match(secretText, /kubectl create secret/, 'the example says how to create the real Secrets');
  });

  test(`Kubernetes (${v.name}): non-root, read-only root filesystem, no capabilities, resources, volumes that exist`, () => {
    const { podSpec, configMap } = v;
    assert.equal(podSpec.securityContext.runAsNonRoot, true);
    assert.notEqual(podSpec.securityContext.runAsUser, 0);
    const volumes = podSpec.volumes as Obj[];
    for (const c of podSpec.containers as Obj[]) {
      assert.equal(c.securityContext.allowPrivilegeEscalation, false, c.name);
      assert.equal(c.securityContext.readOnlyRootFilesystem, true, c.name);
      assert.ok(c.securityContext.capabilities.drop.includes('ALL'), c.name);
      assert.equal(c.securityContext.capabilities.add, undefined, `${c.name} adds no capability`);
      assert.notEqual(c.securityContext.runAsUser, 0, c.name);
      assert.notEqual(c.securityContext.runAsNonRoot, false, c.name);
      assert.ok(c.resources?.requests?.cpu && c.resources?.requests?.memory, `${c.name}: requests`);
      assert.ok(c.resources?.limits?.memory, `${c.name}: memory limit`);
    }
    for (const c of [...((podSpec.initContainers as Obj[] | undefined) ?? []), ...(podSpec.containers as Obj[])]) {
      for (const m of c.volumeMounts as Obj[]) assert.ok(volumes.some((vol) => vol.name === m.name), `${c.name}: volume ${m.name} declared`);
    }
    assert.equal(v.container('sidecar').resources.limits.memory, '512Mi', 'above the benchmarks\' peak RSS (318-357 MiB)');
    const claims = ofKind(deploymentVariant.docs, 'PersistentVolumeClaim');
    for (const vol of volumes) {
      if (vol.persistentVolumeClaim) assert.ok(claims.some((c) => c.metadata.name === vol.persistentVolumeClaim.claimName), `PVC ${vol.persistentVolumeClaim.claimName} in pvc.yaml`);
      if (vol.configMap) assert.equal(vol.configMap.name, configMap.metadata.name);
    }
    for (const c of claims) assert.deepEqual(c.spec.accessModes, ['ReadWriteOnce']);
  });
}

// --- The DaemonSet: one pod per node, one puller per feed through Leases ---------------------

const ds = daemonsetVariant.workload;
const dsPod = daemonsetVariant.podSpec;
const dsDocs = daemonsetVariant.docs;

test('DaemonSet: one pod per node with Fluent Bit and the sidecar, rolled one node at a time', () => {
  assert.equal(ds.kind, 'DaemonSet');
  assert.equal(ofKind(dsDocs, 'Deployment').length, 0, 'no Deployment in the DaemonSet variant');
  assert.deepEqual((dsPod.containers as Obj[]).map((c) => c.name).sort(), ['fluent-bit', 'sidecar']);
  assert.match(daemonsetVariant.container('fluent-bit').image, /^fluent\/fluent-bit:/);
  assert.equal(daemonsetVariant.container('fluent-bit').image, container('fluent-bit').image, 'the Deployment\'s Fluent Bit');
  assert.equal(daemonsetVariant.container('sidecar').image, container('sidecar').image, 'the Deployment\'s sidecar');
  assert.deepEqual(ds.spec.selector.matchLabels, ds.spec.template.metadata.labels);
  // The DaemonSet never adopts the Deployment's pods (the Deployment's selector is the broader one).
  const dsSelector = Object.entries(ds.spec.selector.matchLabels as Record<string, string>);
  assert.ok(!dsSelector.every(([k, val]) => deployment.spec.template.metadata.labels[k] === val), 'selectors do not overlap');
  // A rolling update stops one node's pod (it releases its Leases on SIGTERM), then starts the new
  // one: never two pods on a node, which would meet on one LevelDB lock and one Fluent Bit buffer.
  assert.equal(ds.spec.updateStrategy?.type, 'RollingUpdate');
  assert.equal(ds.spec.updateStrategy.rollingUpdate?.maxUnavailable, 1);
  assert.ok([undefined, 0, '0%'].includes(ds.spec.updateStrategy.rollingUpdate?.maxSurge), 'maxSurge 0');
  const text = readFileSync(path.join(K8S, 'daemonset', 'daemonset.yaml'), 'utf8');
  for (const why of [/hostPath/, /initContainer|init container/, /maxSurge/, /SIGTERM/, /terminationGracePeriodSeconds/, /[Tt]oleration/]) {
    assert.match(text, why, `the comments explain ${why}`);
  }
  assert.match(text, /do not run both/i, 'the comments say it replaces the Deployment');
});

test('DaemonSet: the Role allows exactly get/create/update on Leases, bound to the pod\'s ServiceAccount in its namespace', () => {
  for (const k of ['ClusterRole', 'ClusterRoleBinding']) assert.equal(ofKind(k8s.map((d) => d.doc), k).length, 0, `no ${k}`);
  const [sas, roles, bindings] = [ofKind(dsDocs, 'ServiceAccount'), ofKind(dsDocs, 'Role'), ofKind(dsDocs, 'RoleBinding')];
  assert.equal(sas.length, 1);
  assert.equal(roles.length, 1);
  assert.equal(bindings.length, 1);
  const [sa, role, binding] = [sas[0]!, roles[0]!, bindings[0]!];
  assert.equal(role.apiVersion, 'rbac.authorization.k8s.io/v1');
  // Exactly one rule, and nothing in it but Leases and the three verbs (no resourceNames either:
  // `create` cannot be limited by name).
  assert.equal((role.rules as Obj[]).length, 1, 'one rule');
  const rule = { ...(role.rules as Obj[])[0]! };
  rule.verbs = [...(rule.verbs as string[])].sort();
  assert.deepEqual(rule, { apiGroups: ['coordination.k8s.io'], resources: ['leases'], verbs: ['create', 'get', 'update'] });
  assert.deepEqual(binding.roleRef, { apiGroup: 'rbac.authorization.k8s.io', kind: 'Role', name: role.metadata.name });
  assert.equal((binding.subjects as Obj[]).length, 1);
  const subject = (binding.subjects as Obj[])[0]!;
  assert.equal(subject.kind, 'ServiceAccount');
  assert.equal(subject.name, sa.metadata.name);
  // A RoleBinding's ServiceAccount subject without a namespace means the binding's own namespace.
  assert.equal(subject.namespace ?? binding.metadata.namespace, sa.metadata.namespace, 'the ServiceAccount in the binding\'s namespace');
  assert.equal(binding.metadata.namespace, role.metadata.namespace);
  // The pod runs as that ServiceAccount, with its token mounted.
  assert.equal(dsPod.serviceAccountName, sa.metadata.name);
  assert.equal(dsPod.automountServiceAccountToken, true);
  assert.notEqual(sa.automountServiceAccountToken, false);
});

test('DaemonSet: the sidecar coordinates through Leases in its own namespace, its identity from the downward API', () => {
  const sidecar = daemonsetVariant.container('sidecar');
  const config = sidecarConfig(daemonsetVariant);
  const coordination = config.globals.coordination;
  assert.ok(coordination, 'globals.coordination is set');
  assert.equal(coordination.type, 'kubernetes');
  // The Leases go where the Role allows them: the pod's own namespace.
  assert.equal(coordination.namespace, undefined, 'coordination.namespace left to the pod\'s own');
  assert.equal(coordination.kubeconfig, undefined, 'the in-cluster service account');
  assert.ok(coordination.renew_deadline_secs < coordination.lease_duration_secs);
  assert.ok(
    dsPod.terminationGracePeriodSeconds > config.globals.shutdown_timeout_secs + coordination.renew_deadline_secs,
    'drain + final Lease writes fit in the grace period',
  );
  const env = envOf(sidecar);
  assert.equal(env.POD_NAME?.valueFrom?.fieldRef?.fieldPath, 'metadata.name', 'POD_NAME from the downward API');
  assert.equal(env.NODE_NAME?.valueFrom?.fieldRef?.fieldPath, 'spec.nodeName', 'NODE_NAME from the downward API');
  // The same limit as the Deployment's sidecar (a replica may end up holding every feed); the
  // request may be lower, since most replicas are standbys (npm run bench -- standby).
  assert.deepEqual(sidecar.resources.limits, container('sidecar').resources.limits);
  const mib = (q: string) => Number(/^(\d+)Mi$/.exec(q)?.[1]);
  assert.ok(mib(sidecar.resources.requests.memory) <= mib(container('sidecar').resources.requests.memory), 'request at most the Deployment\'s');
  assert.ok(mib(sidecar.resources.requests.memory) >= 82, 'request above a standby\'s measured start-up peak (81.1 MiB RSS)');
  assert.equal(env.NODE_OPTIONS?.value, envOf(container('sidecar')).NODE_OPTIONS?.value);
  assert.equal(env.NODE_OPTIONS?.value, '--max-old-space-size=160');
});

test('DaemonSet: state on hostPath, handed to uid 1000 by a root init container with CAP_CHOWN only', () => {
  const volumes = dsPod.volumes as Obj[];
  const byName = (n: string) => volumes.find((vol) => vol.name === n);
  const config = sidecarConfig(daemonsetVariant);
  const stateMount = (daemonsetVariant.container('sidecar').volumeMounts as Obj[]).find((m) => m.mountPath === config.globals.state_dir);
  const fb = daemonsetVariant.container('fluent-bit');
  const storagePath = envOf(fb).FLUENT_BIT_STORAGE_PATH!.value as string;
  const storageMount = (fb.volumeMounts as Obj[]).find((m) => storagePath.startsWith(m.mountPath + '/') || storagePath === m.mountPath);
  assert.deepEqual(byName(stateMount?.name)?.hostPath, { path: '/var/lib/proofpoint-sidecar/state', type: 'DirectoryOrCreate' });
  assert.deepEqual(byName(storageMount?.name)?.hostPath, { path: '/var/lib/proofpoint-sidecar/fluent-bit', type: 'DirectoryOrCreate' });
  assert.ok(!volumes.some((vol) => vol.persistentVolumeClaim), 'no PersistentVolumeClaim: a DaemonSet has no claim per pod');
  const hostPaths = volumes.filter((vol) => vol.hostPath);
  assert.equal(hostPaths.length, 2, 'no other hostPath');

  // One init container, the only one running as root, with nothing but CAP_CHOWN.
  const inits = (dsPod.initContainers as Obj[] | undefined) ?? [];
  assert.equal(inits.length, 1);
  const init = inits[0]!;
  assert.equal(init.securityContext.runAsUser, 0);
  assert.equal(init.securityContext.runAsNonRoot, false, 'overrides the pod\'s runAsNonRoot for this container alone');
  assert.equal(init.securityContext.allowPrivilegeEscalation, false);
  assert.equal(init.securityContext.readOnlyRootFilesystem, true);
  assert.deepEqual(init.securityContext.capabilities, { drop: ['ALL'], add: ['CHOWN'] });
  assert.equal(init.securityContext.privileged, undefined);
  assert.ok(init.resources?.limits?.memory, 'init container: memory limit');
  // It mounts both hostPath volumes and hands each to the containers' uid:gid.
  const script = (init.command as string[]).concat((init.args as string[] | undefined) ?? []).join(' ');
  const owner = `${dsPod.securityContext.runAsUser}:${dsPod.securityContext.runAsGroup}`;
  assert.match(script, new RegExp(`chown ${owner} `), `chown ${owner}`);
  assert.doesNotMatch(script, /chown\s+-R/, 'only the directories, not what uid 1000 wrote in them');
  for (const vol of hostPaths) {
    const m = (init.volumeMounts as Obj[]).find((mm) => mm.name === vol.name);
    assert.ok(m, `the init container mounts ${vol.name}`);
    assert.ok(script.includes(m.mountPath), `the init container chowns ${m.mountPath}`);
  }
});

test('Compose: Fluent Bit and the sidecar share a network namespace, state on volumes, certificates read-only, every variable named in the .env example, Proofpoint credentials for the sidecar only', () => {
  const [compose] = docs(path.join(CONF, 'compose.yaml'));
  const fb = compose!.services['fluent-bit'];
  const sidecar = compose!.services.sidecar;
  assert.match(fb.image, /^fluent\/fluent-bit:/);
  assert.equal(sidecar.network_mode, 'service:fluent-bit');
  const volumes = (s: Obj) => (s.volumes as string[]).map((v) => v.split(':'));
  const named = Object.keys(compose!.volumes);
  assert.ok(volumes(sidecar).some(([src, dst]) => named.includes(src!) && dst === '/var/lib/proofpoint-sidecar'), 'sidecar state on a named volume');
  assert.ok(volumes(fb).some(([src, dst]) => named.includes(src!) && fb.environment.FLUENT_BIT_STORAGE_PATH.startsWith(dst!)), 'Fluent Bit storage on a named volume');
  const certs = volumes(fb).find(([, dst]) => fb.environment.DEVO_TLS_CRT_FILE.startsWith(dst! + '/'));
  assert.equal(certs?.[2], 'ro', 'certificates read-only');
  const cfg = volumes(sidecar).find(([, dst]) => dst === '/etc/proofpoint-sidecar/config.yaml');
  assert.ok(cfg, 'the sidecar config is mounted where the image reads it');
  assert.equal(cfg[2], 'ro');
  const fbConf = volumes(fb).find(([, dst]) => dst === '/fluent-bit/etc');
  assert.equal(path.resolve(CONF, fbConf![0]!), path.resolve(FB_DIR), "Fluent Bit runs the repository's fluent-bit/ files");
  assert.equal(sidecar.env_file, '.env');
  assert.equal(fb.env_file, undefined, 'Fluent Bit does not read .env: it holds the Proofpoint credentials');

  // The .env example names every variable neither container sets itself; Fluent Bit gets each of
  // its variables by name (a literal, or `${VAR:?...}` that Compose fills in from .env).
  const envExample = readFileSync(path.join(CONF, 'compose.env.example'), 'utf8');
  const dotenv = new Set([...envExample.matchAll(/^([A-Z][A-Z0-9_]*)=/gm)].map((m) => m[1]!));
  const model = yamlModel(path.join(FB_DIR, 'fluent-bit.yaml'));
  for (const v of modelVariables(model)) {
    assert.ok(v in fb.environment, `Fluent Bit gets ${v}`);
    const from = /^\$\{([A-Z][A-Z0-9_]*)(?::?[?-][^}]*)?\}$/.exec(String(fb.environment[v]))?.[1];
    if (from !== undefined) assert.ok(dotenv.has(from), `${v} comes from ${from} in the .env example`);
  }
  assert.equal(envExample.match(/^DEVO_PORT=(.*)$/m)?.[1], '443');
  const sidecarConfig = readFileSync(path.resolve(CONF, cfg[0]!), 'utf8');
  const credentials = variablesIn(sidecarConfig);
  assert.ok(credentials.length > 0);
  for (const v of credentials) assert.ok(dotenv.has(v), `the sidecar gets ${v} from .env`);
  const fbEnvText = JSON.stringify(fb.environment);
  for (const v of credentials) assert.ok(!fbEnvText.includes(v), `${v} is the sidecar's alone: not in Fluent Bit's environment`);
  const { config } = loadConfigText(sidecarConfig, { env: placeholders(variablesIn(sidecarConfig)) });
  assert.equal(config.globals.state_dir, '/var/lib/proofpoint-sidecar', 'state on the volume');
  assert.equal(config.globals.http?.listen, '127.0.0.1:2021', "where the image's HEALTHCHECK asks");
  if (config.output.type === 'forward') {
    assert.equal(config.output.host, fb.environment.FORWARD_LISTEN);
    assert.equal(String(config.output.port), String(fb.environment.FORWARD_PORT));
  }
  assert.ok(Number.parseInt(sidecar.stop_grace_period, 10) > config.globals.shutdown_timeout_secs, 'the drain fits in the stop grace period');
});
