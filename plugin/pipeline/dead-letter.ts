/**
 * The dead-letter file: vendor input that could not become a record (malformed frames) and
 * records too large for any frame. One JSON line each, appended and flushed before the batch that
 * carried it can commit, so nothing is lost silently. Lives in the state directory.
 */
import { appendFile } from 'node:fs/promises';
import path from 'node:path';

export interface DeadLetterEntry {
  input: string;
  service: string;
  reason: string;
  /** The input or record as it was, whole. */
  raw: string;
}

export class DeadLetterFile {
  readonly path: string;
  readonly #now: () => number;
  #written = 0;

  /** `now`: the injected clock's time (util/clock.ts), for each entry's `at`. */
  constructor(stateDir: string, now: () => number) {
    this.path = path.join(stateDir, 'dead-letter.jsonl');
    this.#now = now;
  }

  get written(): number {
    return this.#written;
  }

  async write(entries: readonly DeadLetterEntry[]): Promise<void> {
    if (entries.length === 0) return;
    const at = new Date(this.#now()).toISOString();
    const lines = entries.map((e) => JSON.stringify({ at, ...e }) + '\n').join('');
    await appendFile(this.path, lines, { mode: 0o600 });
    this.#written += entries.length;
  }
}
