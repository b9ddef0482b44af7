/**
 * plugin/ keeps the size rule of scripts/code-size.mjs: no function over 80 lines, no class over
 * 300. A function that must stay longer is listed here with the reason.
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
// @ts-expect-error: a plain ES module script without type declarations
import { oversized } from '../scripts/code-size.mjs';

/** `file:name` of the functions and classes allowed over the limit, each with why. */
const ALLOWED: Record<string, string> = {};

test('no function in plugin/ is over 80 lines and no class over 300, except the ones listed with a reason', () => {
  const root = fileURLToPath(new URL('..', import.meta.url));
  const found = (oversized([path.join(root, 'plugin')]) as { kind: string; lines: number; file: string; line: number; name: string }[])
    .map((f) => ({ ...f, file: path.relative(root, f.file) }))
    .filter((f) => !(`${f.file}:${f.name}` in ALLOWED))
    .map((f) => `${f.kind} ${f.name}: ${f.lines} lines (${f.file}:${f.line})`);
  assert.deepEqual(found, []);
});
