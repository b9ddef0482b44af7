/**
 * The deployment material under conf/: every YAML document parses, and the invariants that keep a
 * deployment correct hold. Kubernetes: one replica with the Recreate strategy (one active puller
 * per credential), the sidecar's probes on the port its config listens on, non-root containers
 * with read-only root filesystems and no capabilities, credentials only by reference to Secrets
 * that exist, state on PersistentVolumeClaims that exist, Fluent Bit given every variable its
 * configuration uses, and the Fluent Bit files in the ConfigMap identical to fluent-bit/. Compose:
 * a shared network namespace, volumes for both states, certificates read-only, the .env example
 * naming every variable. Every sidecar config passes the sidecar's own loader.
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
const k8s = yamlFiles(K8S).flatMap((f) => docs(f).map((d) => ({ file: path.basename(f), doc: d })));
const kind = (k: string) => k8s.filter((d) => d.doc.kind === k).map((d) => d.doc);
const deployment = kind('Deployment')[0]!;
const podSpec: Obj = deployment?.spec?.template?.spec ?? {};
const container = (name: string): Obj => {
  const c = (podSpec.containers as Obj[]).find((c) => c.name === name);
  assert.ok(c, `container ${name}`);
  return c;
};
const configMap = kind('ConfigMap')[0]!;
const secrets = kind('Secret');
const envNames = (c: Obj): string[] => (c.env as Obj[] | undefined)?.map((e) => e.name as string) ?? [];
/** A placeholder for every variable a config refers to. */
const placeholders = (names: string[]) => Object.fromEntries(names.map((n) => [n, `placeholder-${n.toLowerCase()}`]));

test('every YAML document under conf/ parses', () => {
  const files = yamlFiles(CONF);
  assert.ok(files.length >= 6, files.join(', '));
  for (const f of files) assert.ok(docs(f).length > 0, `${f} has a document`);
  for (const d of k8s) assert.ok(d.doc.apiVersion && d.doc.kind && d.doc.metadata?.name, `${d.file}: apiVersion, kind, metadata.name`);
  assert.deepEqual(
    [...new Set(k8s.map((d) => d.file))].sort(),
    ['configmap.yaml', 'deployment.yaml', 'pvc.yaml', 'secret.example.yaml'],
  );
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
  assert.equal(kind('Deployment').length, 1);
  assert.equal(deployment.spec.replicas, 1, 'one active puller per credential');
  assert.equal(deployment.spec.strategy?.type, 'Recreate', 'the old pod stops before the new one pulls');
  const text = readFileSync(path.join(K8S, 'deployment.yaml'), 'utf8');
  assert.match(text, /409/, 'the comments say why: POD answers 409 to a second session');
  assert.match(text, /budget/, '... and TAP would spend its request budget twice');
  assert.deepEqual((podSpec.containers as Obj[]).map((c) => c.name).sort(), ['fluent-bit', 'sidecar']);
  assert.match(container('fluent-bit').image, /^fluent\/fluent-bit:/, 'the official Fluent Bit image');
  assert.deepEqual(deployment.spec.selector.matchLabels, deployment.spec.template.metadata.labels);
});

