/**
 * The state PersistentVolumeClaim (conf/kubernetes/pvc.yaml) holds the de-dup windows of every
 * service of the pod's configuration at their cap (globals.dedup_max_keys each), with room for
 * LevelDB compaction (twice the data). The bytes per key are measured here on the real state
 * store, not assumed: event keys are SHA-256 in base64url, as the sources make them.
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { createHash } from 'node:crypto';
import { readdirSync, readFileSync, statSync } from 'node:fs';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { parseAllDocuments } from 'yaml';
import { loadConfigText } from '../../plugin/config/load.ts';
import { StateStore } from '../../plugin/state/store.ts';
import { silentLogger } from '../../plugin/telemetry/logger.ts';
import { tmpDir } from '../helpers/tmp.ts';

const K8S = fileURLToPath(new URL('../../conf/kubernetes/', import.meta.url));
type Obj = Record<string, any>; // eslint-disable-line @typescript-eslint/no-explicit-any

const docs = (f: string): Obj[] => parseAllDocuments(readFileSync(path.join(K8S, f), 'utf8')).map((d) => d.toJS() as Obj);

/** Kubernetes quantity (Mi, Gi, G, plain bytes) in bytes. */
function bytes(q: string): number {
  const m = /^(\d+(?:\.\d+)?)(Ki|Mi|Gi|Ti|k|M|G|T)?$/.exec(q);
  assert.ok(m, `a storage quantity: ${q}`);
  const unit = { Ki: 2 ** 10, Mi: 2 ** 20, Gi: 2 ** 30, Ti: 2 ** 40, k: 1e3, M: 1e6, G: 1e9, T: 1e12 }[m[2] as string] ?? 1;
  return Number(m[1]) * unit;
}

function dirBytes(dir: string): number {
  return readdirSync(dir, { recursive: true, encoding: 'utf8' }).reduce((n, f) => {
    const s = statSync(path.join(dir, f));
    return n + (s.isFile() ? s.size : 0);
  }, 0);
}

test('the state PVC holds every service de-dup window at globals.dedup_max_keys, with LevelDB compaction room, as measured on the state store', async () => {
  // Bytes per de-dup key on disk, with a cursor commit per batch of 500 as the pipeline does.
  const dir = tmpDir('pps-state-size-');
  const store = await StateStore.open(dir, { logger: silentLogger() });
  const N = 100_000;
  for (let i = 0; i < N; ) {
    const keys: string[] = [];
    for (let j = 0; j < 500; j++, i++) keys.push(createHash('sha256').update(`event ${i}`).digest('base64url'));
    await store.commit({ input: '100001', service: 'messagesDelivered', cursor: { through: i }, keys, keysTtlMs: 7 * 24 * 3600_000 });
  }
  const open = dirBytes(dir);
  await store.close({ clean: true });
  const perKey = Math.max(open, dirBytes(dir)) / N;
  assert.ok(perKey > 40, `a key takes room (${perKey.toFixed(0)} B)`);

  const configMap = docs('configmap.yaml').find((d) => d?.kind === 'ConfigMap' && d.data?.['config.yaml']);
  assert.ok(configMap, 'the pod configuration');
  const text: string = configMap.data['config.yaml'];
  const env = Object.fromEntries([...text.matchAll(/\$\{([A-Z_][A-Z0-9_]*)\}/g)].map((m) => [m[1]!, 'placeholder']));
  const { config } = loadConfigText(text, { env });
  const services =
    Object.keys(config.inputs.proofpoint_tap?.enabled ? config.inputs.proofpoint_tap.services : {}).length +
    Object.keys(config.inputs.proofpoint_on_demand?.enabled ? config.inputs.proofpoint_on_demand.services : {}).length;
  assert.equal(services, 7, 'four TAP and three POD services');

  const claim = docs('pvc.yaml').find((d) => d?.kind === 'PersistentVolumeClaim' && d.metadata?.name === 'proofpoint-sidecar-state');
  assert.ok(claim);
  const request = bytes(claim.spec.resources.requests.storage);
  const needed = services * config.globals.dedup_max_keys * perKey * 2;
  assert.ok(
    request >= needed,
    `${claim.spec.resources.requests.storage} holds ${services} services x ${config.globals.dedup_max_keys} keys x ${perKey.toFixed(0)} B x 2 = ${(needed / 2 ** 30).toFixed(2)} GiB`,
  );
  const comment = readFileSync(path.join(K8S, 'pvc.yaml'), 'utf8');
  assert.doesNotMatch(comment, /\btiny\b/i);
});
