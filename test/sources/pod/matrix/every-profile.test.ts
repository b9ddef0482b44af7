/** The behaviour matrix has a file for every simulator profile: a new profile cannot go untested. */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { readdirSync } from 'node:fs';
import { POD_PROFILES } from '../../../../plugin/simulator/pod/index.ts';

test('every PoD simulator profile has its matrix file', () => {
  const files = readdirSync(new URL('.', import.meta.url)).filter((f) => f.endsWith('.test.ts') && f !== 'every-profile.test.ts');
  assert.deepEqual(files.map((f) => f.replace(/\.test\.ts$/, '')).sort(), Object.keys(POD_PROFILES).sort());
});
