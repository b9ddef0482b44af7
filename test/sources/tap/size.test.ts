/**
 * The size rule for the TAP source (scripts/code-size.mjs): no function over 80 lines and no class
 * over 300 lines in plugin/sources/tap, so the run loop stays a set of named steps.
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { execFileSync } from 'node:child_process';
import { fileURLToPath } from 'node:url';

const root = fileURLToPath(new URL('../../../', import.meta.url));

test('TAP source size rule: no function over 80 lines, no class over 300 lines in plugin/sources/tap', () => {
  const out = execFileSync(process.execPath, ['scripts/code-size.mjs', 'plugin/sources/tap'], { cwd: root, encoding: 'utf8' });
  assert.equal(out.trim(), '', `over the size rule:\n${out}`);
});
