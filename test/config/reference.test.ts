import { test } from 'node:test';
import assert from 'node:assert/strict';
import { readFileSync } from 'node:fs';
import { schemaKeys } from '../../plugin/config/keys.ts';

const DOC = new URL('../../docs/configuration.md', import.meta.url);

/** `| \`key\` | default | meaning |` rows of docs/configuration.md. */
function documented(): Map<string, string> {
  const rows = new Map<string, string>();
  for (const line of readFileSync(DOC, 'utf8').split('\n')) {
    const m = /^\| `([^`]+)` \| ([^|]*) \|/.exec(line);
    if (m) rows.set(m[1]!, m[2]!.trim());
  }
  return rows;
}

test('docs/configuration.md documents every key the schema accepts, and no other', () => {
  const doc = documented();
  const schema = schemaKeys().map((k) => k.path);
  assert.deepEqual(
    schema.filter((k) => !doc.has(k)),
    [],
    'keys the schema accepts but the reference does not document',
  );
  assert.deepEqual(
    [...doc.keys()].filter((k) => !schema.includes(k)),
    [],
    'keys the reference documents but the loader rejects',
  );
});

test('the documented defaults are the schema defaults', () => {
  const doc = documented();
  const wrong: string[] = [];
  for (const k of schemaKeys()) {
    const shown = doc.get(k.path);
    if (shown === undefined) continue;
    const expected = k.default === undefined ? '—' : `\`${String(k.default)}\``;
    if (shown !== expected) wrong.push(`${k.path}: documented ${shown}, schema ${expected}`);
  }
  assert.deepEqual(wrong, []);
});
