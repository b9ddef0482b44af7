#!/usr/bin/env node
/**
 * Runs the test suite on Node's test runner (TypeScript through tsx) and scans everything it
 * prints for the test credentials (test/helpers/secrets.ts), as they are and JSON-escaped, and for
 * the HTTP Basic base64 of each `<x>Principal:<x>...Secret` pair there: a credential in any log
 * line or error message fails the run, even when every test passed.
 *
 * Usage: node scripts/test.mjs [file or folder ...]   (default: every test/**\/*.test.ts)
 */
import { spawn } from 'node:child_process';
import { readdirSync, readFileSync, statSync } from 'node:fs';
import path from 'node:path';

const root = path.resolve(path.dirname(new URL(import.meta.url).pathname), '..');

function collect(p) {
  const st = statSync(p);
  if (st.isFile()) return [p];
  return readdirSync(p, { recursive: true })
    .map((f) => path.join(p, f))
    .filter((f) => f.endsWith('.test.ts') && statSync(f).isFile())
    .sort();
}

const args = process.argv.slice(2);
const files = (args.length ? args : ['test']).flatMap((a) => collect(path.resolve(root, a)));

const secretsSource = readFileSync(path.join(root, 'test/helpers/secrets.ts'), 'utf8');
// Single-quoted literals, with their escapes (\\ \' \") undone.
const credentials = [...secretsSource.matchAll(/(\w+):\s*'((?:[^'\\\n]|\\.){8,})'/g)].map((m) => ({
  key: m[1],
  value: m[2].replace(/\\(.)/g, '$1'),
}));
const basicPairs = credentials.flatMap((p) => {
  const prefix = p.key.endsWith('Principal') ? p.key.slice(0, -'Principal'.length) : undefined;
  if (!prefix) return [];
  return credentials
    .filter((s) => s.key.startsWith(prefix) && s.key.endsWith('Secret'))
    .map((s) => Buffer.from(`${p.value}:${s.value}`, 'utf8').toString('base64'));
});
const escaped = (s) => JSON.stringify(s).slice(1, -1);
const secrets = [
  ...new Set([
    ...credentials.flatMap(({ value }) => [value, escaped(value), escaped(escaped(value))]),
    ...basicPairs,
  ]),
];

const child = spawn(
  process.execPath,
  ['--import', 'tsx', '--test', '--test-concurrency=2', '--test-timeout=180000', ...files],
  { cwd: root, stdio: ['ignore', 'pipe', 'pipe'], env: { ...process.env, FORCE_COLOR: '0' } },
);

const leaks = new Map();
// Keep the tail of the previous chunk so a secret split across chunks is still found.
const tails = { out: '', err: '' };
function scan(which, chunk) {
  const text = tails[which] + chunk.toString('utf8');
  for (const s of secrets) {
    const i = text.indexOf(s);
    if (i >= 0 && !leaks.has(s)) leaks.set(s, text.slice(Math.max(0, i - 200), i + s.length + 50));
  }
  tails[which] = text.slice(-128);
}
child.stdout.on('data', (c) => {
  process.stdout.write(c);
  scan('out', c);
});
child.stderr.on('data', (c) => {
  process.stderr.write(c);
  scan('err', c);
});
child.on('close', (code, signal) => {
  if (leaks.size > 0) {
    process.stderr.write(`\nFAIL: a test credential appeared in the suite's output (${leaks.size} of ${secrets.length} forms):\n`);
    for (const [, ctx] of leaks) process.stderr.write(`  ...${secrets.reduce((t, s) => t.replaceAll(s, '<SECRET>'), ctx).replace(/\s+/g, ' ')}...\n`);
    process.exit(1);
  }
  process.stderr.write(`secret scan: none of ${credentials.length} test credentials (${secrets.length} forms) appeared in the output\n`);
  process.exit(code ?? (signal ? 1 : 0));
});