test('Kubernetes: the sidecar config in the ConfigMap loads, and the probes use its http port', () => {
  const sidecar = container('sidecar');
  const text = configMap.data['config.yaml'] as string;
  const vars = variablesIn(text);
  for (const v of vars) assert.ok(envNames(sidecar).includes(v), `the sidecar container sets ${v}`);
  const { config } = loadConfigText(text, { env: placeholders(vars) }, 'configmap config.yaml');
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
  // State on the PVC, at the path the config names; output to Fluent Bit on the pod's loopback.
  const stateMount = (sidecar.volumeMounts as Obj[]).find((m) => m.mountPath === config.globals.state_dir);
  assert.ok(stateMount, `a volume is mounted at state_dir ${config.globals.state_dir}`);
  const stateVolume = (podSpec.volumes as Obj[]).find((v) => v.name === stateMount.name);
  assert.ok(stateVolume?.persistentVolumeClaim, 'state_dir is on a PersistentVolumeClaim');
  assert.equal(config.output.type, 'forward');
  const fb = container('fluent-bit');
  const fbEnv = Object.fromEntries((fb.env as Obj[]).map((e) => [e.name, e.value]));
  if (config.output.type === 'forward') {
    assert.equal(config.output.host, fbEnv.FORWARD_LISTEN);
    assert.equal(String(config.output.port), fbEnv.FORWARD_PORT);
  }
  // The drain on SIGTERM fits in the grace period.
  assert.ok(podSpec.terminationGracePeriodSeconds > config.globals.shutdown_timeout_secs);
  // The config is mounted where the image's CMD reads it.
  const cfgMount = (sidecar.volumeMounts as Obj[]).find((m) => m.name === 'sidecar-config');
  assert.equal(cfgMount?.mountPath, '/etc/proofpoint-sidecar');
});

test('Kubernetes: the Fluent Bit files in the ConfigMap are fluent-bit/ verbatim, and every variable is set', () => {
  const fb = container('fluent-bit');
  const cfgVolume = (fb.volumeMounts as Obj[]).find((m) => m.mountPath === '/fluent-bit/etc');
  assert.ok(cfgVolume);
  const items = ((podSpec.volumes as Obj[]).find((v) => v.name === cfgVolume.name)?.configMap?.items as Obj[]).map((i) => i.key);
  assert.ok(fb.command.includes('/fluent-bit/etc/fluent-bit.yaml'));
  const dir = tmpDir('pps-configmap-');
  for (const f of items) {
    assert.equal(configMap.data[f], readFileSync(path.join(FB_DIR, f), 'utf8'), `${f} in the ConfigMap equals fluent-bit/${f}`);
    writeFileSync(path.join(dir, f), configMap.data[f]);
  }
  const model = yamlModel(path.join(dir, 'fluent-bit.yaml'));
  assert.ok(model.outputs.some((o) => o.name === 'syslog'), 'the Devo output is mounted');
  const env = Object.fromEntries((fb.env as Obj[]).map((e) => [e.name, e.value]));
  for (const v of modelVariables(model)) assert.ok(env[v] !== undefined, `the fluent-bit container sets ${v}`);
  assert.equal(env.DEVO_PORT, '443', "Devo's load balancers listen on 443");
  // Certificates come from the devo-tls Secret, read-only.
  const certMount = (fb.volumeMounts as Obj[]).find((m) => env.DEVO_TLS_CRT_FILE.startsWith(m.mountPath + '/'));
  assert.ok(certMount?.readOnly, 'certificates mounted read-only');
  const secretName = (podSpec.volumes as Obj[]).find((v) => v.name === certMount.name)?.secret?.secretName;
  const secret = secrets.find((s) => s.metadata.name === secretName);
  assert.ok(secret, `Secret ${secretName} exists in secret.example.yaml`);
  for (const k of ['DEVO_TLS_CRT_FILE', 'DEVO_TLS_KEY_FILE', 'DEVO_TLS_CA_FILE']) {
    assert.ok(Object.keys(secret.stringData ?? secret.data).includes(path.basename(env[k])), `${k}: key ${path.basename(env[k])} in ${secretName}`);
  }
  // Fluent Bit's storage on its own PVC.
  const storageMount = (fb.volumeMounts as Obj[]).find((m) => env.FLUENT_BIT_STORAGE_PATH.startsWith(m.mountPath));
  assert.ok((podSpec.volumes as Obj[]).find((v) => v.name === storageMount?.name)?.persistentVolumeClaim, 'Fluent Bit storage on a PVC');
});

