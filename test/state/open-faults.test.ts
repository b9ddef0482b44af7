/**
 * State that cannot be opened or read says why, with its own code and LevelDB's cause, and
 * `state repair` recovers damaged state and reports what was lost (never a silent reset).
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { execFileSync } from 'node:child_process';
import { chmodSync, existsSync, mkdtempSync, readdirSync, readFileSync, rmSync, statSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { StateStore } from '../../plugin/state/store.ts';
import { SidecarError } from '../../plugin/errors.ts';
import { runCli, writeStateConfig } from '../helpers/cli.ts';
import { tmpDir } from '../helpers/tmp.ts';

const KEYS = 3_000;

/** A state with two services' cursors and KEYS de-dup keys each, compacted into a table file. */
async function seededState(stateDir: string): Promise<void> {
  const store = await StateStore.open(stateDir);
  for (const svc of ['message', 'maillog']) {
    await store.seen.load(`100002::${svc}`);
    const keys = Array.from({ length: KEYS }, (_, i) => `${svc}-guid-${String(i).padStart(6, '0')}`);
    await store.commit({ input: '100002', service: svc, cursor: { ts: `2026-11-23T01:00:00.000000-0700` }, keys, keysTtlMs: 3_600_000 });
  }
  await (store.db as unknown as { compactRange(a: string, b: string): Promise<void> }).compactRange('\x00', '\xff');
  await store.close();
}

function tableOf(stateDir: string): string {
  const db = path.join(stateDir, 'db');
  const tables = readdirSync(db).filter((f) => f.endsWith('.ldb'));
  assert.equal(tables.length, 1, 'the seeded state is one table');
  return path.join(db, tables[0]!);
}

/** Overwrites `len` bytes at `at` (a fraction of the file) with garbage. */
function damage(file: string, at: number, len: number): void {
  const b = readFileSync(file);
  const start = Math.floor(b.length * at);
  b.fill(0x41, start, Math.min(b.length, start + len));
  writeFileSync(file, b);
}

async function openError(stateDir: string): Promise<SidecarError> {
  try {
    const s = await StateStore.open(stateDir);
    await s.close();
  } catch (err) {
    assert.ok(err instanceof SidecarError, `a SidecarError, got ${String(err)}`);
    return err;
  }
  assert.fail('the state must not open');
}

function configFor(dir: string, stateDir: string): string {
  return writeStateConfig(dir, stateDir).file;
}

test('a damaged CURRENT gives SIDECAR_ERR_STATE_CORRUPT with LevelDB\'s cause and the repair hint', async () => {
  for (const content of ['', 'MANIFEST-999999\n']) {
    const stateDir = path.join(tmpDir(), 'state');
    await seededState(stateDir);
    writeFileSync(path.join(stateDir, 'db', 'CURRENT'), content);
    const e = await openError(stateDir);
    assert.equal(e.code, 'SIDECAR_ERR_STATE_CORRUPT', e.message);
    assert.match(e.message, content === '' ? /Corruption: CURRENT file does not end with newline/ : /MANIFEST-999999: No such file/);
    assert.match(e.message, /state repair/);
    assert.doesNotMatch(e.message, /Database failed to open/);
  }
});

