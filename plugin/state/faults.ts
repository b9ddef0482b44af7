/** State errors with their real LevelDB cause and what an operator does about them. */
import { existsSync, readFileSync } from 'node:fs';
import path from 'node:path';
import { ErrorCode, SidecarError } from '../errors.ts';
import { levelFault, type LevelFault } from './level.ts';

/**
 * A SidecarError naming the real LevelDB cause, with its own code: STATE_CORRUPT for damaged
 * files (LevelDB's Corruption, or a CURRENT that names no MANIFEST), STATE_IO for what the file
 * system refused (read-only, full, permissions).
 */
export function stateError(err: unknown, dir: string, doing: 'open' | 'read' | 'write'): SidecarError {
  const f = levelFault(err);
  const db = path.join(dir, 'db');
  const corrupt = f.levelCode === 'LEVEL_CORRUPTION' || f.levelCode === 'LEVEL_DECODE_ERROR' || (doing === 'open' && currentIsDamaged(db));
  if (corrupt) {
    return new SidecarError(
      ErrorCode.STATE_CORRUPT,
      `State in ${dir} is damaged (${f.levelCode ?? 'LEVEL_CORRUPTION'}: ${f.cause}). Run "proofpoint-sidecar state repair --config FILE": ` +
        'it recovers what LevelDB can read and reports what was lost; or point globals.state_dir elsewhere (collection then restarts from the start times)',
      { fatal: true, cause: err },
    );
  }
  return new SidecarError(ErrorCode.STATE_IO, `Cannot ${doing} state in ${dir} (${f.levelCode ?? 'error'}: ${f.cause}); ${ioHint(f)}`, {
    fatal: true,
    cause: err,
  });
}

function ioHint(f: LevelFault): string {
  if (/no space left|ENOSPC|quota/i.test(f.cause)) return 'free space on its file system (globals.state_dir), then start again';
  if (/read-only|EROFS/i.test(f.cause)) return 'the file system is read-only: mount it writable or point globals.state_dir at a writable directory';
  if (/permission|EACCES|EPERM/i.test(f.cause)) return 'give this user read and write access to it (globals.state_dir)';
  return 'check the directory and its file system (globals.state_dir)';
}

/** CURRENT names the MANIFEST LevelDB opens: damaged when it names none that exists. */
function currentIsDamaged(db: string): boolean {
  const current = path.join(db, 'CURRENT');
  if (!existsSync(current)) return false;
  try {
    const m = /^(MANIFEST-\d+)\n$/.exec(readFileSync(current, 'utf8'));
    return !m || !existsSync(path.join(db, m[1]!));
  } catch {
    return false;
  }
}
