#!/usr/bin/env node
/**
 * The size rule of plugin/: no function over 80 lines and no class over 300 lines. A long
 * function mixes steps a reader must hold at once; a long class mixes concerns that want files of
 * their own. `node scripts/code-size.mjs [folder...]` lists what breaks the rule (default plugin/);
 * test/code-size.test.ts keeps plugin/ within it.
 */
import ts from 'typescript';
import fs from 'node:fs';
import path from 'node:path';
import { fileURLToPath } from 'node:url';

export const MAX_FUNCTION_LINES = 80;
export const MAX_CLASS_LINES = 300;

function tsFiles(dir) {
  const out = [];
  for (const e of fs.readdirSync(dir, { withFileTypes: true })) {
    const p = path.join(dir, e.name);
    if (e.isDirectory()) out.push(...tsFiles(p));
    else if (p.endsWith('.ts')) out.push(p);
  }
  return out.sort();
}

/** Functions and classes over the limits: `{ kind, lines, file, line, name }`. */
export function oversized(dirs) {
  const found = [];
  for (const file of dirs.flatMap(tsFiles)) {
    const src = ts.createSourceFile(file, fs.readFileSync(file, 'utf8'), ts.ScriptTarget.Latest, true);
    const visit = (node) => {
      const first = src.getLineAndCharacterOfPosition(node.getStart()).line;
      const lines = src.getLineAndCharacterOfPosition(node.getEnd()).line - first + 1;
      const name = node.name?.getText?.(src) ?? '(anonymous)';
      if (ts.isClassLike(node) && lines > MAX_CLASS_LINES) found.push({ kind: 'class', lines, file, line: first + 1, name });
      if (ts.isFunctionLike(node) && node.body && lines > MAX_FUNCTION_LINES) found.push({ kind: 'function', lines, file, line: first + 1, name });
      ts.forEachChild(node, visit);
    };
    visit(src);
  }
  return found;
}

if (process.argv[1] && fileURLToPath(import.meta.url) === path.resolve(process.argv[1])) {
  const dirs = process.argv.length > 2 ? process.argv.slice(2) : ['plugin'];
  const found = oversized(dirs);
  for (const f of found) console.log(`${f.kind} ${f.name}: ${f.lines} lines (${f.file}:${f.line})`);
  process.exitCode = found.length ? 1 : 0;
}