test('Kubernetes: credentials are referenced from Secrets, never inlined', () => {
  for (const c of podSpec.containers as Obj[]) {
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
  for (const s of secrets) {
    for (const [k, v] of Object.entries((s.stringData ?? {}) as Record<string, string>)) assert.match(v, /<[^>]+>/, `${s.metadata.name}.${k} is a placeholder`);
  }
  const secretText = readFileSync(path.join(K8S, 'secret.example.yaml'), 'utf8');
  assert.match(secretText, /kubectl create secret/, 'the example says how to create the real Secrets');
});

test('Kubernetes: non-root, read-only root filesystem, no capabilities, resources, volumes that exist', () => {
  assert.equal(podSpec.securityContext.runAsNonRoot, true);
  assert.notEqual(podSpec.securityContext.runAsUser, 0);
  for (const c of podSpec.containers as Obj[]) {
    assert.equal(c.securityContext.allowPrivilegeEscalation, false, c.name);
    assert.equal(c.securityContext.readOnlyRootFilesystem, true, c.name);
    assert.ok(c.securityContext.capabilities.drop.includes('ALL'), c.name);
    assert.notEqual(c.securityContext.runAsUser, 0, c.name);
    assert.ok(c.resources?.requests?.cpu && c.resources?.requests?.memory, `${c.name}: requests`);
    assert.ok(c.resources?.limits?.memory, `${c.name}: memory limit`);
    for (const m of c.volumeMounts as Obj[]) assert.ok((podSpec.volumes as Obj[]).some((v) => v.name === m.name), `${c.name}: volume ${m.name} declared`);
  }
  assert.equal(container('sidecar').resources.limits.memory, '512Mi', 'above the benchmarks\' peak RSS (318-357 MiB)');
  const claims = kind('PersistentVolumeClaim');
  for (const v of podSpec.volumes as Obj[]) {
    if (v.persistentVolumeClaim) assert.ok(claims.some((c) => c.metadata.name === v.persistentVolumeClaim.claimName), `PVC ${v.persistentVolumeClaim.claimName} in pvc.yaml`);
    if (v.configMap) assert.equal(v.configMap.name, configMap.metadata.name);
  }
  for (const c of claims) assert.deepEqual(c.spec.accessModes, ['ReadWriteOnce']);
});

test('Compose: Fluent Bit and the sidecar share a network namespace, state on volumes, certificates read-only, every variable named in the .env example', () => {
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
  assert.equal(fb.env_file, '.env');
  assert.equal(sidecar.env_file, '.env');

  // The .env example names every variable neither container sets itself.
  const envExample = readFileSync(path.join(CONF, 'compose.env.example'), 'utf8');
  const dotenv = new Set([...envExample.matchAll(/^([A-Z][A-Z0-9_]*)=/gm)].map((m) => m[1]!));
  const model = yamlModel(path.join(FB_DIR, 'fluent-bit.yaml'));
  for (const v of modelVariables(model)) assert.ok(v in fb.environment || dotenv.has(v), `Fluent Bit gets ${v}`);
  assert.equal(envExample.match(/^DEVO_PORT=(.*)$/m)?.[1], '443');
  const sidecarConfig = readFileSync(path.resolve(CONF, cfg[0]!), 'utf8');
  for (const v of variablesIn(sidecarConfig)) assert.ok(dotenv.has(v), `the sidecar gets ${v} from .env`);
  const { config } = loadConfigText(sidecarConfig, { env: placeholders(variablesIn(sidecarConfig)) });
  assert.equal(config.globals.state_dir, '/var/lib/proofpoint-sidecar', 'state on the volume');
  assert.equal(config.globals.http?.listen, '127.0.0.1:2021', "where the image's HEALTHCHECK asks");
  if (config.output.type === 'forward') {
    assert.equal(config.output.host, fb.environment.FORWARD_LISTEN);
    assert.equal(String(config.output.port), String(fb.environment.FORWARD_PORT));
  }
  assert.ok(Number.parseInt(sidecar.stop_grace_period, 10) > config.globals.shutdown_timeout_secs, 'the drain fits in the stop grace period');
});
