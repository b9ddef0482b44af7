/**
 * One image tag: proofpoint-sidecar:<package.json version>. The Dockerfile's usage lines and
 * docs/deployment.md build and run that tag, Compose tags what it builds with it, and every
 * container of the Kubernetes manifests that runs the sidecar image names it; the documented
 * push commands use it too.
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { readdirSync, readFileSync } from 'node:fs';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { parseAllDocuments } from 'yaml';
import { SIDECAR_VERSION } from '../../plugin/util/user-agent.ts';

const ROOT = fileURLToPath(new URL('../../', import.meta.url));
const read = (f: string) => readFileSync(path.join(ROOT, f), 'utf8');
const VERSION = (JSON.parse(read('package.json')) as { version: string }).version;
const TAG = `proofpoint-sidecar:${VERSION}`;

type Obj = Record<string, any>; // eslint-disable-line @typescript-eslint/no-explicit-any

test('the image tag is proofpoint-sidecar:<package.json version>, the version the sidecar reports', () => {
  assert.match(VERSION, /^\d+\.\d+\.\d+/);
  assert.equal(SIDECAR_VERSION, VERSION, 'User-Agent and image tag name the same version');
});

test('the Dockerfile usage and docs/deployment.md build, tag, push and run that one tag', () => {
  const dockerfile = read('Dockerfile');
  const builds = [...dockerfile.matchAll(/docker build -t (\S+)/g)].map((m) => m[1]);
  assert.deepEqual(builds, [TAG], 'the Dockerfile header builds the tag');
  assert.match(dockerfile, new RegExp(`${TAG.replace(/\./g, '\\.')}\\s*$`, 'm'), 'and runs it');

  const doc = read('docs/deployment.md');
  const docBuilds = [...doc.matchAll(/docker build -t (\S+)/g)].map((m) => m[1]);
  assert.ok(docBuilds.length > 0);
  for (const b of docBuilds) assert.equal(b, 'proofpoint-sidecar:$VERSION', 'docs build proofpoint-sidecar:$VERSION');
  assert.match(doc, /VERSION=\$\(node -p "require\('\.\/package\.json'\)\.version"\)/, 'VERSION is package.json\'s');
  assert.match(doc, /docker push \$REGISTRY\/proofpoint-sidecar:\$VERSION/, 'the push command');
  assert.match(doc, /--stop-timeout 45 proofpoint-sidecar:\$VERSION/, 'docker run runs the tag');
  assert.doesNotMatch(doc + dockerfile, /proofpoint-sidecar:(latest|local)\b/);
});

test('Compose tags the image it builds, and every Kubernetes container of the sidecar image names the same tag', () => {
  const [compose] = parseAllDocuments(read('conf/compose.yaml')).map((d) => d.toJS() as Obj);
  assert.ok(compose!.services.sidecar.build, 'Compose builds the sidecar');
  assert.equal(compose!.services.sidecar.image, TAG);

  const dir = path.join(ROOT, 'conf', 'kubernetes');
  const files = readdirSync(dir, { recursive: true, encoding: 'utf8' }).filter((f) => f.endsWith('.yaml'));
  const images: { file: string; container: string; image: string }[] = [];
  for (const f of files) {
    for (const d of parseAllDocuments(readFileSync(path.join(dir, f), 'utf8')).map((x) => x.toJS() as Obj | null)) {
      const spec = d?.spec?.template?.spec;
      if (!spec) continue;
      for (const c of [...(spec.initContainers ?? []), ...(spec.containers ?? [])] as Obj[]) images.push({ file: f, container: c.name, image: c.image });
    }
  }
  const ours = images.filter((i) => !i.image.startsWith('fluent/fluent-bit:'));
  assert.ok(ours.length >= 3, `the Deployment's sidecar, the DaemonSet's sidecar and init container (${JSON.stringify(images)})`);
  for (const i of ours) assert.equal(i.image, TAG, `${i.file} ${i.container}`);
});