test('a damaged MANIFEST gives SIDECAR_ERR_STATE_CORRUPT with LevelDB\'s cause, printed by the CLI', async () => {
  const dir = tmpDir();
  const stateDir = path.join(dir, 'state');
  await seededState(stateDir);
  const db = path.join(stateDir, 'db');
  damage(path.join(db, readdirSync(db).find((f) => f.startsWith('MANIFEST-'))!), 0.1, 30);
  const e = await openError(stateDir);
  assert.equal(e.code, 'SIDECAR_ERR_STATE_CORRUPT');
  assert.match(e.message, /LEVEL_CORRUPTION: Corruption: /);

  const r = runCli(['state', 'show', '--config', configFor(dir, stateDir)]);
  assert.equal(r.status, 1);
  assert.match(r.stderr, /^error SIDECAR_ERR_STATE_CORRUPT: State in .* is damaged \(LEVEL_CORRUPTION: Corruption: .*\)\. Run "proofpoint-sidecar state repair/m);
});

test('a damaged table holding the cursors is found at open, not at the first look-up', async () => {
  const stateDir = path.join(tmpDir(), 'state');
  await seededState(stateDir);
  // Cursors and meta sort first: the table's first block.
  damage(tableOf(stateDir), 0, 2_000);
  const e = await openError(stateDir);
  assert.equal(e.code, 'SIDECAR_ERR_STATE_CORRUPT');
  assert.match(e.message, /Corruption/);
});

test('a damaged table holding de-dup keys fails the look-up with SIDECAR_ERR_STATE_CORRUPT and the repair hint', async () => {
  const stateDir = path.join(tmpDir(), 'state');
  await seededState(stateDir);
  damage(tableOf(stateDir), 0.3, 1_000);
  const store = await StateStore.open(stateDir);
  try {
    const all = Array.from({ length: KEYS }, (_, i) => `message-guid-${String(i).padStart(6, '0')}`);
    const maillog = Array.from({ length: KEYS }, (_, i) => `maillog-guid-${String(i).padStart(6, '0')}`);
    let err: unknown;
    for (const [scope, keys] of [['100002::maillog', maillog], ['100002::message', all]] as const) {
      err = await store.seen.has(scope, keys).then(() => undefined, (e) => e);
      if (err) break;
    }
    assert.ok(err instanceof SidecarError, `a look-up must fail, got ${String(err)}`);
    assert.equal(err.code, 'SIDECAR_ERR_STATE_CORRUPT');
    assert.match(err.message, /state repair/);
  } finally {
    await store.close();
  }
});

test('a read-only state directory gives SIDECAR_ERR_STATE_IO with the file system\'s cause', async (t) => {
  if (process.getuid?.() === 0) {
    const dir = mkdtempSync(path.join(tmpdir(), 'pps-rofs-'));
    try {
      execFileSync('mount', ['-t', 'tmpfs', '-o', 'size=4m', 'tmpfs', dir], { stdio: 'pipe' });
    } catch (err) {
      rmSync(dir, { recursive: true, force: true });
      t.skip(`cannot mount a tmpfs to make read-only (${(err as Error).message.trim()})`);
      return;
    }
    try {
      await seededState(dir);
      execFileSync('mount', ['-o', 'remount,ro', dir]);
      const e = await openError(dir);
      assert.equal(e.code, 'SIDECAR_ERR_STATE_IO', e.message);
      assert.match(e.message, /LEVEL_IO_ERROR: IO error: .*Read-only file system/);
      assert.match(e.message, /read-only/);
    } finally {
      execFileSync('umount', ['-l', dir]);
      rmSync(dir, { recursive: true, force: true });
    }
    return;
  }
  // Not root: a directory without write permission is refused the same way.
  const stateDir = path.join(tmpDir(), 'state');
  await seededState(stateDir);
  chmodSync(path.join(stateDir, 'db'), 0o555);
  t.after(() => chmodSync(path.join(stateDir, 'db'), 0o755));
  const e = await openError(stateDir);
  assert.equal(e.code, 'SIDECAR_ERR_STATE_IO', e.message);
  assert.match(e.message, /Permission denied/);
});

test('state repair recovers a state with a damaged table and reports what was lost', async () => {
  const dir = tmpDir();
  const stateDir = path.join(dir, 'state');
  await seededState(stateDir);
  damage(tableOf(stateDir), 0.3, 1_000);
  const file = configFor(dir, stateDir);

  const r = runCli(['state', 'repair', '--config', file]);
  assert.equal(r.status, 0, r.stderr);
  const report = JSON.parse(r.stdout);
  assert.ok(existsSync(report.backup) && statSync(report.backup).isDirectory(), 'the damaged files are kept');
  assert.deepEqual(report.after.unreadable, {});
  assert.deepEqual(report.cursors_lost, []);
  assert.deepEqual(report.after.cursors.sort(), ['100002::maillog', '100002::message']);
  const lostKeys = report.dedup_counts_fixed.reduce((n: number, d: { stored: number; present: number }) => n + d.stored - d.present, 0);
  assert.ok(lostKeys > 0 && lostKeys < 2 * KEYS, `some de-dup keys lost, reported: ${JSON.stringify(report.dedup_counts_fixed)}`);
  assert.match(r.stderr, /De-dup keys lost for 100002\/\w+: \d+ of 3000/);
  assert.match(r.stderr, /Cursors present: /);

  // The repaired state opens, reads in full, and its counts match the keys that survived.
  const store = await StateStore.open(stateDir);
  try {
    assert.deepEqual((await store.getCursor('100002', 'message'))?.cursor, { ts: '2026-11-23T01:00:00.000000-0700' });
    let present = 0;
    for (const svc of ['message', 'maillog']) {
      const keys = Array.from({ length: KEYS }, (_, i) => `${svc}-guid-${String(i).padStart(6, '0')}`);
      const has = await store.seen.has(`100002::${svc}`, keys);
      const n = has.filter(Boolean).length;
      assert.equal(await store.seen.load(`100002::${svc}`), n);
      present += n;
    }
    assert.equal(present, 2 * KEYS - lostKeys);
  } finally {
    await store.close();
  }
});
